package backendtest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testClaim(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("ReadyAt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		// a at base; b waits for a, completed at +5s; a retry of c waits for
		// its backoff; a requested backoff counts when it is the later.
		b.create(step("a"), step("b", "a"))
		ca := b.claimOne("a", at(2*time.Second))
		require.Equal(t, base, ca.ReadyAt, "a root is ready from its task's creation")
		b.complete(ca, at(5*time.Second))
		cb := b.claimOne("b", at(9*time.Second))
		require.Equal(t, at(5*time.Second), cb.ReadyAt, "a child is ready when its last parent completed")
		b.fail(cb, true, nil, at(10*time.Second))
		// backoff(1) = 2s after the failure at +10s.
		cb2 := b.claimOne("b", at(30*time.Second))
		require.True(t, cb2.Retry)
		require.Equal(t, at(12*time.Second), cb2.ReadyAt, "a retry is ready when its backoff ends")
		requested := 7
		b.fail(cb2, true, &requested, at(40*time.Second))
		cb3 := b.claimOne("b", at(60*time.Second))
		require.Equal(t, at(47*time.Second), cb3.ReadyAt, "the requested backoff, later than backoff(2) = 4s")
	})

	t.Run("WritesTheClaim", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		now := at(time.Second)
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "edge-1", Limit: 10, LeaseDuration: 30 * time.Second, Now: now})
		require.NoError(t, err)
		require.Len(t, cs, 2)
		for i, c := range cs {
			s := c.Step
			require.Equal(t, backends.StateInProgress, s.State)
			require.Equal(t, 1, s.Attempts)
			require.Equal(t, now, *s.StartedAt)
			require.Equal(t, "edge-1", s.LeaseOwner)
			require.Equal(t, now.Add(30*time.Second), *s.LeaseExpiresAt)
			require.Positive(t, s.LeaseToken)
			require.False(t, s.CancelRequested)
			require.Nil(t, s.BackoffRequestSeconds)
			require.False(t, c.Retry)
			require.Equal(t, i == 0, c.TaskStarted, "only the first claim starts the task")
			require.Equal(t, backends.StateInProgress, c.Task.State)
			require.JSONEq(t, `{"k":"v"}`, string(c.Task.Context))
			require.Empty(t, c.ParentResults)
			got, err := b.store.GetStep(b.ctx, s.ID)
			require.NoError(t, err)
			require.Equal(t, s, got)
		}
		require.Equal(t, []string{">pending", "pending>in_progress"}, b.moves(task.ID, 0))
		b.checkTransitions(task.ID)
	})

	t.Run("ParentResultsByName", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		skip := step("skipped")
		skip.Bypass = true
		task := b.create(step("a"), skip, step("c", "a", "skipped"))
		b.run("a", base)
		c := b.claimOne("c", base)
		require.Equal(t, map[string]json.RawMessage{"a": json.RawMessage(`{"step":"a"}`), "skipped": json.RawMessage(`{"bypassed":true}`)},
			normalize(t, c.ParentResults))
		require.Equal(t, task.ID, c.Task.ID)
	})

	// Claim order: each task's ready head (its waiting step of lowest
	// position), oldest task first; then the other ready steps by task and
	// position. (Before heads came first, this test asserted x, y, p.)
	// Fairness has the rest of the claim order.
	t.Run("HeadsFirstThenOldestTaskThenPosition", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		t1 := b.create(step("x"), step("y"), step("z"))
		t2 := b.create(step("p"), step("q"))
		cs := b.claim(4, base)
		require.Len(t, cs, 4)
		require.Equal(t, []int64{t1.ID, t2.ID, t1.ID, t1.ID}, []int64{cs[0].Task.ID, cs[1].Task.ID, cs[2].Task.ID, cs[3].Task.ID})
		require.Equal(t, []string{"x", "p", "y", "z"}, claimedNames(cs))
		cs = b.claim(3, base)
		require.Equal(t, []string{"q"}, claimedNames(cs))
		require.Empty(t, b.claim(3, base))
		require.Empty(t, b.claim(0, base))
	})

	// A head that is not ready (a failed step waiting for its backoff) gives
	// its task no place among the heads; its other ready steps come after
	// every head.
	t.Run("HeadInBackoffWaitsForTheRest", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"), step("b"))
		b.fail(b.claimOne("a", base), true, ptr(60), base)
		b.create(step("p"))
		require.Equal(t, []string{"p", "b"}, claimedNames(b.claim(5, at(time.Second))))
	})

	t.Run("NeverReturnsALeasedStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"))
		c := b.claimOne("a", base)
		for _, now := range []time.Time{base, at(lease / 2), at(lease), at(24 * time.Hour)} {
			require.Empty(t, b.claim(10, now), "at %s", now)
		}
		// Only once recovered (and its backoff over) may it be claimed again.
		rec, err := b.store.RecoverExpiredLeases(b.ctx, &backends.RecoverParams{Limit: 10, Now: at(lease)})
		require.NoError(t, err)
		require.Len(t, rec, 1)
		c2 := b.claimOne("a", at(lease+2*time.Second))
		require.Greater(t, c2.Step.LeaseToken, c.Step.LeaseToken)
	})

	t.Run("RetryClaimMovesErrorPendingInProgress", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		b.fail(b.claimOne("a", base), true, ptr(5), base)
		c := b.claimOne("a", at(5*time.Second))
		require.True(t, c.Retry)
		require.False(t, c.TaskStarted)
		require.Equal(t, 2, c.Step.Attempts)
		require.Nil(t, c.Step.BackoffRequestSeconds)
		require.Equal(t, at(5*time.Second), *c.Step.StartedAt)
		require.Equal(t, base, *c.Step.LastFailureAt)
		require.Equal(t, base, *c.Step.LastAttemptedAt)
		b.checkTransitions(task.ID)
	})

	t.Run("ConcurrentClaimersNeverShareAStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		for i := 0; i < 10; i++ {
			b.create(step("a"), step("b"), step("c"))
		}
		var (
			mu   sync.Mutex
			seen = map[int64]string{}
			wg   sync.WaitGroup
		)
		for w := 0; w < 4; w++ {
			owner := name("node-%d", w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: owner, Limit: 2, LeaseDuration: lease, Now: base})
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					for _, c := range cs {
						assert.NotContains(t, seen, c.Step.ID, "claimed twice")
						seen[c.Step.ID] = owner
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, seen, 30)
		for id, owner := range seen {
			s, err := b.store.GetStep(b.ctx, id)
			require.NoError(t, err)
			require.Equal(t, owner, s.LeaseOwner)
		}
	})

	t.Run("OnlyTasksPendingOrInProgress", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		// A task in error: a fails for good, nothing else can run. Its
		// step is never claimed again, not even once an operator could
		// think of it as ready.
		task := b.create(step("a"), step("b", "a"))
		res := b.fail(b.claimOne("a", base), false, nil, base)
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Empty(t, b.claim(10, at(time.Hour)))

		// A cancelled task's steps are never claimed.
		t2 := b.create(step("c"))
		_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: t2.ID, Now: base})
		require.NoError(t, err)
		require.Empty(t, b.claim(10, at(time.Hour)))

		// Nor those of a task resolved manually.
		_, err = b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Now: base})
		require.NoError(t, err)
		require.Empty(t, b.claim(10, at(time.Hour)))
	})
}

// normalize re-marshals JSON values so that equal documents compare equal.
func normalize(t *testing.T, m map[string]json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	for k, v := range m {
		var x any
		require.NoError(t, json.Unmarshal(v, &x))
		nb, err := json.Marshal(x)
		require.NoError(t, err)
		out[k] = nb
	}
	return out
}

func claimedNames(cs []*backends.Claim) []string {
	names := []string{}
	for _, c := range cs {
		names = append(names, c.Step.Name)
	}
	return names
}
