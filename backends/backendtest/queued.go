package backendtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// testQueued: claims that wait for a worker (ClaimStepsParams.Queued), the
// StartStep that starts their handler, and what recovery does with a claim
// whose handler never started (SEMANTICS §5.2 and §5.6).
func testQueued(t *testing.T, newStore func(t *testing.T) backends.Store) {
	claim := func(b *bundle, limit, queued int, now time.Time) []*backends.Claim {
		b.t.Helper()
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{
			Owner: "node-1", Limit: limit, Queued: queued, LeaseDuration: lease, Now: now})
		require.NoError(b.t, err)
		return cs
	}
	start := func(b *bundle, c *backends.Claim, owner string, now time.Time) (bool, error) {
		return b.store.StartStep(b.ctx, &backends.StartStepParams{
			StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Owner: owner, LeaseDuration: lease, Now: now})
	}

	t.Run("LastPlacesWaitForAWorker", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"), step("b"), step("c"), step("d"))
		cs := claim(b, 5, 3, base) // two places start now; four steps to claim
		require.Len(t, cs, 4)
		for i, c := range cs {
			require.Equal(t, 1, c.Step.Attempts)
			require.Equal(t, at(lease), *c.Step.LeaseExpiresAt)
			if i < 2 {
				require.Equal(t, base, *c.Step.StartedAt, c.Step.Name)
			} else {
				require.Nil(t, c.Step.StartedAt, c.Step.Name)
			}
			require.Equal(t, c.Step.StartedAt, b.step(c.Task.ID, c.Step.Name).StartedAt)
		}
		// Queued = 0 (and fewer steps than places): every claim starts.
		b.create(step("e"))
		cs = claim(b, 3, 0, base)
		require.Len(t, cs, 1)
		require.NotNil(t, cs[0].Step.StartedAt)
	})

	t.Run("StartStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		cs := claim(b, 2, 2, base)
		require.Len(t, cs, 2)
		a, bb := cs[0], cs[1]

		cancel, err := start(b, a, "node-1", at(10*time.Second))
		require.NoError(t, err)
		require.False(t, cancel)
		got := b.step(task.ID, "a")
		require.Equal(t, at(10*time.Second), *got.StartedAt)
		require.Equal(t, at(10*time.Second+lease), *got.LeaseExpiresAt, "the lease is extended")
		require.Equal(t, backends.StateInProgress, got.State)
		require.Equal(t, 1, got.Attempts)

		// Another owner, or a stale token, is refused and changes nothing.
		before := b.snapshot(task.ID)
		_, err = start(b, bb, "someone-else", at(time.Second))
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		stale := *bb
		stale.Step = &backends.Step{ID: bb.Step.ID, LeaseToken: bb.Step.LeaseToken - 1}
		_, err = start(b, &stale, "node-1", at(time.Second))
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		b.requireUnchanged(before)

		// A cancel requested while b waited: the answer says so, and b's
		// handler has still not started.
		_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: at(time.Second)})
		require.NoError(t, err)
		cancel, err = start(b, bb, "node-1", at(2*time.Second))
		require.NoError(t, err)
		require.True(t, cancel)
		require.Nil(t, b.step(task.ID, "b").StartedAt)

		// A finished step's lease is gone.
		b.complete(a, at(11*time.Second))
		_, err = start(b, a, "node-1", at(12*time.Second))
		require.ErrorIs(t, err, backends.ErrLeaseLost)
	})

	t.Run("RecoveryReleasesWhatNeverStarted", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("started"), step("retried"), step("waiting"), step("child", "waiting"))
		// started and retried fail once first, so that their claims are
		// retries.
		for _, c := range b.claim(2, base) {
			b.fail(c, true, nil, base)
		}
		cs := claim(b, 3, 2, at(5*time.Second))
		require.Len(t, cs, 3)
		require.Equal(t, []string{"started", "retried", "waiting"}, []string{cs[0].Step.Name, cs[1].Step.Name, cs[2].Step.Name})
		require.True(t, cs[1].Retry)
		require.Equal(t, 2, cs[1].Step.Attempts)
		require.Nil(t, cs[1].Step.StartedAt)

		// The node dies: at expiry, the started step fails (its attempt
		// counts); the two that waited go back to pending uncounted.
		res := b.recover(10, at(5*time.Second+lease))
		require.Len(t, res, 3)
		byName := map[string]*backends.RecordResult{}
		for _, r := range res {
			byName[r.Step.Name] = r
		}
		require.Equal(t, backends.StateError, byName["started"].Step.State)
		require.Equal(t, 2, byName["started"].Step.Attempts)
		for name, attempts := range map[string]int{"waiting": 0, "retried": 1} {
			s := byName[name].Step
			require.Equal(t, backends.StatePending, s.State, name)
			require.Equal(t, attempts, s.Attempts, name)
			require.Nil(t, s.LeaseExpiresAt, name)
			require.Empty(t, s.LeaseOwner, name)
			require.Equal(t, backends.DecisionContinue, byName[name].Decision, name)
		}
		require.Equal(t, backends.StateInProgress, b.task(task.ID).State)
		var released int
		for _, tr := range b.transitions(task.ID) {
			if tr.Reason == backends.ReasonReleased {
				require.Equal(t, backends.StateInProgress, tr.From)
				require.Equal(t, backends.StatePending, tr.To)
				released++
			}
		}
		require.Equal(t, 2, released)
		b.checkTransitions(task.ID)

		// Released steps are ready at once, and their next attempt is the
		// one that counts.
		again := b.claim(10, at(5*time.Second+lease))
		names := map[string]int{}
		for _, c := range again {
			names[c.Step.Name] = c.Step.Attempts
		}
		require.Equal(t, map[string]int{"waiting": 1, "retried": 2}, names)
	})

	t.Run("RecoveryCancelsWhatWaitedAndWasCancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		cs := claim(b, 1, 1, base)
		require.Len(t, cs, 1)
		_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: base})
		require.NoError(t, err)
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		require.Equal(t, backends.StateCancelled, res[0].Step.State)
	})
}
