package engine_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// With Config.Leader set, only the leader recovers expired leases: a
// follower leaves another node's expired lease alone until it leads.
func TestOnlyTheLeaderRecoversExpiredLeases(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := &countingStore{Store: open(t)}
		var leads atomic.Bool
		b := setup(t, store, parseWorkflows(t, fourStepHCL), func(c *engine.Config) {
			c.Leader = leads.Load
			c.SafetyPoll = 20 * time.Millisecond
			c.LeaseDuration = 60 * time.Millisecond
		})
		task := b.create("four", "")
		// A node that died holds s1, its lease already expired.
		cs, err := store.ClaimSteps(context.Background(), &backends.ClaimStepsParams{
			Owner: "ghost", Limit: 1, LeaseDuration: time.Millisecond, Now: engine.RealClock{}.Now().Add(-time.Second),
		})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		b.start()

		// Many rounds of the claim loop pass, each of which would recover
		// it (every lease/3 = 20 ms), without one trying.
		base := store.claims.Load()
		eventually(t, func() bool { return store.claims.Load() >= base+10 }, "ten rounds of the claim loop")
		require.Zero(t, store.recovers.Load())
		s := b.steps(task.ID)["s1"]
		require.Equal(t, backends.StateInProgress, s.State)
		require.Equal(t, "ghost", s.LeaseOwner)

		leads.Store(true)
		b.waitTask(task.ID, backends.StateComplete)
		// The dead node's attempt counts: the leader recovered it as
		// attempt 1, and the run that completed s1 came after it. (On a
		// loaded machine this node's own 60 ms lease may expire too,
		// making a third attempt: that is not what this test is about.)
		var recovered []int
		log, err := store.ListEvents(context.Background(), &backends.EventQuery{TaskID: task.ID})
		require.NoError(t, err)
		for _, ev := range log {
			if ev.StepName == "s1" && ev.Type == engine.EventStepLeaseExpired {
				recovered = append(recovered, ev.Attempt)
			}
		}
		require.NotEmpty(t, recovered)
		require.Equal(t, 1, recovered[0], "the ghost's attempt was recovered first")
		require.Equal(t, 2+len(recovered)-1, b.steps(task.ID)["s1"].Attempts, "the dead node's attempt counts")
	})
}

// A stopping node (SIGTERM: Run's context ends) gives back the steps it
// claimed ahead at once, and another engine on the same database runs them
// without waiting for their lease, which here is a minute long.
func TestDrainHandsQueuedStepsToAnotherNode(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		h := newHolder()
		a := nodeWithHolder(t, store, h, func(c *engine.Config) {
			c.LeaseDuration = time.Minute
			c.ShutdownGrace = time.Minute
		})
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.eng.Run(ctx) }()
		task := a.create("three", "")
		require.Equal(t, "first", <-h.started)
		waitQueued(a, task.ID, "second", "third")

		regB := builtin.NewRegistry()
		var ranB atomic.Int64
		require.NoError(t, regB.Register("test.hold", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			ranB.Add(1)
			return json.RawMessage(`{"by": "b"}`), nil
		})))
		b := setup(t, store, parseWorkflows(t, threeHCL), withRegistry(regB), func(c *engine.Config) {
			c.NodeID = "node-b"
			c.LeaseDuration = time.Minute
			c.SafetyPoll = 50 * time.Millisecond
		})
		b.start()

		stopped := time.Now()
		stop()
		eventually(t, func() bool {
			steps := b.steps(task.ID)
			return steps["second"].State == backends.StateComplete && steps["third"].State == backends.StateComplete
		}, "node b to run the steps node a gave back")
		require.Less(t, time.Since(stopped), time.Minute, "well before the lease would have expired")
		steps := b.steps(task.ID)
		for _, n := range []string{"second", "third"} {
			require.Equal(t, 1, steps[n].Attempts, "%s: node a's claim cost no attempt", n)
			require.JSONEq(t, `{"by": "b"}`, string(steps[n].Results), n)
		}
		require.Equal(t, int64(2), ranB.Load())
		require.Equal(t, []string{"first"}, h.called(), "node a ran only the step it had started")

		close(h.release)
		require.NoError(t, <-done)
		b.waitTask(task.ID, backends.StateComplete)
	})
}

// countingStore counts the claim loop's rounds and its lease recoveries.
type countingStore struct {
	backends.Store
	claims, recovers atomic.Int64
}

func (c *countingStore) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) ([]*backends.Claim, error) {
	c.claims.Add(1)
	return c.Store.ClaimSteps(ctx, p)
}

func (c *countingStore) RecoverExpiredLeases(ctx context.Context, p *backends.RecoverParams) ([]*backends.RecordResult, error) {
	c.recovers.Add(1)
	return c.Store.RecoverExpiredLeases(ctx, p)
}
