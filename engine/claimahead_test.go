package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// gateHandler blocks every call until release is closed, counting the
// calls running at once.
type gateHandler struct {
	release chan struct{}
	running atomic.Int32
	max     atomic.Int32
	mu      sync.Mutex
	called  map[int64]bool // by task
}

func newGateHandler() *gateHandler {
	return &gateHandler{release: make(chan struct{}), called: map[int64]bool{}}
}

func (g *gateHandler) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	g.mu.Lock()
	g.called[req.TaskID] = true
	g.mu.Unlock()
	select {
	case <-g.release:
		return json.RawMessage(`{}`), nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (g *gateHandler) wasCalled(taskID int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.called[taskID]
}

// gatedEngine is an engine with the given workers on store, whose workflow
// default/one has one step handled by a gateHandler.
func gatedEngine(t *testing.T, store backends.Store, workers int) (*gateHandler, *testBundle) {
	g := newGateHandler()
	reg := engine.NewRegistry()
	require.NoError(t, reg.Register("test.gate", g))
	cat := parseWorkflows(t, `workflow "one" {
  step "only" { handler = "test.gate" }
}`)
	return g, setup(t, store, cat, withRegistry(reg), func(c *engine.Config) { c.Workers = workers })
}

func countInProgress(t *testing.T, store backends.Store, tasks []*backends.Task) int {
	n := 0
	for _, task := range tasks {
		steps, err := store.ListSteps(context.Background(), task.ID)
		require.NoError(t, err)
		for _, s := range steps {
			if s.State == backends.StateInProgress {
				n++
			}
		}
	}
	return n
}

// Claiming ahead: with 2 workers a node holds up to 4 claimed steps, but
// never runs more than 2 handlers at once, and the waiting steps run as
// workers free up.
func TestClaimAheadNeverRunsMoreHandlersThanWorkers(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		g, b := gatedEngine(t, open(t), 2)
		var tasks []*backends.Task
		for range 6 {
			tasks = append(tasks, b.create("default/one", ""))
		}
		b.start()
		eventually(t, func() bool {
			return g.running.Load() == 2 && countInProgress(t, b.store, tasks) == 4
		}, "2 handlers running and 4 steps claimed")
		close(g.release)
		for _, task := range tasks {
			b.waitTask(task.ID, backends.StateComplete)
		}
		require.Equal(t, int32(2), g.max.Load(), "handlers running at once")
	})
}

// A claimed step's timeout starts with its handler, not with the claim: a
// step that waited for a worker longer than its timeout still runs.
func TestClaimAheadTimeoutStartsWithTheHandler(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		g := newGateHandler()
		reg := engine.NewRegistry()
		require.NoError(t, reg.Register("test.gate", g))
		var quick atomic.Int32
		require.NoError(t, reg.Register("test.quick", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			quick.Add(1)
			return nil, nil
		})))
		cat := parseWorkflows(t, `workflow "slow" {
  step "only" { handler = "test.gate" }
}
workflow "quick" {
  step "only" {
    handler = "test.quick"
    timeout = "200ms"
  }
}`)
		b := setup(t, open(t), cat, withRegistry(reg), func(c *engine.Config) { c.Workers = 1 })
		slow := b.create("default/slow", "")
		b.start()
		eventually(t, func() bool { return g.running.Load() == 1 }, "the slow handler to run")
		fast := b.create("default/quick", "")
		var claimedAt time.Time
		eventually(t, func() bool {
			if countInProgress(t, b.store, []*backends.Task{fast}) == 1 {
				claimedAt = time.Now()
				return true
			}
			return false
		}, "the quick step to be claimed while the only worker is busy")
		// Its timeout passes while it waits for the worker.
		eventually(t, func() bool { return time.Since(claimedAt) > 400*time.Millisecond }, "the quick step's timeout to pass")
		require.Zero(t, quick.Load())
		close(g.release)
		b.waitTask(slow.ID, backends.StateComplete)
		b.waitTask(fast.ID, backends.StateComplete)
		steps := b.steps(fast.ID)
		require.Equal(t, 1, steps["only"].Attempts)
		require.Equal(t, int32(1), quick.Load())
	})
}

// A step cancelled while it waits for a worker never runs its handler.
func TestClaimAheadCancelledWhileWaiting(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		g, b := gatedEngine(t, open(t), 1)
		first := b.create("default/one", "")
		b.start()
		eventually(t, func() bool { return g.running.Load() == 1 }, "the first handler to run")
		second := b.create("default/one", "")
		eventually(t, func() bool { return countInProgress(t, b.store, []*backends.Task{second}) == 1 },
			"the second step to be claimed while the only worker is busy")
		_, err := b.eng.CancelTask(context.Background(), second.ID, "test")
		require.NoError(t, err)
		b.waitTask(second.ID, backends.StateCancelled)
		close(g.release)
		b.waitTask(first.ID, backends.StateComplete)
		require.False(t, g.wasCalled(second.ID), "the cancelled step's handler ran")
		require.True(t, g.wasCalled(first.ID))
	})
}
