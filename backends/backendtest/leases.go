package backendtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func (b *bundle) nextWakeup(now time.Time) *time.Time {
	b.t.Helper()
	w, err := b.store.NextWakeup(b.ctx, now)
	require.NoError(b.t, err)
	return w
}

func (b *bundle) recover(limit int, now time.Time) []*backends.RecordResult {
	b.t.Helper()
	res, err := b.store.RecoverExpiredLeases(b.ctx, &backends.RecoverParams{Limit: limit, Now: now})
	require.NoError(b.t, err)
	return res
}

func testLeases(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("RecoverAtExpiryNotBefore", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.claimOne("a", base)
		require.Empty(t, b.recover(10, at(lease-time.Microsecond)))
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		s := res[0].Step
		require.Equal(t, backends.StateError, s.State)
		require.Equal(t, 1, s.Attempts) // the attempt counts
		require.Equal(t, at(lease), *s.LastFailureAt)
		require.Nil(t, s.LeaseExpiresAt)
		var se backends.StepError
		require.NoError(t, json.Unmarshal(s.Error, &se))
		require.Equal(t, backends.ErrorKindLeaseExpired, se.Kind)
		require.True(t, se.Retryable)
		require.Equal(t, backends.DecisionContinue, res[0].Decision)
		require.Equal(t, task.ID, res[0].Task.ID)
		require.Empty(t, b.recover(10, at(time.Hour)))

		// Retried under the normal rules: backoff(1) = 2 s.
		require.Empty(t, b.claim(1, at(lease+2*time.Second-time.Microsecond)))
		c := b.claimOne("a", at(lease+2*time.Second))
		require.Equal(t, 2, c.Step.Attempts)
		b.checkTransitions(task.ID)
	})

	t.Run("RecoveryExhaustsTheStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 1
		task := b.create(s)
		b.claimOne("a", base)
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		require.Equal(t, backends.DecisionError, res[0].Decision)
		require.Equal(t, backends.StateError, b.task(task.ID).State)
	})

	t.Run("RecoverLimitOldestFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"))
		b.create(step("b"))
		b.claimOne("a", at(time.Second))
		b.claimOne("b", base)
		res := b.recover(1, at(time.Hour))
		require.Len(t, res, 1)
		require.Equal(t, "b", res[0].Step.Name)
		require.Len(t, b.recover(5, at(time.Hour)), 1)
		require.Empty(t, b.recover(0, at(time.Hour)))
	})

	t.Run("RecoverCancelRequestedBecomesCancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		c := b.claimOne("a", base)
		ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: c.Step.ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, []int64{c.Step.ID}, ch.CancelRequested)
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		require.Equal(t, backends.StateCancelled, res[0].Step.State)
		require.Equal(t, backends.DecisionContinue, res[0].Decision) // b is still ready
		b.checkTransitions(task.ID)
	})

	t.Run("ExtendLeases", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c"))
		cs := b.claim(3, base)
		a, bb, c := cs[0], cs[1], cs[2]
		_, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: bb.Step.ID, Now: base})
		require.NoError(t, err)
		b.complete(c, base)

		now := at(40 * time.Second)
		st, err := b.store.ExtendLeases(b.ctx, &backends.ExtendLeasesParams{Owner: "node-1", LeaseDuration: lease, Now: now,
			Leases: []backends.Lease{
				{StepID: a.Step.ID, Token: a.Step.LeaseToken},
				{StepID: bb.Step.ID, Token: bb.Step.LeaseToken},
				{StepID: c.Step.ID, Token: c.Step.LeaseToken},       // finished
				{StepID: a.Step.ID, Token: a.Step.LeaseToken + 100}, // wrong token
			}})
		require.NoError(t, err)
		require.Equal(t, []backends.LeaseStatus{
			{StepID: a.Step.ID},
			{StepID: bb.Step.ID, CancelRequested: true},
			{StepID: c.Step.ID, Lost: true},
			{StepID: a.Step.ID, Lost: true},
		}, st)
		require.Equal(t, now.Add(lease), *b.step(task.ID, "a").LeaseExpiresAt)
		// The old expiry passed, the new one did not: nothing to recover.
		require.Empty(t, b.recover(10, at(lease)))

		// Another owner cannot extend it.
		st, err = b.store.ExtendLeases(b.ctx, &backends.ExtendLeasesParams{Owner: "node-2", LeaseDuration: lease, Now: now,
			Leases: []backends.Lease{{StepID: a.Step.ID, Token: a.Step.LeaseToken}}})
		require.NoError(t, err)
		require.True(t, st[0].Lost)

		// After recovery the lease is lost.
		b.recover(10, now.Add(lease))
		st, err = b.store.ExtendLeases(b.ctx, &backends.ExtendLeasesParams{Owner: "node-1", LeaseDuration: lease, Now: now.Add(lease),
			Leases: []backends.Lease{{StepID: a.Step.ID, Token: a.Step.LeaseToken}}})
		require.NoError(t, err)
		require.True(t, st[0].Lost)
	})

	t.Run("NextWakeup", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		require.Nil(t, b.nextWakeup(base))
		b.create(step("a"), step("b"))
		// Ready now: nothing to wait for.
		require.Nil(t, b.nextWakeup(base))
		a := b.claimOne("a", base)
		require.Equal(t, at(lease), *b.nextWakeup(base))
		// a fails at 10 s: retry at 12 s, earlier than b's lease (60 s).
		b.claimOne("b", base)
		b.fail(a, true, nil, at(10*time.Second))
		require.Equal(t, at(12*time.Second), *b.nextWakeup(at(10 * time.Second)))
		// At 12 s a is ready (found now, not later): the lease remains.
		require.Equal(t, at(lease), *b.nextWakeup(at(12 * time.Second)))
		// Past the lease: everything is findable now.
		require.Nil(t, b.nextWakeup(at(lease)))
	})

	t.Run("NextWakeupIgnoresBlockedAndFinishedTasks", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		// A blocked step never wakes anything, whatever its backoff.
		t1 := b.create(step("a"), step("b"))
		a := b.claimOne("a", base)
		bb := b.claimOne("b", base)
		b.fail(a, false, ptr(100), base)
		require.Equal(t, at(lease), *b.nextWakeup(base))
		// b waits out its backoff beside the blocked a: the task stays in
		// progress, and b's retry (2 s) is the next wake-up, not a's 100 s.
		b.fail(bb, true, nil, base)
		require.Equal(t, backends.StateInProgress, b.task(t1.ID).State)
		require.Equal(t, at(2*time.Second), *b.nextWakeup(base))
		// b fails for good too: the task goes to error, and nothing wakes.
		b.fail(b.claimOne("b", at(2*time.Second)), false, nil, at(2*time.Second))
		require.Equal(t, backends.StateError, b.task(t1.ID).State)
		require.Nil(t, b.nextWakeup(at(2*time.Second)))
	})
}
