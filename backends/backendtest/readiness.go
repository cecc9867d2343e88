package backendtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testReadiness(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("Rule1_OnlyPendingOrErrorSteps", func(t *testing.T) {
		t.Parallel()
		for _, state := range backends.AllStates {
			b := setup(t, newStore)
			task, _ := b.stepIn(state)
			r := b.readiness(task.ID, at(time.Hour))["a"]
			require.Equal(t, state, r.CurrentState)
			require.Equal(t, state == backends.StatePending || state == backends.StateError, r.ReadyForExecution, "state %s", state)
		}
	})

	t.Run("Rule2_Dependencies", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c", "a", "b"), step("d"))
		r := b.readiness(task.ID, base)
		require.True(t, r["a"].DependenciesSatisfied) // no parents
		require.Zero(t, r["a"].TotalParents)
		require.Equal(t, 2, r["c"].TotalParents)
		require.Zero(t, r["c"].CompletedParents)
		require.False(t, r["c"].DependenciesSatisfied)
		require.False(t, r["c"].ReadyForExecution)

		b.run("a", base)
		r = b.readiness(task.ID, base)
		require.Equal(t, 1, r["c"].CompletedParents)
		require.False(t, r["c"].ReadyForExecution)

		// A parent resolved manually satisfies like a complete one.
		_, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: b.step(task.ID, "b").ID, Now: base})
		require.NoError(t, err)
		r = b.readiness(task.ID, base)
		require.Equal(t, 2, r["c"].CompletedParents)
		require.True(t, r["c"].DependenciesSatisfied)
		require.True(t, r["c"].ReadyForExecution)

	})

	t.Run("Rule2_ParentRunningOrInErrorDoesNotSatisfy", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("p"), step("q", "p"))
		p := b.claimOne("p", base)
		require.False(t, b.readiness(task.ID, base)["q"].DependenciesSatisfied)
		b.fail(p, true, nil, base)
		r := b.readiness(task.ID, at(time.Hour))
		require.False(t, r["q"].DependenciesSatisfied)
		require.True(t, r["p"].ReadyForExecution)
	})

	t.Run("Rule3_AttemptsBelowLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 2
		task := b.create(s)
		b.fail(b.claimOne("a", base), true, nil, base)
		r := b.readiness(task.ID, at(2*time.Second))["a"]
		require.True(t, r.RetryEligible)
		require.True(t, r.ReadyForExecution)
		res := b.fail(b.claimOne("a", at(2*time.Second)), true, nil, at(2*time.Second))
		require.Equal(t, 2, res.Step.Attempts)
		r = b.readiness(task.ID, at(time.Hour))["a"]
		require.False(t, r.RetryEligible) // attempts (2) >= retry_limit (2)
		require.False(t, r.ReadyForExecution)
		require.True(t, r.PermanentlyBlocked())
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Empty(t, b.claim(10, at(time.Hour)))
	})

	t.Run("Rule4_NotRetryableGetsOneAttempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.Retryable = false
		task := b.create(s, step("b"))
		r := b.readiness(task.ID, base)["a"]
		require.True(t, r.RetryEligible) // never attempted
		require.True(t, r.ReadyForExecution)
		b.fail(b.claimOne("a", base), true, nil, base) // even a retryable failure
		r = b.readiness(task.ID, at(time.Hour))["a"]
		require.False(t, r.RetryEligible)
		require.False(t, r.ReadyForExecution)
		require.True(t, r.PermanentlyBlocked())
		require.Equal(t, 1, b.context(task.ID, at(time.Hour)).BlockedSteps)
	})

	t.Run("PermanentFailureBlocksAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 10
		task := b.create(s)
		res := b.fail(b.claimOne("a", base), false, nil, base)
		require.False(t, res.Step.Retryable)
		r := b.readiness(task.ID, base)["a"]
		require.False(t, r.RetryEligible)
		require.True(t, r.PermanentlyBlocked())
		require.Equal(t, backends.StatusBlockedByFailures, res.Context.ExecutionStatus)
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Equal(t, backends.StateError, res.Task.State)
	})

	t.Run("Rule5_LeasedStepNotReady", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		c := b.claimOne("a", base)
		require.Equal(t, base.Add(lease), *c.Step.LeaseExpiresAt)
		for _, now := range []time.Time{base, at(lease - time.Microsecond), at(lease), at(time.Hour)} {
			require.False(t, b.readiness(task.ID, now)["a"].ReadyForExecution)
			require.Empty(t, b.claim(10, now))
		}
	})

	t.Run("Rule6_RequestedBackoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		failAt := at(5 * time.Second)
		res := b.fail(b.claimOne("a", base), true, ptr(10), failAt)
		require.Equal(t, 10, *res.Step.BackoffRequestSeconds)
		require.Equal(t, failAt, *res.Step.LastAttemptedAt)
		r := b.readiness(task.ID, failAt)["a"]
		// requested 10 s > failure backoff(1) = 2 s: the later applies.
		require.Equal(t, failAt.Add(10*time.Second), *r.NextRetryAt)
		require.Equal(t, 10, *r.BackoffRequestSeconds)
		require.False(t, b.readiness(task.ID, failAt.Add(10*time.Second-time.Microsecond))["a"].ReadyForExecution)
		require.True(t, b.readiness(task.ID, failAt.Add(10*time.Second))["a"].ReadyForExecution)
		require.Empty(t, b.claim(1, failAt.Add(10*time.Second-time.Microsecond)))

		// The next claim clears the request (Differs from Tasker).
		c := b.claimOne("a", failAt.Add(10*time.Second))
		require.Nil(t, c.Step.BackoffRequestSeconds)
		r = b.readiness(task.ID, failAt.Add(10*time.Second))["a"]
		require.Nil(t, r.BackoffRequestSeconds)
		require.Nil(t, r.NextRetryAt) // in_progress: no failure backoff, no request
	})

	t.Run("Rule7_FailureBackoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 10
		task := b.create(s)
		now := base
		// backoff(n) = min(1s * 2^n, 30s) after the n-th attempt failed:
		// 2, 4, 8, 16, then capped at 30.
		wants := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
		for i, want := range wants {
			res := b.fail(b.claimOne("a", now), true, nil, now)
			require.Equal(t, i+1, res.Step.Attempts)
			require.Equal(t, now, *res.Step.LastFailureAt)
			r := b.readiness(task.ID, now)["a"]
			require.Equal(t, now, *r.LastFailureAt)
			require.Equal(t, now.Add(want), *r.NextRetryAt, "after attempt %d", i+1)
			require.False(t, r.ReadyForExecution)
			require.False(t, r.PermanentlyBlocked()) // waiting is never blocked
			require.False(t, b.readiness(task.ID, now.Add(want-time.Microsecond))["a"].ReadyForExecution)
			require.True(t, b.readiness(task.ID, now.Add(want))["a"].ReadyForExecution)
			now = now.Add(want)
		}
	})

	t.Run("Rule7_CustomBaseAndMax", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit, s.BackoffBase, s.BackoffMax = 10, 100*time.Millisecond, 500*time.Millisecond
		task := b.create(s)
		now := base
		for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond} {
			b.fail(b.claimOne("a", now), true, nil, now)
			require.Equal(t, now.Add(want), *b.readiness(task.ID, now)["a"].NextRetryAt, "attempt %d", i+1)
			now = now.Add(want)
		}
	})

	t.Run("Rules6And7_BothApply", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		// requested 1 s < failure backoff(1) = 2 s: the failure backoff wins.
		b.fail(b.claimOne("a", base), true, ptr(1), base)
		r := b.readiness(task.ID, base)["a"]
		require.Equal(t, at(2*time.Second), *r.NextRetryAt)
		require.False(t, b.readiness(task.ID, at(time.Second))["a"].ReadyForExecution)
		require.True(t, b.readiness(task.ID, at(2*time.Second))["a"].ReadyForExecution)
	})

	t.Run("NoBackoffNoNextRetry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		r := b.readiness(task.ID, base)
		require.Nil(t, r["a"].NextRetryAt)
		require.Nil(t, r["a"].LastFailureAt)
		require.Nil(t, r["a"].LastAttemptedAt)
		require.Nil(t, r["a"].BackoffRequestSeconds)
		res := b.run("a", base)
		require.Nil(t, b.readiness(task.ID, base)["a"].NextRetryAt)
		require.Equal(t, base, *res.Step.LastAttemptedAt)
	})

	// The bug Tasker once had: a step in error with attempts left, waiting
	// out its backoff, must never count as permanently blocked, and the task
	// must not be failed because of it.
	t.Run("WaitingForBackoffIsNeverBlocked", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		res := b.fail(b.claimOne("a", base), true, ptr(60), base)
		require.Equal(t, backends.DecisionContinue, res.Decision)
		require.Equal(t, backends.StateInProgress, res.Task.State)
		for _, now := range []time.Time{base, at(30 * time.Second), at(60*time.Second - time.Microsecond)} {
			r := b.readiness(task.ID, now)["a"]
			require.True(t, r.RetryEligible)
			require.False(t, r.ReadyForExecution)
			require.False(t, r.PermanentlyBlocked())
			ec := b.context(task.ID, now)
			require.Zero(t, ec.BlockedSteps)
			require.Equal(t, backends.StatusWaitingForDependencies, ec.ExecutionStatus)
			require.Equal(t, backends.HealthRecovering, ec.HealthStatus)
		}
		require.Equal(t, backends.StatusHasReadySteps, b.context(task.ID, at(60*time.Second)).ExecutionStatus)
	})

	t.Run("RowsOrderedByPosition", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("z"), step("y", "z"), step("x"))
		rows, err := b.store.StepReadiness(b.ctx, task.ID, base)
		require.NoError(t, err)
		require.Len(t, rows, 3)
		steps := b.steps(task.ID)
		for i, r := range rows {
			require.Equal(t, steps[i].ID, r.StepID)
			require.Equal(t, task.ID, r.TaskID)
			require.Equal(t, steps[i].Name, r.Name)
			require.Equal(t, 3, r.RetryLimit)
		}
	})

	t.Run("Batch", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		t1 := b.create(step("a"), step("b", "a"))
		t2 := b.create()
		t3 := b.create(step("c"))
		rows, err := b.store.StepReadinessBatch(b.ctx, []int64{t3.ID, 424242, t2.ID, t1.ID}, base)
		require.NoError(t, err)
		require.Len(t, rows, 3)
		require.Equal(t, []string{"a", "b", "c"}, []string{rows[0].Name, rows[1].Name, rows[2].Name})
		require.Equal(t, []int64{t1.ID, t1.ID, t3.ID}, []int64{rows[0].TaskID, rows[1].TaskID, rows[2].TaskID})
		one, err := b.store.StepReadiness(b.ctx, t1.ID, base)
		require.NoError(t, err)
		require.Equal(t, one, rows[:2])
		empty, err := b.store.StepReadinessBatch(b.ctx, nil, base)
		require.NoError(t, err)
		require.Empty(t, empty)
	})
}
