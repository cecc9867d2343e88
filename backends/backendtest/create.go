package backendtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testCreate(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("InsertsTaskStepsEdgesAndFirstTransition", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"), step("c", "a", "b"))
		require.Positive(t, task.ID)
		require.Equal(t, backends.StatePending, task.State)
		require.Equal(t, []string{"a", "b"}, task.Tags)
		require.JSONEq(t, `{"k":"v"}`, string(task.Context))
		require.Equal(t, "default", task.Namespace)
		require.Equal(t, base, task.CreatedAt)
		require.Equal(t, base, task.RequestedAt)
		require.Equal(t, time.UTC, task.CreatedAt.Location())

		steps := b.steps(task.ID)
		require.Len(t, steps, 3)
		for i, s := range steps {
			require.Equal(t, i, s.Position)
			require.Equal(t, backends.StatePending, s.State)
			require.Equal(t, task.ID, s.TaskID)
			require.Zero(t, s.Attempts)
			require.Equal(t, 3, s.RetryLimit)
			require.True(t, s.Retryable)
			require.Equal(t, time.Second, s.BackoffBase)
			require.Equal(t, 30*time.Second, s.BackoffMax)
			require.Equal(t, 30*time.Second, s.Timeout)
			require.Nil(t, s.LeaseExpiresAt)
		}
		edges, err := b.store.ListEdges(b.ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, []backends.Edge{
			{ParentStepID: steps[0].ID, ChildStepID: steps[1].ID},
			{ParentStepID: steps[0].ID, ChildStepID: steps[2].ID},
			{ParentStepID: steps[1].ID, ChildStepID: steps[2].ID},
		}, edges)

		trs := b.transitions(task.ID)
		require.Len(t, trs, 1)
		require.Equal(t, backends.State(""), trs[0].From)
		require.Equal(t, backends.StatePending, trs[0].To)
		require.True(t, trs[0].MostRecent)
		require.Equal(t, 1, trs[0].SortKey)
		b.checkTransitions(task.ID)

		got, err := b.store.GetStep(b.ctx, steps[1].ID)
		require.NoError(t, err)
		require.Equal(t, steps[1], got)
	})

	t.Run("ConfigRoundTrips", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.Config = json.RawMessage(`{"currency":"EUR"}`)
		s.Skippable = true
		task := b.create(s)
		got := b.step(task.ID, "a")
		require.JSONEq(t, `{"currency":"EUR"}`, string(got.Config))
		require.True(t, got.Skippable)
	})

	t.Run("BypassedStepsStartResolved", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		skip := step("a")
		skip.Skippable, skip.Bypass = true, true
		task := b.create(skip, step("b", "a"))
		a := b.step(task.ID, "a")
		require.Equal(t, backends.StateResolvedManually, a.State)
		require.JSONEq(t, `{"bypassed":true}`, string(a.Results))
		require.Equal(t, []string{"pending>resolved_manually"}, b.moves(task.ID, a.ID))
		// The child may run at once.
		require.True(t, b.readiness(task.ID, base)["b"].ReadyForExecution)
		require.Equal(t, backends.StatePending, b.task(task.ID).State)
		b.checkTransitions(task.ID)
	})

	t.Run("EveryStepBypassedFinalizesAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		x, y := step("x"), step("y", "x")
		x.Bypass, y.Bypass = true, true
		task := b.create(x, y)
		require.Equal(t, backends.StateComplete, task.State)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>complete"}, b.moves(task.ID, 0))
		b.checkTransitions(task.ID)
	})

	// A store may skip finalize when it creates a task with steps and none
	// bypassed (PostgreSQL does, to create in one statement): that is sound
	// only while finalize would leave every such task pending, whatever its
	// shape or retry policy.
	t.Run("NewTaskNeedsNoFinalize", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		once, never, permanent := step("once"), step("never"), step("permanent")
		once.RetryLimit, never.RetryLimit, permanent.Retryable = 1, 0, false
		for _, shape := range [][]backends.NewStep{
			{step("a")},
			{step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")},
			{once, never, permanent, step("child", "once", "never")},
		} {
			task := b.create(shape...)
			require.Equal(t, backends.StatePending, task.State)
			require.Equal(t, []string{">pending"}, b.moves(task.ID, 0))
			ec := b.context(task.ID, base)
			d := backends.Decide(*ec, false)
			require.Equal(t, backends.DecisionContinue, d, "%+v", *ec)
			require.Empty(t, backends.FinalizePath(task.State, d))
		}
	})

	t.Run("ZeroSteps", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create()
		require.Equal(t, backends.StatePending, task.State)
		require.Empty(t, b.steps(task.ID))
		rows, err := b.store.StepReadiness(b.ctx, task.ID, base)
		require.NoError(t, err)
		require.Empty(t, rows)
		ec := b.context(task.ID, base)
		require.Equal(t, backends.ExecutionContext{
			TaskID: task.ID, ExecutionStatus: backends.StatusWaitingForDependencies,
			RecommendedAction: backends.ActionWaitForDependencies, HealthStatus: backends.HealthHealthy,
		}, *ec)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const missing = 987654
		_, err := b.store.GetTask(b.ctx, missing)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.GetStep(b.ctx, missing)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.ListSteps(b.ctx, missing)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.StepReadiness(b.ctx, missing, base)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.TaskExecutionContext(b.ctx, missing, base)
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: missing, Now: base})
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: missing, Now: base})
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: missing, Now: base})
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: missing, Now: base})
		require.ErrorIs(t, err, backends.ErrNotFound)
		_, err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: missing, LeaseToken: 1, Now: base})
		require.ErrorIs(t, err, backends.ErrNotFound)
	})
}

func testIdempotency(t *testing.T, newStore func(t *testing.T) backends.Store) {
	params := func(key, hash string) *backends.CreateTaskParams {
		return &backends.CreateTaskParams{
			Namespace: "default", WorkflowName: "test", WorkflowVersion: "0.1.0",
			Context: json.RawMessage(`{}`), IdempotencyKey: key, RequestHash: hash,
			Steps: []backends.NewStep{step("a")}, Now: base,
		}
	}

	t.Run("SameKeySameRequestReturnsTheTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		first, created, err := b.store.CreateTask(b.ctx, params("k1", "h1"))
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "k1", first.IdempotencyKey)
		require.Equal(t, "h1", first.RequestHash)
		b.run("a", at(time.Second)) // the task moves on; the replay still finds it

		again, created, err := b.store.CreateTask(b.ctx, params("k1", "h1"))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first.ID, again.ID)
		require.Equal(t, backends.StateComplete, again.State)
		require.Len(t, b.transitions(first.ID), 5) // created, started, a claimed+completed, complete
	})

	t.Run("SameKeyOtherRequestIsDuplicate", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		first, _, err := b.store.CreateTask(b.ctx, params("k1", "h1"))
		require.NoError(t, err)
		before := b.snapshot(first.ID)
		_, _, err = b.store.CreateTask(b.ctx, params("k1", "h2"))
		require.ErrorIs(t, err, backends.ErrDuplicate)
		b.requireUnchanged(before)
		// No task was inserted: the next one gets the next id after first.
		next, created, err := b.store.CreateTask(b.ctx, params("k2", "h2"))
		require.NoError(t, err)
		require.True(t, created)
		cs := b.claim(10, base)
		require.Len(t, cs, 2)
		require.Equal(t, []int64{first.ID, next.ID}, []int64{cs[0].Task.ID, cs[1].Task.ID})
	})

	t.Run("NoKeyNeverDeduplicates", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		one, created1, err := b.store.CreateTask(b.ctx, params("", "h"))
		require.NoError(t, err)
		two, created2, err := b.store.CreateTask(b.ctx, params("", "h"))
		require.NoError(t, err)
		require.True(t, created1 && created2)
		require.NotEqual(t, one.ID, two.ID)
		require.Empty(t, one.IdempotencyKey)
	})
}
