package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/cluster"
)

const hb = 2 * time.Second

// shiftClock is the real time shifted by an offset the test moves: the
// cluster's rounds see time pass without the test sleeping.
type shiftClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *shiftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return engine.RealClock{}.Now().Add(c.offset)
}

func (c *shiftClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func member(t *testing.T, store backends.Store, id string, clock engine.Clock, opts ...func(*cluster.Config)) *cluster.Cluster {
	t.Helper()
	cfg := cluster.Config{
		Store: store, Node: backends.Node{ID: id, Address: "http://" + id, Version: "test", Workers: 2},
		Heartbeat: hb, Clock: clock,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := cluster.New(cfg)
	require.NoError(t, err)
	return c
}

func TestExactlyOneLeaderAndTakeover(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		a := member(t, store, "node-a", clock)
		b := member(t, store, "node-b", clock)
		require.NoError(t, a.Start(ctx))
		require.NoError(t, b.Start(ctx))
		require.True(t, a.IsLeader())
		require.False(t, b.IsLeader())
		require.Equal(t, float64(1), testutil.ToFloat64(a.Collectors()[0]))
		require.Equal(t, float64(0), testutil.ToFloat64(b.Collectors()[0]))

		// Rounds go on: still one leader, the same.
		for range 3 {
			clock.advance(hb)
			b.Tick(ctx)
			a.Tick(ctx)
			require.True(t, a.IsLeader())
			require.False(t, b.IsLeader())
		}
		l, err := cluster.List(ctx, store, clock.Now(), a.DeadAfter())
		require.NoError(t, err)
		require.Equal(t, "node-a", l.Leader)
		require.Equal(t, int64(1), l.Epoch)
		require.Len(t, l.Nodes, 2)
		for _, n := range l.Nodes {
			require.Equal(t, backends.NodeAlive, n.State, n.ID)
			require.Equal(t, n.ID == "node-a", n.Leader, n.ID)
		}

		// node-a stops heartbeating (it hangs, or died): within the lease's
		// ttl (3 heartbeats) node-b takes over, not before.
		clock.advance(hb)
		b.Tick(ctx)
		require.False(t, b.IsLeader())
		clock.advance(hb)
		b.Tick(ctx)
		require.False(t, b.IsLeader())
		clock.advance(hb)
		require.False(t, a.IsLeader(), "by its own clock node-a knows its lease ran out")
		b.Tick(ctx)
		require.True(t, b.IsLeader())
		l, err = cluster.List(ctx, store, clock.Now(), b.DeadAfter())
		require.NoError(t, err)
		require.Equal(t, "node-b", l.Leader)
		require.Equal(t, int64(2), l.Epoch)
		states := map[string]backends.NodeState{}
		for _, n := range l.Nodes {
			states[n.ID] = n.State
		}
		require.Equal(t, map[string]backends.NodeState{"node-a": backends.NodeDead, "node-b": backends.NodeAlive}, states)
		nodes := b.Collectors()[1].(*prometheus.GaugeVec)
		require.Equal(t, float64(1), testutil.ToFloat64(nodes.WithLabelValues("dead")))
		require.Equal(t, float64(1), testutil.ToFloat64(nodes.WithLabelValues("alive")))

		// node-a comes back: alive again, a follower.
		a.Tick(ctx)
		require.False(t, a.IsLeader())
		require.Equal(t, float64(0), testutil.ToFloat64(a.Collectors()[0]))

		// node-b leaves cleanly: the lease is free at once, node-a takes it
		// on its next round, and node-b is listed as stopped.
		require.NoError(t, b.Stop(ctx))
		require.False(t, b.IsLeader())
		a.Tick(ctx)
		require.True(t, a.IsLeader())
		l, err = cluster.List(ctx, store, clock.Now(), a.DeadAfter())
		require.NoError(t, err)
		require.Equal(t, "node-a", l.Leader)
		require.Equal(t, int64(3), l.Epoch)
		for _, n := range l.Nodes {
			if n.ID == "node-b" {
				require.Equal(t, backends.NodeStopped, n.State)
			}
		}
	})
}

// Two nodes starting at the same instant: exactly one leads.
func TestConcurrentStartsElectOne(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		var members []*cluster.Cluster
		for i := range 4 {
			members = append(members, member(t, store, fmt.Sprintf("node-%d", i), clock))
		}
		var wg sync.WaitGroup
		for _, m := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.Start(ctx); err != nil {
					t.Errorf("start: %v", err)
				}
			}()
		}
		wg.Wait()
		leaders := 0
		for _, m := range members {
			if m.IsLeader() {
				leaders++
			}
		}
		require.Equal(t, 1, leaders)
	})
}

// The leader recovers the leases of a dead node at once: long before they
// expire, the dead node's running step fails as lease_expired and its
// step claimed ahead goes back to pending; another node's steps stay.
func TestLeaderRecoversDeadNodeLeases(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		a := member(t, store, "node-a", clock)
		b := member(t, store, "node-b", clock)
		require.NoError(t, b.Start(ctx))
		require.NoError(t, a.Start(ctx))
		require.True(t, b.IsLeader())

		task, _, err := store.CreateTask(ctx, &backends.CreateTaskParams{
			Namespace: "default", WorkflowName: "w", WorkflowVersion: "1", Context: json.RawMessage(`{}`),
			Steps: []backends.NewStep{
				{Name: "x", Handler: "h", Retryable: true, RetryLimit: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
				{Name: "y", Handler: "h", Retryable: true, RetryLimit: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
				{Name: "z", Handler: "h", Retryable: true, RetryLimit: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
			},
			Now: clock.Now(),
		})
		require.NoError(t, err)
		cs, err := store.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "node-a", Limit: 2, Queued: 1, LeaseDuration: time.Hour, Now: clock.Now()})
		require.NoError(t, err)
		require.Len(t, cs, 2)
		cs, err = store.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "node-b", Limit: 1, LeaseDuration: time.Hour, Now: clock.Now()})
		require.NoError(t, err)
		require.Len(t, cs, 1)

		// node-a goes quiet; node-b's rounds go on.
		for range 2 {
			clock.advance(hb)
			b.Tick(ctx)
		}
		steps, err := store.ListSteps(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateInProgress, steps[0].State, "2 heartbeats missed: not dead yet")
		clock.advance(hb)
		b.Tick(ctx)

		steps, err = store.ListSteps(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateError, steps[0].State, "running on the dead node: failed")
		var se backends.StepError
		require.NoError(t, json.Unmarshal(steps[0].Error, &se))
		require.Equal(t, backends.ErrorKindLeaseExpired, se.Kind)
		require.Equal(t, backends.StatePending, steps[1].State, "claimed ahead on the dead node: given back")
		require.Equal(t, 0, steps[1].Attempts)
		require.Equal(t, backends.StateInProgress, steps[2].State, "the leader's own step stays")
		require.Equal(t, "node-b", steps[2].LeaseOwner)
		require.Equal(t, float64(2), testutil.ToFloat64(b.Collectors()[3]))
	})
}

const workHCL = `
workflow "work" {
  retry {
    base = "1ms"
    max  = "1ms"
  }
  step "only" {
    handler = "test.work"
  }
}
`

// runEngine runs an engine until the test ends.
func runEngine(t *testing.T, cfg engine.Config) *engine.Engine {
	t.Helper()
	ws, diags := definition.NewParser().ParseSource("work.hcl", []byte(workHCL))
	require.False(t, diags.HasErrors(), diags.Error())
	cfg.Catalog = definition.NewCatalog(ws)
	cfg.SafetyPoll = 50 * time.Millisecond
	eng, err := engine.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return eng
}

// Two engines, each with its membership, on one database. node-a runs a
// step under a one-minute lease and dies (its rounds stop; its handler
// hangs). Within three heartbeats the leader, node-b, recovers the step
// through its engine and runs it again: the task completes long before
// the lease would have expired, and node-a's late result is fenced off.
func TestDeadNodesStepRunsElsewhereBeforeItsLeaseExpires(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		// node-b and both memberships live on the shifted clock; node-a's
		// engine on the real one, so its lease is a real minute.
		clock := &shiftClock{}
		a := member(t, store, "node-a", clock)
		require.NoError(t, a.Start(ctx))
		require.True(t, a.IsLeader())

		release := make(chan struct{})
		started := make(chan struct{}, 1)
		regA := builtin.NewRegistry()
		require.NoError(t, regA.Register("test.work", engine.HandlerFunc(func(ctx context.Context, _ *engine.StepRequest) (json.RawMessage, error) {
			started <- struct{}{}
			select {
			case <-release:
				return json.RawMessage(`{"by": "a"}`), nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})))
		engA := runEngine(t, engine.Config{Store: store, Registry: regA, NodeID: "node-a", LeaseDuration: time.Minute,
			Leader: a.IsLeader, ShutdownGrace: -1})
		t.Cleanup(func() { close(release) })
		task, _, err := engA.CreateTask(ctx, engine.CreateRequest{Workflow: "work", Initiator: "test"})
		require.NoError(t, err)
		<-started
		began := time.Now()

		regB := builtin.NewRegistry()
		require.NoError(t, regB.Register("test.work", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{"by": "b"}`), nil
		})))
		var b *cluster.Cluster
		var engB *engine.Engine
		b = member(t, store, "node-b", clock, func(c *cluster.Config) {
			c.RecoverNode = func(ctx context.Context, id string) (int, error) { return engB.RecoverNodeLeases(ctx, id) }
		})
		engB = runEngine(t, engine.Config{Store: store, Registry: regB, NodeID: "node-b", LeaseDuration: time.Minute,
			Leader: func() bool { return b.IsLeader() }, Clock: clock})
		require.NoError(t, b.Start(ctx))
		require.False(t, b.IsLeader())

		// node-a's rounds stop. Three heartbeats later node-b leads and
		// finds node-a dead.
		clock.advance(DeadHeartbeats * hb)
		b.Tick(ctx)
		require.True(t, b.IsLeader())
		require.Eventually(t, func() bool {
			got, err := store.GetTask(ctx, task.ID)
			return err == nil && got.State == backends.StateComplete
		}, 15*time.Second, 5*time.Millisecond)
		require.Less(t, time.Since(began), time.Minute, "before node-a's lease expired")
		steps, err := store.ListSteps(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, 2, steps[0].Attempts)
		require.JSONEq(t, `{"by": "b"}`, string(steps[0].Results))
		trs, err := store.ListTransitions(ctx, task.ID)
		require.NoError(t, err)
		var failed int
		for _, tr := range trs {
			if tr.StepID == steps[0].ID && tr.To == backends.StateError {
				failed++
			}
		}
		require.Equal(t, 1, failed, "node-a's attempt failed once, as lease_expired")
	})
}

// DeadHeartbeats, as the tests use it.
const DeadHeartbeats = cluster.DeadHeartbeats

// Retention is the leader's: batch after batch, it deletes the finished
// tasks older than the retention; a follower deletes nothing.
func TestLeaderDeletesOldFinishedTasks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		retain := func(c *cluster.Config) { c.Retention = time.Hour; c.RetentionBatch = 2 }
		a := member(t, store, "node-a", clock, retain)
		b := member(t, store, "node-b", clock, retain)
		require.NoError(t, a.Start(ctx))
		require.NoError(t, b.Start(ctx))

		create := func(now time.Time) int64 {
			task, _, err := store.CreateTask(ctx, &backends.CreateTaskParams{
				Namespace: "default", WorkflowName: "w", WorkflowVersion: "1", Context: json.RawMessage(`{}`),
				Steps: []backends.NewStep{{Name: "x", Handler: "h", Bypass: true}}, Now: now,
			})
			require.NoError(t, err)
			require.Equal(t, backends.StateComplete, task.State)
			return task.ID
		}
		var old []int64
		for range 5 {
			old = append(old, create(clock.Now().Add(-2*time.Hour)))
		}
		recent := create(clock.Now())

		b.Tick(ctx)
		for _, id := range old {
			_, err := store.GetTask(ctx, id)
			require.NoError(t, err, "a follower deletes nothing")
		}
		a.Tick(ctx)
		for _, id := range old {
			_, err := store.GetTask(ctx, id)
			require.ErrorIs(t, err, backends.ErrNotFound)
		}
		_, err := store.GetTask(ctx, recent)
		require.NoError(t, err)
		require.Equal(t, float64(5), testutil.ToFloat64(a.Collectors()[2]))
		require.Equal(t, float64(0), testutil.ToFloat64(b.Collectors()[2]))
	})
}

// Old schedule firings go on the leader's rounds too, batch after batch;
// each schedule's last firing stays however old, and so does one whose
// task is unfinished; their tasks are not touched (finished tasks have a
// retention of their own, unset here); a follower deletes nothing.
func TestLeaderDeletesOldScheduleFirings(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		retain := func(c *cluster.Config) { c.FiringRetention = 90 * 24 * time.Hour; c.RetentionBatch = 2 }
		a := member(t, store, "node-a", clock, retain)
		b := member(t, store, "node-b", clock, retain)
		require.NoError(t, a.Start(ctx))
		require.NoError(t, b.Start(ctx))
		require.True(t, a.IsLeader())

		fire := func(name string, at time.Time, finished bool) int64 {
			t.Helper()
			f, created, err := store.FireSchedule(ctx, &backends.FireScheduleParams{
				Schedule: name, Kind: backends.FiringScheduled, At: at,
				Task: &backends.CreateTaskParams{
					Namespace: "default", WorkflowName: "w", WorkflowVersion: "1", Context: json.RawMessage(`{}`),
					Steps: []backends.NewStep{{Name: "x", Handler: "h", Bypass: finished}}, Now: at,
				},
			})
			require.NoError(t, err)
			require.True(t, created)
			return f.TaskID
		}
		old := clock.Now().Add(-100 * 24 * time.Hour).UTC().Truncate(time.Minute)
		var tasks []int64
		for i := range 5 {
			tasks = append(tasks, fire("daily", old.Add(time.Duration(i)*time.Minute), true))
		}
		tasks = append(tasks, fire("daily", old.Add(5*time.Minute), false)) // unfinished
		tasks = append(tasks, fire("daily", old.Add(6*time.Minute), true))  // its last, old too
		tasks = append(tasks, fire("hourly", old, true))
		tasks = append(tasks, fire("hourly", clock.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond), true))

		instants := func(name string) []time.Time {
			fs, err := store.ScheduleFirings(ctx, name, 0)
			require.NoError(t, err)
			var out []time.Time
			for _, f := range fs {
				out = append(out, f.At)
			}
			return out
		}
		before := map[string][]time.Time{"daily": instants("daily"), "hourly": instants("hourly")}
		require.Len(t, before["daily"], 7)
		require.Len(t, before["hourly"], 2)

		b.Tick(ctx)
		require.Equal(t, before["daily"], instants("daily"), "a follower deletes nothing")
		require.Equal(t, before["hourly"], instants("hourly"))

		// Six firings to go, two per transaction: the leader's round
		// deletes them all unless its time budget runs out first, and the
		// next rounds finish then.
		require.Eventually(t, func() bool {
			a.Tick(ctx)
			return len(instants("daily")) == 2 && len(instants("hourly")) == 1
		}, 20*time.Second, 10*time.Millisecond)
		require.Equal(t, before["daily"][:2], instants("daily"), "the last firing and the unfinished task's stay")
		require.Equal(t, before["hourly"][:1], instants("hourly"), "the recent firing stays")
		require.Equal(t, float64(6), testutil.ToFloat64(a.Collectors()[4]))
		require.Equal(t, float64(0), testutil.ToFloat64(b.Collectors()[4]))
		for _, id := range tasks {
			_, err := store.GetTask(ctx, id)
			require.NoError(t, err, "tasks are not touched")
		}

		// A deleted instant does not fire again.
		_, _, err := store.FireSchedule(ctx, &backends.FireScheduleParams{
			Schedule: "daily", Kind: backends.FiringScheduled, At: old,
			Task: &backends.CreateTaskParams{
				Namespace: "default", WorkflowName: "w", WorkflowVersion: "1", Context: json.RawMessage(`{}`),
				Steps: []backends.NewStep{{Name: "x", Handler: "h"}}, Now: clock.Now(),
			},
		})
		require.ErrorIs(t, err, backends.ErrFiringHandled)
	})
}

// A node that stopped while still holding a lease (its own release failed)
// has it recovered by the leader at once too; once a gone node holds
// nothing, the leader stops asking about it, until it comes back and goes
// again.
func TestStoppedNodesLeftoverLeasesAndAskingOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &shiftClock{}
		var asked []string
		var mu sync.Mutex
		a := member(t, store, "node-a", clock, func(c *cluster.Config) {
			c.RecoverNode = func(ctx context.Context, id string) (int, error) {
				mu.Lock()
				asked = append(asked, id)
				mu.Unlock()
				rrs, err := store.RecoverNodeLeases(ctx, &backends.RecoverNodeParams{Owner: id, Limit: 100, Now: clock.Now()})
				return len(rrs), err
			}
		})
		b := member(t, store, "node-b", clock)
		require.NoError(t, a.Start(ctx))
		require.NoError(t, b.Start(ctx))
		require.True(t, a.IsLeader())

		task, _, err := store.CreateTask(ctx, &backends.CreateTaskParams{
			Namespace: "default", WorkflowName: "w", WorkflowVersion: "1", Context: json.RawMessage(`{}`),
			Steps: []backends.NewStep{{Name: "x", Handler: "h", Retryable: true, RetryLimit: 3}}, Now: clock.Now(),
		})
		require.NoError(t, err)
		cs, err := store.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "node-b", Limit: 1, LeaseDuration: time.Hour, Now: clock.Now()})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		require.NoError(t, b.Stop(ctx))

		a.Tick(ctx)
		steps, err := store.ListSteps(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateError, steps[0].State, "recovered on the leader's next round")
		a.Tick(ctx) // finds nothing left
		for range 3 {
			clock.advance(hb)
			a.Tick(ctx)
		}
		mu.Lock()
		require.Equal(t, []string{"node-b", "node-b"}, asked, "asked until nothing was left, then no more")
		mu.Unlock()

		// node-b comes back and goes again: asked again.
		b.Tick(ctx)
		clock.advance(hb)
		require.NoError(t, b.Stop(ctx))
		a.Tick(ctx)
		mu.Lock()
		require.Len(t, asked, 3)
		mu.Unlock()
	})
}

// writes counts the node-registry writes of a round.
type writes struct {
	backends.Store
	mu    sync.Mutex
	calls map[string]int
}

func (w *writes) add(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls[name]++
}

func (w *writes) HeartbeatNode(ctx context.Context, id string, now time.Time) error {
	w.add("HeartbeatNode")
	return w.Store.HeartbeatNode(ctx, id, now)
}

func (w *writes) TryLeadership(ctx context.Context, id string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	w.add("TryLeadership")
	return w.Store.TryLeadership(ctx, id, ttl, now)
}

func (w *writes) Beat(ctx context.Context, id string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	w.add("Beat")
	return w.Store.Beat(ctx, id, ttl, now)
}

func (w *writes) RegisterNode(ctx context.Context, n *backends.Node) error {
	w.add("RegisterNode")
	return w.Store.RegisterNode(ctx, n)
}

// An idle node's round writes its heartbeat and its leadership in one
// transaction (Beat); a node pruned while away registers again and still
// leads in that round.
func TestARoundIsOneBeat(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := &writes{Store: open(t), calls: map[string]int{}}
		clock := &shiftClock{}
		a := member(t, store, "node-a", clock)
		require.NoError(t, a.Start(ctx))
		store.calls = map[string]int{}
		for range 3 {
			clock.advance(hb)
			a.Tick(ctx)
			require.True(t, a.IsLeader())
		}
		require.Equal(t, map[string]int{"Beat": 3}, store.calls)

		// Pruned while away: the round registers it again and leads.
		n, err := store.PruneNodes(ctx, clock.Now().Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		store.calls = map[string]int{}
		clock.advance(hb)
		a.Tick(ctx)
		require.Equal(t, map[string]int{"Beat": 1, "RegisterNode": 1, "TryLeadership": 1}, store.calls)
		require.True(t, a.IsLeader())
		nodes, err := store.ListNodes(ctx)
		require.NoError(t, err)
		require.Len(t, nodes, 1)
	})
}
