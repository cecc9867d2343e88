package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// forEachStore runs fn as a parallel subtest per backend (storetest).
func forEachStore(t *testing.T, fn func(t *testing.T, open func(testing.TB) backends.Store)) {
	t.Helper()
	storetest.Each(t, fn)
}

// parseWorkflows parses HCL sources into a catalog.
func parseWorkflows(t testing.TB, srcs ...string) *definition.Catalog {
	t.Helper()
	p := definition.NewParser()
	var all []*definition.Workflow
	for i, src := range srcs {
		ws, diags := p.ParseSource(fmt.Sprintf("test%d.hcl", i), []byte(src))
		require.False(t, diags.HasErrors(), "parsing workflow: %s", diags.Error())
		all = append(all, ws...)
	}
	return definition.NewCatalog(all)
}

// testBundle is one engine on one store, with every event it emits
// recorded.
type testBundle struct {
	t     *testing.T
	store backends.Store
	eng   *engine.Engine

	// Events are drained from ch into events whenever a test looks, so
	// that everything published before the look is seen.
	mu     sync.Mutex
	ch     <-chan engine.Event
	events []engine.Event
}

// drain moves every event waiting in the subscription into b.events.
// Callers hold b.mu.
func (b *testBundle) drain() {
	for {
		select {
		case ev, ok := <-b.ch:
			if !ok {
				return
			}
			b.events = append(b.events, ev)
		default:
			return
		}
	}
}

type option func(*engine.Config)

func withRegistry(r *engine.Registry) option { return func(c *engine.Config) { c.Registry = r } }

func setup(t *testing.T, store backends.Store, catalog *definition.Catalog, opts ...option) *testBundle {
	t.Helper()
	cfg := engine.Config{
		Store:         store,
		Catalog:       catalog,
		Registry:      builtin.NewRegistry(),
		Workers:       8,
		LeaseDuration: 5 * time.Second,
		NodeID:        "test-" + t.Name(),
		SafetyPoll:    time.Second,
	}
	if os.Getenv("ENGINE_TEST_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := engine.New(cfg)
	require.NoError(t, err)
	ch, cancel := eng.Subscribe(100000)
	t.Cleanup(cancel)
	return &testBundle{t: t, store: store, eng: eng, ch: ch}
}

// start runs the engine until the test ends.
func (b *testBundle) start() {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.eng.Run(ctx) }()
	b.t.Cleanup(func() {
		cancel()
		require.NoError(b.t, <-done)
	})
}

func (b *testBundle) create(workflow string, taskContext string) *backends.Task {
	b.t.Helper()
	var raw json.RawMessage
	if taskContext != "" {
		raw = json.RawMessage(taskContext)
	}
	task, created, err := b.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: workflow, Context: raw, Initiator: "test"})
	require.NoError(b.t, err)
	require.True(b.t, created)
	return task
}

const waitTimeout = 15 * time.Second

// eventually polls cond every few milliseconds until it holds, failing the
// test at the deadline with msg.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", waitTimeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(3 * time.Millisecond)
	}
}

// waitTask waits until the task is in one of the states and returns it.
func (b *testBundle) waitTask(taskID int64, states ...backends.State) *backends.Task {
	b.t.Helper()
	var task *backends.Task
	eventually(b.t, func() bool {
		var err error
		task, err = b.store.GetTask(context.Background(), taskID)
		require.NoError(b.t, err)
		return slices.Contains(states, task.State)
	}, "task %d to reach %v (steps: %s)", taskID, states, lazySteps{b, taskID})
	return task
}

type lazySteps struct {
	b      *testBundle
	taskID int64
}

func (l lazySteps) String() string {
	steps, err := l.b.store.ListSteps(context.Background(), l.taskID)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%s=%s/%d", s.Name, s.State, s.Attempts))
	}
	return strings.Join(parts, " ")
}

// steps returns the task's steps by name.
func (b *testBundle) steps(taskID int64) map[string]*backends.Step {
	b.t.Helper()
	steps, err := b.store.ListSteps(context.Background(), taskID)
	require.NoError(b.t, err)
	m := map[string]*backends.Step{}
	for _, s := range steps {
		m[s.Name] = s
	}
	return m
}

// waitEvent waits for the first recorded event matching pred.
func (b *testBundle) waitEvent(pred func(engine.Event) bool, what string) engine.Event {
	b.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		b.drain()
		for _, ev := range b.events {
			if pred(ev) {
				b.mu.Unlock()
				return ev
			}
		}
		b.mu.Unlock()
		select {
		case <-time.After(3 * time.Millisecond):
		case <-deadline.C:
			b.t.Fatalf("timed out waiting for event: %s", what)
		}
	}
}

// taskEvents returns the events recorded so far for one task.
func (b *testBundle) taskEvents(taskID int64) []engine.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drain()
	var out []engine.Event
	for _, ev := range b.events {
		if ev.TaskID == taskID {
			out = append(out, ev)
		}
	}
	return out
}

func isEvent(typ engine.EventType, taskID int64, step string) func(engine.Event) bool {
	return func(ev engine.Event) bool {
		return ev.Type == typ && ev.TaskID == taskID && (step == "" || ev.StepName == step)
	}
}

// checkOrdering asserts SEMANTICS §2's edge rule on the audit trail: no
// step enters in_progress before every parent is complete or
// resolved_manually.
func (b *testBundle) checkOrdering(taskID int64) {
	b.t.Helper()
	ctx := context.Background()
	steps, err := b.store.ListSteps(ctx, taskID)
	require.NoError(b.t, err)
	edges, err := b.store.ListEdges(ctx, taskID)
	require.NoError(b.t, err)
	trs, err := b.store.ListTransitions(ctx, taskID)
	require.NoError(b.t, err)
	name := map[int64]string{}
	for _, s := range steps {
		name[s.ID] = s.Name
	}
	satisfiedAt := map[int64]int64{} // step id -> transition id of its completion
	for _, tr := range trs {
		if tr.StepID != 0 && tr.To.Satisfies() {
			satisfiedAt[tr.StepID] = tr.ID
		}
	}
	for _, tr := range trs {
		if tr.StepID == 0 || tr.To != backends.StateInProgress {
			continue
		}
		for _, e := range edges {
			if e.ChildStepID != tr.StepID {
				continue
			}
			at, ok := satisfiedAt[e.ParentStepID]
			require.True(b.t, ok && at < tr.ID,
				"step %s entered in_progress (transition %d) before its parent %s was complete (transition %d, found %v)",
				name[tr.StepID], tr.ID, name[e.ParentStepID], at, ok)
		}
	}
}

func attempts(steps map[string]*backends.Step) map[string]int {
	m := map[string]int{}
	for n, s := range steps {
		m[n] = s.Attempts
	}
	return m
}

func states(steps map[string]*backends.Step) map[string]backends.State {
	m := map[string]backends.State{}
	for n, s := range steps {
		m[n] = s.State
	}
	return m
}

func stepError(t *testing.T, s *backends.Step) backends.StepError {
	t.Helper()
	require.NotEmpty(t, s.Error, "step %s has no error", s.Name)
	var se backends.StepError
	require.NoError(t, json.Unmarshal(s.Error, &se))
	return se
}

// checkEvents asserts that the task's events agree with the store, each
// told exactly once: one step.execution_requested per attempt (numbered
// 1, 2, …), one step.completed per complete step, one step.failed per
// failed attempt, one task event for the state the task ended in. Call it
// once the task is complete or in error, on the bundle whose engine ran it
// all.
func (b *testBundle) checkEvents(taskID int64) {
	b.t.Helper()
	task, err := b.store.GetTask(context.Background(), taskID)
	require.NoError(b.t, err)
	terminal := map[backends.State]engine.EventType{
		backends.StateComplete:  engine.EventTaskCompleted,
		backends.StateError:     engine.EventTaskFailed,
		backends.StateCancelled: engine.EventTaskCancelled,
	}[task.State]
	require.NotEmpty(b.t, terminal, "task %d is %s", taskID, task.State)
	// Events follow their commit: wait for the last one, then for every
	// event the log holds before it. Writes that commit one after the
	// other may publish in the other order (each from its own goroutine),
	// so the terminal event can come before an earlier write's.
	last := b.waitEvent(isEvent(terminal, taskID, ""), string(terminal))
	durable, err := b.store.ListEvents(context.Background(), &backends.EventQuery{TaskID: taskID})
	require.NoError(b.t, err)
	eventually(b.t, func() bool {
		seen := map[int64]bool{}
		for _, ev := range b.taskEvents(taskID) {
			seen[ev.Seq] = true
		}
		for _, ev := range durable {
			if ev.Seq <= last.Seq && !seen[ev.Seq] {
				return false
			}
		}
		return true
	}, "every event of task %d up to %s (seq %d), published in process", taskID, terminal, last.Seq)

	execs := map[string][]int{}
	count := map[engine.EventType]map[string]int{}
	steps := b.steps(taskID)
	for _, ev := range b.taskEvents(taskID) {
		require.Equal(b.t, task.Namespace+"/"+task.WorkflowName, ev.Workflow, "workflow of %s", ev.Type)
		if ev.StepID != 0 {
			require.Equal(b.t, steps[ev.StepName].Handler, ev.Handler, "handler of %s %s", ev.Type, ev.StepName)
		}
		if ev.Type == engine.EventStepExecutionRequested {
			require.NotNil(b.t, ev.ReadyAt, "ready_at of %s", ev.StepName)
			require.False(b.t, ev.ReadyAt.After(ev.Time), "%s ready at %s, claimed at %s", ev.StepName, ev.ReadyAt, ev.Time)
		}
		if count[ev.Type] == nil {
			count[ev.Type] = map[string]int{}
		}
		count[ev.Type][ev.StepName]++
		if ev.Type == engine.EventStepExecutionRequested {
			execs[ev.StepName] = append(execs[ev.StepName], ev.Attempt)
		}
	}
	require.Equal(b.t, 1, count[engine.EventTaskInitializeRequested][""])
	require.Equal(b.t, 1, count[terminal][""], "one %s", terminal)
	for name, s := range b.steps(taskID) {
		var want []int
		for i := 1; i <= s.Attempts; i++ {
			want = append(want, i)
		}
		require.Equal(b.t, want, execs[name], "executions of %s", name)
		completed := 0
		if s.State == backends.StateComplete {
			completed = 1
		}
		require.Equal(b.t, completed, count[engine.EventStepCompleted][name], "step.completed of %s", name)
		if s.State == backends.StateComplete || s.State == backends.StateError || s.State == backends.StatePending {
			failures := count[engine.EventStepFailed][name] + count[engine.EventStepLeaseExpired][name]
			require.Equal(b.t, s.Attempts-completed, failures, "failures of %s", name)
		}
	}
}
