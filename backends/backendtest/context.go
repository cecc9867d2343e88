package backendtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testContext(t *testing.T, newStore func(t *testing.T) backends.Store) {
	type want struct {
		status, action, health string
	}
	check := func(t *testing.T, ec *backends.ExecutionContext, w want) {
		t.Helper()
		require.Equal(t, w.status, ec.ExecutionStatus)
		require.Equal(t, w.action, ec.RecommendedAction)
		require.Equal(t, w.health, ec.HealthStatus)
	}

	t.Run("HasReadySteps_Healthy", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		ec := b.context(task.ID, base)
		check(t, ec, want{backends.StatusHasReadySteps, backends.ActionExecuteReadySteps, backends.HealthHealthy})
		require.Equal(t, backends.ExecutionContext{
			TaskID: task.ID, TotalSteps: 2, PendingSteps: 2, ReadySteps: 1,
			ExecutionStatus: ec.ExecutionStatus, RecommendedAction: ec.RecommendedAction, HealthStatus: ec.HealthStatus,
		}, *ec)
	})

	t.Run("HasReadySteps_RecoveringWithAFailure", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		b.fail(b.claimOne("a", base), true, nil, base)
		ec := b.context(task.ID, base)
		check(t, ec, want{backends.StatusHasReadySteps, backends.ActionExecuteReadySteps, backends.HealthRecovering})
		require.Equal(t, 1, ec.FailedSteps)
		require.Equal(t, 1, ec.ReadySteps)
		require.Equal(t, 1, ec.PendingSteps)
	})

	t.Run("Processing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.claimOne("a", base)
		ec := b.context(task.ID, base)
		check(t, ec, want{backends.StatusProcessing, backends.ActionWaitForCompletion, backends.HealthHealthy})
		require.Equal(t, 1, ec.InProgressSteps)
		require.Equal(t, 1, ec.PendingSteps)
	})

	t.Run("BlockedByFailures_Blocked", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		res := b.fail(b.claimOne("a", base), false, nil, base)
		check(t, &res.Context, want{backends.StatusBlockedByFailures, backends.ActionHandleFailures, backends.HealthBlocked})
		ec := b.context(task.ID, base)
		require.Equal(t, res.Context, *ec)
		require.Equal(t, 1, ec.BlockedSteps)
		require.Equal(t, 1, ec.FailedSteps)
		// Steps not yet run stay pending (SEMANTICS §5.5).
		require.Equal(t, backends.StatePending, b.step(task.ID, "b").State)
	})

	t.Run("AllComplete", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.run("a", base)
		res := b.run("b", base)
		check(t, &res.Context, want{backends.StatusAllComplete, backends.ActionFinalizeTask, backends.HealthHealthy})
		ec := b.context(task.ID, base)
		require.Equal(t, 100.0, ec.CompletionPercentage)
		require.Equal(t, 2, ec.CompletedSteps)
	})

	t.Run("WaitingForDependencies_Recovering", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.fail(b.claimOne("a", base), true, nil, base)
		// failed > 0, blocked = 0, ready = 0: the fourth health branch.
		check(t, b.context(task.ID, base), want{backends.StatusWaitingForDependencies, backends.ActionWaitForDependencies, backends.HealthRecovering})
	})

	t.Run("WaitingForDependencies_Healthy", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create() // zero steps: nothing is complete because nothing exists
		check(t, b.context(task.ID, base), want{backends.StatusWaitingForDependencies, backends.ActionWaitForDependencies, backends.HealthHealthy})
	})
	t.Run("WaitingBesideABlockedBranch", func(t *testing.T) {
		t.Parallel()
		// a is blocked for good; b waits out its backoff. b will still run,
		// so the task is not blocked: it stays in progress (SEMANTICS §4).
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("after", "a", "b"))
		ca, cb := b.claimOne("a", base), b.claimOne("b", base)
		b.fail(ca, false, nil, base)
		res := b.fail(cb, true, nil, base)
		require.Equal(t, backends.DecisionContinue, res.Decision)
		require.Equal(t, backends.StateInProgress, b.task(task.ID).State)
		check(t, &res.Context, want{backends.StatusWaitingForDependencies, backends.ActionWaitForDependencies, backends.HealthBlocked})
		require.Equal(t, 1, res.Context.WaitingSteps)
		require.Equal(t, 1, res.Context.BlockedSteps)
		require.Equal(t, res.Context, *b.context(task.ID, base))

		// When b's backoff has passed it is ready, and claimed.
		retryAt := *b.readiness(task.ID, base)["b"].NextRetryAt
		check(t, b.context(task.ID, retryAt), want{backends.StatusHasReadySteps, backends.ActionExecuteReadySteps, backends.HealthRecovering})
		again := b.claim(10, retryAt)
		require.Len(t, again, 1)
		require.Equal(t, "b", again[0].Step.Name)
		// b completes; a still blocks "after": now nothing can run.
		res = b.complete(again[0], retryAt)
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Equal(t, backends.StateError, b.task(task.ID).State)
		check(t, &res.Context, want{backends.StatusBlockedByFailures, backends.ActionHandleFailures, backends.HealthBlocked})
		require.Zero(t, res.Context.WaitingSteps)
		require.Equal(t, backends.StatePending, b.step(task.ID, "after").State)
	})

	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		// A cancelled task's context says so, whatever its steps: even with
		// a step still running (its cancel requested) and none in error.
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c", "a"))
		running := b.claimOne("a", base)
		_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: base})
		require.NoError(t, err)
		ec := b.context(task.ID, base)
		check(t, ec, want{backends.StatusCancelled, backends.ActionNone, backends.HealthCancelled})
		require.Equal(t, 1, ec.InProgressSteps)
		// The running step reports: it is cancelled, and the task stays so.
		res := b.complete(running, base)
		require.Equal(t, backends.StateCancelled, res.Step.State)
		require.Equal(t, backends.DecisionNone, res.Decision)
		check(t, &res.Context, want{backends.StatusCancelled, backends.ActionNone, backends.HealthCancelled})
		ecs, err := b.store.TaskExecutionContexts(b.ctx, []int64{task.ID}, base)
		require.NoError(t, err)
		require.Equal(t, []backends.ExecutionContext{res.Context}, ecs)
	})

	// HealthUnknown is unreachable: with failed > 0, either blocked > 0 (and
	// ready = 0) or blocked = 0, and both are matched before it.

	t.Run("CountsEveryBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("done"), step("running"), step("failed"), step("cancelled"), step("resolved"), step("waiting", "failed"))
		b.run("done", base)
		b.claimOne("running", base)
		b.fail(b.claimOne("failed", base), true, nil, base)
		_, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: b.step(task.ID, "cancelled").ID, Now: base})
		require.NoError(t, err)
		_, err = b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: b.step(task.ID, "resolved").ID, Now: base})
		require.NoError(t, err)
		ec := b.context(task.ID, base)
		require.Equal(t, backends.ExecutionContext{
			TaskID: task.ID, TotalSteps: 6, PendingSteps: 1, InProgressSteps: 1, CompletedSteps: 2,
			FailedSteps: 1, ReadySteps: 0, BlockedSteps: 0, WaitingSteps: 1,
			ExecutionStatus: backends.StatusProcessing, RecommendedAction: backends.ActionWaitForCompletion,
			HealthStatus: backends.HealthRecovering, CompletionPercentage: 33.33,
		}, *ec)
	})

	t.Run("CompletionPercentageRounding", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c"))
		require.Equal(t, 0.0, b.context(task.ID, base).CompletionPercentage)
		b.run("a", base)
		require.Equal(t, 33.33, b.context(task.ID, base).CompletionPercentage)
		b.run("b", base)
		require.Equal(t, 66.67, b.context(task.ID, base).CompletionPercentage)
		b.run("c", base)
		require.Equal(t, 100.0, b.context(task.ID, base).CompletionPercentage)

		seven := b.create(step("1"), step("2"), step("3"), step("4"), step("5"), step("6"), step("7"))
		b.run("1", base)
		require.Equal(t, 14.29, b.context(seven.ID, base).CompletionPercentage)
	})

	t.Run("Batch", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		t1 := b.create(step("a"), step("b", "a"))
		t2 := b.create()
		t3 := b.create(step("c"))
		b.claimOne("a", base)
		ecs, err := b.store.TaskExecutionContexts(b.ctx, []int64{t3.ID, 777777, t1.ID, t2.ID}, at(time.Second))
		require.NoError(t, err)
		require.Len(t, ecs, 3)
		require.Equal(t, []int64{t1.ID, t2.ID, t3.ID}, []int64{ecs[0].TaskID, ecs[1].TaskID, ecs[2].TaskID})
		for _, ec := range ecs {
			one := b.context(ec.TaskID, at(time.Second))
			require.Equal(t, *one, ec)
		}
		require.Equal(t, backends.ExecutionContext{
			TaskID: t2.ID, ExecutionStatus: backends.StatusWaitingForDependencies,
			RecommendedAction: backends.ActionWaitForDependencies, HealthStatus: backends.HealthHealthy,
		}, ecs[1])
		none, err := b.store.TaskExecutionContexts(b.ctx, []int64{777777}, base)
		require.NoError(t, err)
		require.Empty(t, none)
	})
}
