package backendtest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func (b *bundle) nodes() map[string]*backends.Node {
	b.t.Helper()
	ns, err := b.store.ListNodes(b.ctx)
	require.NoError(b.t, err)
	out := map[string]*backends.Node{}
	for _, n := range ns {
		out[n.ID] = n
	}
	return out
}

func (b *bundle) lead(node string, ttl time.Duration, now time.Time) *backends.Leadership {
	b.t.Helper()
	l, err := b.store.TryLeadership(b.ctx, node, ttl, now)
	require.NoError(b.t, err)
	return l
}

func testNodes(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("RegisterHeartbeatList", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		require.Empty(t, b.nodes())
		for i, id := range []string{"node-b", "node-a"} {
			require.NoError(t, b.store.RegisterNode(b.ctx, &backends.Node{
				ID: id, Address: "http://" + id + ":8080", Version: "1.2.3", Workers: 4 + i,
				StartedAt: base, LastSeen: base,
			}))
		}
		ns, err := b.store.ListNodes(b.ctx)
		require.NoError(t, err)
		require.Len(t, ns, 2)
		require.Equal(t, "node-a", ns[0].ID, "ordered by id")
		require.Equal(t, &backends.Node{ID: "node-a", Address: "http://node-a:8080", Version: "1.2.3", Workers: 5,
			StartedAt: base, LastSeen: base}, ns[0])

		const hb = 2 * time.Second
		dead := 3 * hb
		require.NoError(t, b.store.HeartbeatNode(b.ctx, "node-b", at(5*time.Second)))
		got := b.nodes()
		require.Equal(t, at(5*time.Second), got["node-b"].LastSeen)
		require.Equal(t, base, got["node-b"].StartedAt)
		// Dead by time: last seen dead or more before now.
		now := at(dead - time.Microsecond)
		require.Equal(t, backends.NodeAlive, got["node-a"].StateAt(now, dead))
		require.Equal(t, backends.NodeDead, got["node-a"].StateAt(at(dead), dead))
		require.Equal(t, backends.NodeAlive, got["node-b"].StateAt(at(dead), dead))

		require.ErrorIs(t, b.store.HeartbeatNode(b.ctx, "node-x", base), backends.ErrNotFound)
		require.ErrorIs(t, b.store.StopNode(b.ctx, "node-x", base), backends.ErrNotFound)

		// A clean stop, then a restart under the same id.
		require.NoError(t, b.store.StopNode(b.ctx, "node-a", at(time.Second)))
		got = b.nodes()
		require.Equal(t, at(time.Second), *got["node-a"].StoppedAt)
		require.Equal(t, backends.NodeStopped, got["node-a"].StateAt(at(time.Hour), dead))
		require.NoError(t, b.store.RegisterNode(b.ctx, &backends.Node{
			ID: "node-a", Address: "http://other:9090", Version: "1.2.4", Workers: 8,
			StartedAt: at(time.Minute), LastSeen: at(time.Minute),
		}))
		got = b.nodes()
		require.Equal(t, &backends.Node{ID: "node-a", Address: "http://other:9090", Version: "1.2.4", Workers: 8,
			StartedAt: at(time.Minute), LastSeen: at(time.Minute)}, got["node-a"])

		// Pruning forgets the nodes last seen before the instant.
		n, err := b.store.PruneNodes(b.ctx, at(time.Minute))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, []string{"node-a"}, keys(b.nodes()))
	})

	t.Run("RecoverNodeLeases", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		sink := b.withSink()
		// node-1 runs a and holds b claimed ahead; node-2 runs c; node-1
		// also runs d, whose task an operator cancelled.
		mine := b.create(step("a"), step("b"))
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 2, Queued: 1, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 2)
		running, queued := cs[0], cs[1]
		require.Equal(t, "a", running.Step.Name)
		require.Nil(t, queued.Step.StartedAt)
		other := b.create(step("c"))
		cs, err = b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-2", Limit: 1, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		otherClaim := cs[0]
		cancelled := b.create(step("d"))
		cs, err = b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 1, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: cancelled.ID, Reason: "no", Now: base})
		require.NoError(t, err)
		seqBefore := b.lastSeq()

		// Long before any lease expires.
		now := at(time.Second)
		none, err := b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "node-1", Limit: 0, Now: now})
		require.NoError(t, err)
		require.Empty(t, none)
		res, err := b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "node-1", Limit: 10, Now: now})
		require.NoError(t, err)
		require.Len(t, res, 3)
		byName := map[string]*backends.RecordResult{}
		for _, r := range res {
			byName[r.Step.Name] = r
		}

		a := byName["a"].Step
		require.Equal(t, backends.StateError, a.State)
		require.Equal(t, 1, a.Attempts)
		require.Nil(t, a.LeaseExpiresAt)
		require.Equal(t, now, *a.LastFailureAt)
		var se backends.StepError
		require.NoError(t, json.Unmarshal(a.Error, &se))
		require.Equal(t, backends.ErrorKindLeaseExpired, se.Kind)
		require.True(t, se.Retryable)
		require.Contains(t, se.Message, "node-1")

		bq := b.step(mine.ID, "b")
		require.Equal(t, backends.StatePending, bq.State, "claimed ahead, never started: released")
		require.Equal(t, 0, bq.Attempts)
		require.Nil(t, bq.LeaseExpiresAt)

		require.Equal(t, backends.StateCancelled, b.step(cancelled.ID, "d").State)

		c := b.step(other.ID, "c")
		require.Equal(t, backends.StateInProgress, c.State, "another owner's step is untouched")
		require.Equal(t, otherClaim.Step.LeaseToken, c.LeaseToken)

		// The dead owner's tokens are stale: fenced.
		_, err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: running.Step.ID, LeaseToken: running.Step.LeaseToken, Now: now})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		st, err := b.store.ExtendLeases(b.ctx, &backends.ExtendLeasesParams{Owner: "node-1",
			Leases: []backends.Lease{{StepID: running.Step.ID, Token: running.Step.LeaseToken}}, LeaseDuration: lease, Now: now})
		require.NoError(t, err)
		require.True(t, st[0].Lost)

		// The events are RecoverExpiredLeases' own: step a's lease_expired
		// (the released step has none), written and handed to the sink.
		evs := b.events(backends.EventQuery{After: seqBefore, TaskID: mine.ID})
		require.NotEmpty(t, evs)
		require.Equal(t, backends.EventStepLeaseExpired, evs[0].Type)
		require.Equal(t, "a", evs[0].StepName)
		for _, ev := range evs {
			require.NotEqual(t, "b", ev.StepName)
		}
		_, sunk := sink.all()
		require.Contains(t, seqs(sunk), evs[0].Seq)

		// Nothing left for that owner; the step retries under its policy
		// (backoff(1) = 2 s), claimed ahead of nothing by anyone.
		res, err = b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "node-1", Limit: 10, Now: now})
		require.NoError(t, err)
		require.Empty(t, res)
		got := b.claim(2, now.Add(2*time.Second))
		require.Len(t, got, 2)
		names := []string{got[0].Step.Name, got[1].Step.Name}
		require.ElementsMatch(t, []string{"a", "b"}, names)
		for _, g := range got {
			if g.Step.Name == "a" {
				require.Equal(t, 2, g.Step.Attempts)
			} else {
				require.Equal(t, 1, g.Step.Attempts)
			}
		}
		b.checkTransitions(mine.ID)
	})

	t.Run("RecoverNodeLeasesInBatches", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c"))
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 3, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 3)
		var names []string
		for range 3 {
			res, err := b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "node-1", Limit: 1, Now: at(time.Second)})
			require.NoError(t, err)
			require.Len(t, res, 1)
			names = append(names, res[0].Step.Name)
		}
		require.Equal(t, []string{"a", "b", "c"}, names, "by step id")
		res, err := b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "node-1", Limit: 1, Now: at(time.Second)})
		require.NoError(t, err)
		require.Empty(t, res)
		res, err = b.store.RecoverNodeLeases(b.ctx, &backends.RecoverNodeParams{Owner: "nobody", Limit: 10, Now: at(time.Second)})
		require.NoError(t, err)
		require.Empty(t, res)
		for _, s := range b.steps(task.ID) {
			require.Equal(t, backends.StateError, s.State, s.Name)
		}
		b.checkTransitions(task.ID)
	})

	t.Run("Leadership", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const ttl = 6 * time.Second
		cur, err := b.store.CurrentLeader(b.ctx)
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{}, cur, "nobody ever led")
		l := b.lead("node-a", ttl, base)
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: true, Epoch: 1, ExpiresAt: at(ttl)}, l)

		// Another node is refused while the lease lives, and told who holds it.
		l = b.lead("node-b", ttl, at(time.Second))
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: false, Epoch: 1, ExpiresAt: at(ttl)}, l)

		// The holder renews: same term.
		l = b.lead("node-a", ttl, at(3*time.Second))
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: true, Epoch: 1, ExpiresAt: at(3*time.Second + ttl)}, l)

		// It stops renewing: not before expiry, at expiry the other takes
		// over with a new epoch.
		require.False(t, b.lead("node-b", ttl, at(3*time.Second+ttl-time.Microsecond)).IsLeader)
		cur, err = b.store.CurrentLeader(b.ctx)
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{Leader: "node-a", Epoch: 1, ExpiresAt: at(3*time.Second + ttl)}, cur, "reading takes nothing")
		l = b.lead("node-b", ttl, at(3*time.Second+ttl))
		require.Equal(t, &backends.Leadership{Leader: "node-b", IsLeader: true, Epoch: 2, ExpiresAt: at(3*time.Second + 2*ttl)}, l)
		l = b.lead("node-a", ttl, at(10*time.Second))
		require.Equal(t, "node-b", l.Leader)
		require.False(t, l.IsLeader)

		// Resigning frees it at once; resigning what one does not hold is
		// a no-op.
		require.NoError(t, b.store.ResignLeadership(b.ctx, "node-a", at(11*time.Second)))
		require.False(t, b.lead("node-a", ttl, at(11*time.Second)).IsLeader)
		require.NoError(t, b.store.ResignLeadership(b.ctx, "node-b", at(11*time.Second)))
		l = b.lead("node-a", ttl, at(11*time.Second))
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: true, Epoch: 3, ExpiresAt: at(11*time.Second + ttl)}, l)

		// Taken again by its holder after it expired: a new term.
		l = b.lead("node-a", ttl, at(time.Minute))
		require.Equal(t, int64(4), l.Epoch)
		require.True(t, l.IsLeader)
	})

	// Beat: a heartbeat and a leadership attempt in one transaction, each
	// as its own call would leave it; an unknown node writes neither.
	t.Run("Beat", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const ttl = 6 * time.Second
		for _, id := range []string{"node-a", "node-b"} {
			require.NoError(t, b.store.RegisterNode(b.ctx, &backends.Node{ID: id, Address: "http://" + id, StartedAt: base, LastSeen: base}))
		}
		require.NoError(t, b.store.StopNode(b.ctx, "node-a", at(time.Second)))

		l, err := b.store.Beat(b.ctx, "node-a", ttl, at(2*time.Second))
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: true, Epoch: 1, ExpiresAt: at(2*time.Second + ttl)}, l)
		a := b.nodes()["node-a"]
		require.Equal(t, at(2*time.Second), a.LastSeen)
		require.Nil(t, a.StoppedAt, "a heartbeat clears a stop")

		// Another node heartbeats and is told who leads; renewing keeps
		// the term.
		l, err = b.store.Beat(b.ctx, "node-b", ttl, at(3*time.Second))
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{Leader: "node-a", Epoch: 1, ExpiresAt: at(2*time.Second + ttl)}, l)
		require.Equal(t, at(3*time.Second), b.nodes()["node-b"].LastSeen)
		l, err = b.store.Beat(b.ctx, "node-a", ttl, at(4*time.Second))
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{Leader: "node-a", IsLeader: true, Epoch: 1, ExpiresAt: at(4*time.Second + ttl)}, l)

		// A node not registered (pruned while away): ErrNotFound, and the
		// lease it could have taken is left as it was.
		_, err = b.store.Beat(b.ctx, "ghost", ttl, at(time.Hour))
		require.ErrorIs(t, err, backends.ErrNotFound)
		cur, err := b.store.CurrentLeader(b.ctx)
		require.NoError(t, err)
		require.Equal(t, &backends.Leadership{Leader: "node-a", Epoch: 1, ExpiresAt: at(4*time.Second + ttl)}, cur)
		require.NotContains(t, b.nodes(), "ghost")
	})

	t.Run("LeadershipRace", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			leaders []string
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := b.store.TryLeadership(b.ctx, fmt.Sprintf("node-%d", i), time.Minute, base)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if l.IsLeader {
					leaders = append(leaders, l.Leader)
				}
			}()
		}
		wg.Wait()
		require.Len(t, leaders, 1, "exactly one node leads")
		l := b.lead("node-x", time.Minute, at(time.Second))
		require.Equal(t, leaders[0], l.Leader)
		require.Equal(t, int64(1), l.Epoch)
	})

	t.Run("Retention", func(t *testing.T) { testRetention(t, newStore) })
}

// assertNoError is require.NoError for goroutines other than the test's.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func testRetention(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	cutoff := at(time.Hour)

	// Old finished tasks, one per finished state.
	oldComplete := b.create(step("a"), step("b", "a"))
	b.run("a", at(time.Second))
	b.run("b", at(2*time.Second))
	require.Equal(t, backends.StateComplete, b.task(oldComplete.ID).State)
	oldCancelled := b.create(step("a"))
	_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: oldCancelled.ID, Reason: "x", Now: at(time.Second)})
	require.NoError(t, err)
	oldResolved := b.create(step("a"))
	b.fail(b.claimOne("a", at(time.Second)), false, nil, at(time.Second))
	require.Equal(t, backends.StateError, b.task(oldResolved.ID).State)
	_, err = b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: oldResolved.ID, Reason: "x", Now: at(2 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, backends.StateResolvedManually, b.task(oldResolved.ID).State)

	// Kept: old but unfinished (error, pending); cancelled with a step
	// still running; finished after the cutoff.
	oldError := b.create(step("a"))
	b.fail(b.claimOne("a", at(time.Second)), false, nil, at(time.Second))
	oldPending := b.create(step("a0"), step("a", "a0"))
	oldRunning := b.create(step("r"))
	b.claimOne("a0", at(time.Second))
	b.claimOne("r", at(time.Second))
	_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: oldRunning.ID, Reason: "x", Now: at(time.Second)})
	require.NoError(t, err)
	require.Equal(t, backends.StateCancelled, b.task(oldRunning.ID).State)
	recent := b.create(step("z"))
	b.run("z", cutoff)

	// Rows that are not task data.
	_, err = b.store.CreateAPIKey(b.ctx, &backends.NewAPIKeyParams{ID: "k1", Subject: "s", Roles: []string{"admin"}, Hash: hashOf(1), Actor: "t", Now: base})
	require.NoError(t, err)
	_, _, err = b.store.PutSettingIfAbsent(b.ctx, "some", "value", base)
	require.NoError(t, err)
	_, _, err = b.store.AcquireCursor(b.ctx, &backends.AcquireCursorParams{Name: "hook", Owner: "n", Start: 3, Lease: time.Minute, Now: base})
	require.NoError(t, err)
	lastSeq := b.lastSeq()

	deleted := []*backends.Task{oldComplete, oldCancelled, oldResolved}
	kept := []*backends.Task{oldError, oldPending, oldRunning, recent}
	type rows struct {
		steps       []*backends.Step
		transitions []*backends.Transition
		events      []*backends.Event
	}
	rowsOf := func(id int64) rows {
		steps, err := b.store.ListSteps(b.ctx, id)
		require.NoError(t, err)
		return rows{steps: steps, transitions: b.transitions(id), events: b.events(backends.EventQuery{TaskID: id})}
	}
	keptBefore := map[int64]rows{}
	for _, k := range kept {
		keptBefore[k.ID] = rowsOf(k.ID)
	}
	var deletedSteps []int64
	for _, d := range deleted {
		r := rowsOf(d.ID)
		require.NotEmpty(t, r.events)
		require.NotEmpty(t, r.transitions)
		for _, s := range r.steps {
			deletedSteps = append(deletedSteps, s.ID)
		}
	}

	// Nothing is older than a cutoff before every finish.
	n, err := b.store.DeleteFinishedTasks(b.ctx, at(time.Second), 10)
	require.NoError(t, err)
	require.Equal(t, 0, n)
	n, err = b.store.DeleteFinishedTasks(b.ctx, cutoff, 0)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	// In batches of two, oldest finish first.
	n, err = b.store.DeleteFinishedTasks(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, err = b.store.GetTask(b.ctx, oldCancelled.ID)
	require.ErrorIs(t, err, backends.ErrNotFound, "finished at 1s: first")
	n, err = b.store.DeleteFinishedTasks(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = b.store.DeleteFinishedTasks(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	for _, d := range deleted {
		_, err := b.store.GetTask(b.ctx, d.ID)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.ListSteps(b.ctx, d.ID)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.ListTransitions(b.ctx, d.ID)
		require.ErrorIs(t, err, backends.ErrNotFound)
		require.Empty(t, b.events(backends.EventQuery{TaskID: d.ID}))
		if edges, err := b.store.ListEdges(b.ctx, d.ID); err == nil {
			require.Empty(t, edges)
		} else {
			require.ErrorIs(t, err, backends.ErrNotFound)
		}
	}
	for _, id := range deletedSteps {
		_, err := b.store.GetStep(b.ctx, id)
		require.ErrorIs(t, err, backends.ErrNotFound)
	}
	for _, k := range kept {
		require.Equal(t, keptBefore[k.ID], rowsOf(k.ID), "task %d", k.ID)
	}
	// The log's numbering goes on; other tables are untouched.
	require.Equal(t, lastSeq, b.lastSeq())
	v, err := b.store.Setting(b.ctx, "some")
	require.NoError(t, err)
	require.Equal(t, "value", v)
	_, err = b.store.APIKeyByHash(b.ctx, hashOf(1))
	require.NoError(t, err)
	cursors, err := b.store.ListCursors(b.ctx)
	require.NoError(t, err)
	require.Len(t, cursors, 1)
	require.Equal(t, int64(3), cursors[0].Seq)
	for _, ev := range b.events(backends.EventQuery{}) {
		for _, d := range deleted {
			require.NotEqual(t, d.ID, ev.TaskID)
		}
	}

	// A new task gets a new id and its events new numbers.
	fresh := b.create(step("n"))
	require.Greater(t, fresh.ID, recent.ID)
	require.Greater(t, b.lastSeq(), lastSeq)
}
