package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/logsink"
)

// A handler starts only while its node's lease is live (SEMANTICS §5.4),
// and a step claimed ahead whose handler never started costs no attempt
// (§5.6). These tests play the node that stalls, stops or dies.

// holder is a handler that runs until release is closed or its context
// ends, and remembers which steps it was called for.
type holder struct {
	release chan struct{}
	mu      sync.Mutex
	calls   []string
	started chan string
}

func newHolder() *holder {
	return &holder{release: make(chan struct{}), started: make(chan string, 16)}
}

func (h *holder) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	h.mu.Lock()
	h.calls = append(h.calls, req.StepName)
	h.mu.Unlock()
	h.started <- req.StepName
	select {
	case <-h.release:
		return json.RawMessage(`{"by": "holder"}`), nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (h *holder) called() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

const threeHCL = `
workflow "three" {
  retry {
    base = "1ms"
    max  = "1ms"
  }
  step "first" {
    handler = "test.hold"
  }
  step "second" {
    handler = "test.hold"
  }
  step "third" {
    handler = "test.hold"
  }
}
`

// nodeWithHolder is an engine of one worker (and one claimed ahead) whose
// handler test.hold is h.
func nodeWithHolder(t *testing.T, store backends.Store, h *holder, opts ...option) *testBundle {
	reg := builtin.NewRegistry()
	require.NoError(t, reg.Register("test.hold", h))
	opts = append([]option{withRegistry(reg), func(c *engine.Config) {
		c.NodeID = "node-a"
		c.Workers = 1
		c.ClaimAhead = 2
	}}, opts...)
	return setup(t, store, parseWorkflows(t, threeHCL), opts...)
}

// waitQueued waits until the named steps are claimed and waiting for a
// worker (in_progress, handler not started).
func waitQueued(b *testBundle, taskID int64, names ...string) {
	b.t.Helper()
	eventually(b.t, func() bool {
		steps := b.steps(taskID)
		for _, n := range names {
			if s := steps[n]; s.State != backends.StateInProgress || s.StartedAt != nil {
				return false
			}
		}
		return true
	}, "%v claimed ahead, waiting for a worker", names)
}

// A node stalled while it held claims (a pause past its lease: here its
// lease looks long expired to another node, whose clock runs two hours
// ahead) must not start a handler another node has taken over: when its
// worker frees up, the step that waited is confirmed in the store first,
// and found lost. Before, the node started it and the side effect ran
// twice.
func TestStalledNodeDoesNotStartAStepTakenOver(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		logs := &logsink.Buffer{}
		h := newHolder()
		a := nodeWithHolder(t, store, h, func(c *engine.Config) {
			c.LeaseDuration = time.Hour // no heartbeat during the test
			c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		a.start()
		task := a.create("three", "")
		require.Equal(t, "first", <-h.started)
		waitQueued(a, task.ID, "second", "third")

		// Node B sees A's leases expired, recovers the three steps and
		// runs them.
		regB := builtin.NewRegistry()
		require.NoError(t, regB.Register("test.hold", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{"by": "b"}`), nil
		})))
		b := setup(t, store, parseWorkflows(t, threeHCL), withRegistry(regB), func(c *engine.Config) {
			c.NodeID = "node-b"
			c.Clock = &offsetClock{offset: 2 * time.Hour}
		})
		b.start()
		b.waitTask(task.ID, backends.StateComplete)

		// A's first handler returns: its worker is free for the steps it
		// claimed ahead, which are B's now.
		close(h.release)
		eventually(t, func() bool {
			return strings.Count(logs.String(), "step lease lost before its handler started") == 2
		}, "node A to find both claims it made ahead lost")
		require.Equal(t, []string{"first"}, h.called(), "node A ran no handler of a step it no longer owned")
		steps := a.steps(task.ID)
		for _, n := range []string{"second", "third"} {
			require.JSONEq(t, `{"by": "b"}`, string(steps[n].Results), n)
			require.Equal(t, 1, steps[n].Attempts, "%s: A's claim that never started did not count", n)
		}
	})
}

// A node whose heartbeats have not succeeded within its lease stops its
// handlers: by its own clock the lease is over, and another node may run
// the step. Before, it ran on for as long as the store stayed out of
// reach.
func TestHeartbeatsFailingPastTheLeaseStopTheHandler(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		cut := &partitioned{Store: open(t)}
		held := newBlocker()
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("test.block", held))
		a := setup(t, cut, parseWorkflows(t, blockHCL), withRegistry(reg), func(c *engine.Config) {
			c.LeaseDuration = 300 * time.Millisecond
		})
		a.start()
		a.create("block", "")
		<-held.started
		cut.down.Store(true) // nobody recovers the step: only A's clock speaks
		eventually(t, func() bool { return held.stoppedWith() != nil }, "the handler to be stopped")
		require.ErrorContains(t, held.stoppedWith(), "lease lost")
	})
}

// Stopping a node gives back, at once, the steps it claimed ahead whose
// handlers have not started: they go back to pending with no attempt
// counted, and are not run during the grace period. A node restarted in a
// loop must not burn their attempts.
func TestShutdownGivesBackStepsThatNeverStarted(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		h := newHolder()
		a := nodeWithHolder(t, open(t), h, func(c *engine.Config) { c.ShutdownGrace = time.Minute })
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.eng.Run(ctx) }()
		task := a.create("three", "")
		require.Equal(t, "first", <-h.started)
		waitQueued(a, task.ID, "second", "third")

		stop()
		eventually(t, func() bool {
			steps := a.steps(task.ID)
			return steps["second"].State == backends.StatePending && steps["third"].State == backends.StatePending
		}, "the steps that never started to be given back")
		steps := a.steps(task.ID)
		for _, n := range []string{"second", "third"} {
			require.Equal(t, 0, steps[n].Attempts, n)
			require.Nil(t, steps[n].LeaseExpiresAt, n)
		}
		require.Equal(t, backends.StateInProgress, steps["first"].State, "the running handler has its grace period")
		close(h.release)
		require.NoError(t, <-done)

		require.Equal(t, []string{"first"}, h.called())
		steps = a.steps(task.ID)
		require.Equal(t, backends.StateComplete, steps["first"].State)
		trs, err := a.store.ListTransitions(context.Background(), task.ID)
		require.NoError(t, err)
		released := map[int64]bool{}
		for _, tr := range trs {
			if tr.Reason == backends.ReasonReleased {
				require.Equal(t, backends.StateInProgress, tr.From)
				require.Equal(t, backends.StatePending, tr.To)
				released[tr.StepID] = true
			}
		}
		require.Equal(t, map[int64]bool{steps["second"].ID: true, steps["third"].ID: true}, released)
	})
}

// A node that dies (no shutdown: its store is cut off for good) with steps
// claimed ahead costs those steps no attempt: the node that recovers its
// leases counts the attempt of the step that was running, and gives the
// others back uncounted.
func TestDeadNodeDoesNotBurnAttemptsOfStepsClaimedAhead(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		cut := &partitioned{Store: store}
		h := newHolder()
		a := nodeWithHolder(t, cut, h, func(c *engine.Config) { c.LeaseDuration = 300 * time.Millisecond })
		a.start()
		task := a.create("three", "")
		require.Equal(t, "first", <-h.started)
		waitQueued(a, task.ID, "second", "third")
		cut.down.Store(true)

		regB := builtin.NewRegistry()
		require.NoError(t, regB.Register("test.hold", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		})))
		b := setup(t, store, parseWorkflows(t, threeHCL), withRegistry(regB), func(c *engine.Config) { c.NodeID = "node-b" })
		b.start()
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, 2, steps["first"].Attempts, "the running step's attempt counts")
		require.Equal(t, 1, steps["second"].Attempts)
		require.Equal(t, 1, steps["third"].Attempts)
		require.Equal(t, []string{"first"}, h.called())
		b.checkOrdering(task.ID)
	})
}
