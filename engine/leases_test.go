package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// partitioned is a store cut off from its node while down is set: claims,
// heartbeats and recoveries fail, so the node looks hung to everyone else.
// The answer of such a call that was under way when the cut began is lost
// too, so the node cannot learn of anything (a cancel request, say) that
// happened after it.
type partitioned struct {
	backends.Store
	down atomic.Bool
}

var errPartition = errors.New("network partition (test)")

func (f *partitioned) ExtendLeases(ctx context.Context, p *backends.ExtendLeasesParams) ([]backends.LeaseStatus, error) {
	if f.down.Load() {
		return nil, errPartition
	}
	statuses, err := f.Store.ExtendLeases(ctx, p)
	if f.down.Load() {
		// The answer of a call that was under way when the partition began
		// is lost: the node must not learn, say, of a cancel requested after
		// it was cut off.
		return nil, errPartition
	}
	return statuses, err
}

func (f *partitioned) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) ([]*backends.Claim, error) {
	if f.down.Load() {
		return nil, errPartition
	}
	claims, err := f.Store.ClaimSteps(ctx, p)
	if f.down.Load() {
		return nil, errPartition // the claim's answer is lost; its leases expire
	}
	return claims, err
}

func (f *partitioned) StartStep(ctx context.Context, p *backends.StartStepParams) (bool, error) {
	if f.down.Load() {
		return false, errPartition
	}
	cancel, err := f.Store.StartStep(ctx, p)
	if f.down.Load() {
		return false, errPartition
	}
	return cancel, err
}

func (f *partitioned) RecoverExpiredLeases(ctx context.Context, p *backends.RecoverParams) ([]*backends.RecordResult, error) {
	if f.down.Load() {
		return nil, errPartition
	}
	rrs, err := f.Store.RecoverExpiredLeases(ctx, p)
	if f.down.Load() {
		return nil, errPartition
	}
	return rrs, err
}

// blocker is a handler that runs until its context ends, and remembers why.
type blocker struct {
	started chan struct{}
	cause   atomic.Value // error
}

func newBlocker() *blocker { return &blocker{started: make(chan struct{}, 10)} }

func (b *blocker) Execute(ctx context.Context, _ *engine.StepRequest) (json.RawMessage, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	b.cause.Store(context.Cause(ctx))
	return nil, ctx.Err()
}

func (b *blocker) stoppedWith() error {
	err, _ := b.cause.Load().(error)
	return err
}

const blockHCL = `
workflow "block" {
  retry {
    base = "1ms"
    max  = "1ms"
  }
  step "hold" {
    handler = "test.block"
  }
  step "other" {
    handler = "builtin.noop"
  }
  step "after" {
    handler    = "builtin.noop"
    depends_on = [step.hold]
  }
}
`

// A node that loses its lease stops its handler and drops its result; the
// node that recovered the step runs it again.
func TestLostLeaseStopsTheHandler(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		catalog := parseWorkflows(t, blockHCL)
		flaky := &partitioned{Store: store}

		held := newBlocker()
		regA := builtin.NewRegistry()
		require.NoError(t, regA.Register("test.block", held))
		a := setup(t, flaky, catalog, withRegistry(regA), func(c *engine.Config) {
			c.NodeID = "node-a"
			c.LeaseDuration = 300 * time.Millisecond
		})
		a.start()
		task := a.create("block", "")
		<-held.started
		flaky.down.Store(true)

		// Node B, whose handler succeeds, recovers the step once A's lease
		// expires.
		regB := builtin.NewRegistry()
		require.NoError(t, regB.Register("test.block", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{"by": "b"}`), nil
		})))
		b := setup(t, store, catalog, withRegistry(regB), func(c *engine.Config) { c.NodeID = "node-b" })
		b.start()
		b.waitTask(task.ID, backends.StateComplete)
		hold := b.steps(task.ID)["hold"]
		require.Equal(t, 2, hold.Attempts)
		require.JSONEq(t, `{"by": "b"}`, string(hold.Results))

		// A hears at its next heartbeat that the lease is gone, and stops.
		flaky.down.Store(false)
		eventually(t, func() bool { return held.stoppedWith() != nil }, "node A's handler to be stopped")
		require.Contains(t, held.stoppedWith().Error(), "lease lost")
		// A recorded nothing for it.
		for _, ev := range a.taskEvents(task.ID) {
			if ev.StepName == "hold" {
				require.NotContains(t, []engine.EventType{engine.EventStepCompleted, engine.EventStepFailed, engine.EventStepCancelled}, ev.Type)
			}
		}
		b.checkOrdering(task.ID)
	})
}

// An operator on one node cancels a step another node runs: the running
// node learns it at its next heartbeat and stops the handler.
func TestCancelStepRunningOnAnotherNode(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		catalog := parseWorkflows(t, blockHCL)
		held := newBlocker()
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("test.block", held))
		worker := setup(t, store, catalog, withRegistry(reg), func(c *engine.Config) {
			c.NodeID = "worker"
			// Long enough that a heartbeat delayed by a loaded CI machine
			// does not lose the lease first (that path has its own tests),
			// short enough that the next heartbeat comes within a second.
			c.LeaseDuration = 2 * time.Second
		})
		worker.start()
		// The operator node has the handler too (a node without it refuses
		// to create the workflow's tasks); it never runs.
		opReg := builtin.NewRegistry()
		require.NoError(t, opReg.Register("test.block", newBlocker()))
		operator := setup(t, store, catalog, withRegistry(opReg), func(c *engine.Config) { c.NodeID = "operator" })

		task := operator.create("block", "")
		<-held.started
		worker.waitEvent(isEvent(engine.EventStepCompleted, task.ID, "other"), "other completes")
		hold := worker.steps(task.ID)["hold"]
		change, err := operator.eng.CancelStep(context.Background(), hold.ID, "not needed")
		require.NoError(t, err)
		require.Equal(t, []int64{hold.ID}, change.CancelRequested)
		// The descendant that can never run is cancelled at once.
		operator.waitEvent(isEvent(engine.EventStepCancelled, task.ID, "after"), "after cancelled")

		eventually(t, func() bool { return held.stoppedWith() != nil }, "the worker's handler to be stopped")
		require.Contains(t, held.stoppedWith().Error(), "cancelled")
		// Nothing is left to run: finalize cancels the task.
		worker.waitTask(task.ID, backends.StateCancelled)
		worker.waitEvent(isEvent(engine.EventStepCancelled, task.ID, "hold"), "hold cancelled")
		worker.waitEvent(isEvent(engine.EventTaskCancelled, task.ID, ""), "task cancelled")
		require.Equal(t, map[string]backends.State{
			"hold": backends.StateCancelled, "other": backends.StateComplete, "after": backends.StateCancelled,
		}, states(worker.steps(task.ID)))
		worker.checkOrdering(task.ID)
	})
}

// Stopping Run lets running handlers finish within the grace period and
// records them.
func TestShutdownWaitsForRunningHandlers(t *testing.T) {
	t.Parallel()
	const src = `
workflow "nap" {
  step "nap" {
    handler = "builtin.sleep"
    config  = { duration = "200ms" }
  }
  step "after" {
    handler    = "builtin.noop"
    depends_on = [step.nap]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.eng.Run(ctx) }()
		task := b.create("nap", "")
		b.waitEvent(isEvent(engine.EventStepExecutionRequested, task.ID, "nap"), "nap runs")
		stop()
		require.NoError(t, <-done)
		steps := b.steps(task.ID)
		require.Equal(t, backends.StateComplete, steps["nap"].State, "finished during the grace period and recorded")
		require.Equal(t, backends.StatePending, steps["after"].State, "nothing new claimed after the stop")
	})
}

// A handler still running when the grace period ends is abandoned, and its
// lease released at once: the step does not sit in_progress for a lease
// duration waiting for a node that has stopped.
func TestShutdownReleasesAbandonedLeases(t *testing.T) {
	t.Parallel()
	const src = `
workflow "long" {
  step "long" {
    handler = "builtin.sleep"
    config  = { duration = "1m" }
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src), func(c *engine.Config) {
			c.ShutdownGrace = 50 * time.Millisecond
			c.LeaseDuration = time.Hour
		})
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.eng.Run(ctx) }()
		task := b.create("long", "")
		b.waitEvent(isEvent(engine.EventStepExecutionRequested, task.ID, "long"), "long runs")
		stop()
		require.NoError(t, <-done)
		long := b.steps(task.ID)["long"]
		require.Equal(t, backends.StateError, long.State, "recovered at shutdown, not left leased for an hour")
		require.Nil(t, long.LeaseExpiresAt)
		require.Contains(t, string(long.Error), backends.ErrorKindLeaseExpired)
		require.True(t, long.Retryable)
		b.waitEvent(isEvent(engine.EventStepLeaseExpired, task.ID, "long"), "step.lease_expired")
	})
}

func TestRunRefusesToRunTwice(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, fourStepHCL))
		b.start()
		task := b.create("four", "")
		b.waitEvent(isEvent(engine.EventStepExecutionRequested, task.ID, ""), "the first Run works")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.Error(t, b.eng.Run(ctx))
	})
}

// A step whose cancel was requested and whose node then died is cancelled,
// not failed, when its lease is recovered.
func TestRecoveringACancelledStep(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		catalog := parseWorkflows(t, blockHCL)
		cut := &partitioned{Store: store}
		held := newBlocker()
		regA := builtin.NewRegistry()
		require.NoError(t, regA.Register("test.block", held))
		a := setup(t, cut, catalog, withRegistry(regA), func(c *engine.Config) {
			c.NodeID = "node-a"
			c.LeaseDuration = 300 * time.Millisecond
		})
		a.start()
		task := a.create("block", "")
		<-held.started
		a.waitEvent(isEvent(engine.EventStepCompleted, task.ID, "other"), "other completes")
		cut.down.Store(true)

		b := setup(t, store, catalog, func(c *engine.Config) { c.NodeID = "node-b" })
		change, err := b.eng.CancelTask(context.Background(), task.ID, "stop")
		require.NoError(t, err)
		require.Len(t, change.CancelRequested, 1)
		b.start()
		b.waitEvent(isEvent(engine.EventStepCancelled, task.ID, "hold"), "hold cancelled by recovery")
		hold := b.steps(task.ID)["hold"]
		require.Equal(t, backends.StateCancelled, hold.State)
		require.Equal(t, 1, hold.Attempts)
		for _, ev := range b.taskEvents(task.ID) {
			require.NotEqual(t, engine.EventStepLeaseExpired, ev.Type)
			require.NotEqual(t, engine.EventStepFailed, ev.Type)
		}
		got, err := store.GetTask(context.Background(), task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateCancelled, got.State)
		cut.down.Store(false)
		eventually(t, func() bool { return held.stoppedWith() != nil }, "node A's handler to be stopped")
	})
}
