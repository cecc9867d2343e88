// Package backendtest is the conformance suite every backends.Store runs
// from its own tests, like River's riverdrivertest:
//
//	func TestStore(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backends.Store { ... a fresh, empty store ... })
//	}
//
// One file per area. Every rule of SEMANTICS §2–§5 that a store enforces is
// checked here through Store operations only, with the time always passed
// explicitly (no test sleeps). The differential test compares the store's
// readiness and context SQL with engine's Go reference on random task states.
package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// Run runs the whole suite. newStore must return a fresh, empty store for
// each call; the suite closes it. Tests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("Create", func(t *testing.T) { testCreate(t, newStore) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, newStore) })
	t.Run("Transitions", func(t *testing.T) { testTransitions(t, newStore) })
	t.Run("Readiness", func(t *testing.T) { testReadiness(t, newStore) })
	t.Run("Context", func(t *testing.T) { testContext(t, newStore) })
	t.Run("Claim", func(t *testing.T) { testClaim(t, newStore) })
	t.Run("Fairness", func(t *testing.T) { testFairness(t, newStore) })
	t.Run("Record", func(t *testing.T) { testRecord(t, newStore) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, newStore) })
	t.Run("Queued", func(t *testing.T) { testQueued(t, newStore) })
	t.Run("Operator", func(t *testing.T) { testOperator(t, newStore) })
	t.Run("List", func(t *testing.T) { testList(t, newStore) })
	t.Run("Batch", func(t *testing.T) { testBatch(t, newStore) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, newStore) })
	t.Run("APIKeys", func(t *testing.T) { testAPIKeys(t, newStore) })
	t.Run("Events", func(t *testing.T) { testEvents(t, newStore) })
	t.Run("Nodes", func(t *testing.T) { testNodes(t, newStore) })
	t.Run("Schedules", func(t *testing.T) { testSchedules(t, newStore) })
	t.Run("Differential", func(t *testing.T) { testDifferential(t, newStore) })
}

// base is the suite's clock origin, already at microsecond precision.
var base = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

// at is base plus an offset.
func at(d time.Duration) time.Time { return base.Add(d) }

const lease = time.Minute

// bundle is what each test works with.
type bundle struct {
	t     *testing.T
	ctx   context.Context
	store backends.Store
}

func setup(t *testing.T, newStore func(t *testing.T) backends.Store) *bundle {
	t.Helper()
	s := newStore(t)
	t.Cleanup(func() { _ = s.Close() })
	return &bundle{t: t, ctx: context.Background(), store: s}
}

// step is a step definition with the default retry policy (limit 3, base
// 1s, max 30s), retryable.
func step(name string, parents ...string) backends.NewStep {
	return backends.NewStep{
		Name: name, Handler: "builtin.noop", Retryable: true, RetryLimit: 3,
		BackoffBase: time.Second, BackoffMax: 30 * time.Second, Timeout: 30 * time.Second,
		Parents: parents,
	}
}

func (b *bundle) createAt(now time.Time, steps ...backends.NewStep) *backends.Task {
	b.t.Helper()
	task, created, err := b.store.CreateTask(b.ctx, &backends.CreateTaskParams{
		Namespace: "default", WorkflowName: "test", WorkflowVersion: "0.1.0",
		Context: json.RawMessage(`{"k":"v"}`), Initiator: "suite", SourceSystem: "backendtest",
		Reason: "testing", Tags: []string{"a", "b"}, Steps: steps, Now: now,
	})
	require.NoError(b.t, err)
	require.True(b.t, created)
	return task
}

func (b *bundle) create(steps ...backends.NewStep) *backends.Task {
	b.t.Helper()
	return b.createAt(base, steps...)
}

func (b *bundle) task(id int64) *backends.Task {
	b.t.Helper()
	task, err := b.store.GetTask(b.ctx, id)
	require.NoError(b.t, err)
	return task
}

func (b *bundle) steps(taskID int64) []*backends.Step {
	b.t.Helper()
	steps, err := b.store.ListSteps(b.ctx, taskID)
	require.NoError(b.t, err)
	return steps
}

func (b *bundle) step(taskID int64, name string) *backends.Step {
	b.t.Helper()
	for _, s := range b.steps(taskID) {
		if s.Name == name {
			return s
		}
	}
	b.t.Fatalf("task %d has no step %q", taskID, name)
	return nil
}

func (b *bundle) claim(limit int, now time.Time) []*backends.Claim {
	b.t.Helper()
	cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: limit, LeaseDuration: lease, Now: now})
	require.NoError(b.t, err)
	return cs
}

// claimOne claims and requires exactly one step, named name.
func (b *bundle) claimOne(name string, now time.Time) *backends.Claim {
	b.t.Helper()
	cs := b.claim(1, now)
	require.Len(b.t, cs, 1, "expected %s to be claimed at %s", name, now)
	require.Equal(b.t, name, cs[0].Step.Name)
	return cs[0]
}

func (b *bundle) complete(c *backends.Claim, now time.Time) *backends.RecordResult {
	b.t.Helper()
	res, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{
		StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Results: json.RawMessage(`{"step":"` + c.Step.Name + `"}`), Now: now,
	})
	require.NoError(b.t, err)
	return res
}

func (b *bundle) fail(c *backends.Claim, retryable bool, backoff *int, now time.Time) *backends.RecordResult {
	b.t.Helper()
	kind := backends.ErrorKindHandler
	if !retryable {
		kind = backends.ErrorKindPermanent
	}
	res, err := b.store.FailStep(b.ctx, &backends.FailStepParams{
		StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
		Error:          backends.StepError{Message: "boom", Retryable: retryable, Kind: kind},
		BackoffSeconds: backoff, Now: now,
	})
	require.NoError(b.t, err)
	return res
}

// run claims the named step and completes it.
func (b *bundle) run(name string, now time.Time) *backends.RecordResult {
	b.t.Helper()
	return b.complete(b.claimOne(name, now), now)
}

func (b *bundle) readiness(taskID int64, now time.Time) map[string]backends.ReadinessRow {
	b.t.Helper()
	rows, err := b.store.StepReadiness(b.ctx, taskID, now)
	require.NoError(b.t, err)
	out := map[string]backends.ReadinessRow{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out
}

func (b *bundle) context(taskID int64, now time.Time) *backends.ExecutionContext {
	b.t.Helper()
	ec, err := b.store.TaskExecutionContext(b.ctx, taskID, now)
	require.NoError(b.t, err)
	return ec
}

func (b *bundle) transitions(taskID int64) []*backends.Transition {
	b.t.Helper()
	ts, err := b.store.ListTransitions(b.ctx, taskID)
	require.NoError(b.t, err)
	return ts
}

// moves lists an object's transitions as "from>to" (stepID 0: the task's).
func (b *bundle) moves(taskID, stepID int64) []string {
	b.t.Helper()
	var out []string
	for _, tr := range b.transitions(taskID) {
		if tr.StepID == stepID {
			out = append(out, string(tr.From)+">"+string(tr.To))
		}
	}
	return out
}

// snapshot is everything a refused operation must leave as it was.
type snapshot struct {
	Task        *backends.Task
	Steps       []*backends.Step
	Edges       []backends.Edge
	Transitions []*backends.Transition
}

func (b *bundle) snapshot(taskID int64) snapshot {
	b.t.Helper()
	edges, err := b.store.ListEdges(b.ctx, taskID)
	require.NoError(b.t, err)
	return snapshot{Task: b.task(taskID), Steps: b.steps(taskID), Edges: edges, Transitions: b.transitions(taskID)}
}

func (b *bundle) requireUnchanged(before snapshot) {
	b.t.Helper()
	require.Equal(b.t, before, b.snapshot(before.Task.ID), "a refused operation changed something")
}

// requireInvalid checks a refusal: an *InvalidTransitionError that matches
// ErrInvalidTransition and names the object and the move.
func requireInvalid(t *testing.T, err error, from, to backends.State) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, backends.ErrInvalidTransition)
	var ite *backends.InvalidTransitionError
	require.True(t, errors.As(err, &ite), "want *InvalidTransitionError, got %T: %v", err, err)
	require.Equal(t, string(from), ite.From)
	require.Equal(t, string(to), ite.To)
	require.NotEmpty(t, ite.Object)
}

// checkTransitions verifies the audit trail of a task against its current
// state: per object, sort keys count from 1, each transition starts where
// the previous ended, exactly the last is most_recent, and its To is the
// object's state (a step without transitions is pending).
func (b *bundle) checkTransitions(taskID int64) {
	b.t.Helper()
	task := b.task(taskID)
	steps := b.steps(taskID)
	byObject := map[int64][]*backends.Transition{}
	for _, tr := range b.transitions(taskID) {
		require.Equal(b.t, taskID, tr.TaskID)
		byObject[tr.StepID] = append(byObject[tr.StepID], tr)
	}
	check := func(id int64, state backends.State, first backends.State) {
		trs := byObject[id]
		if len(trs) == 0 {
			require.Equal(b.t, backends.StatePending, state, "object %d has no transitions", id)
			return
		}
		prev := first
		for i, tr := range trs {
			require.Equal(b.t, i+1, tr.SortKey, "object %d transition %d", id, i)
			require.Equal(b.t, prev, tr.From, "object %d transition %d", id, i)
			require.Equal(b.t, i == len(trs)-1, tr.MostRecent, "object %d transition %d", id, i)
			require.Equal(b.t, time.UTC, tr.CreatedAt.Location())
			if id == 0 {
				require.True(b.t, prev == "" || backends.TaskTransitionAllowed(prev, tr.To), "task %s -> %s", prev, tr.To)
			} else {
				require.True(b.t, backends.StepTransitionAllowed(prev, tr.To), "step %s -> %s", prev, tr.To)
			}
			prev = tr.To
		}
		require.Equal(b.t, state, prev, "object %d: state on the row differs from its last transition", id)
	}
	check(0, task.State, "")
	for _, s := range steps {
		check(s.ID, s.State, backends.StatePending)
	}
}

func ptr[T any](v T) *T { return &v }

func name(format string, args ...any) string { return fmt.Sprintf(format, args...) }
