package backendtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testOperator(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("CancelTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("done"), step("running"), step("failed"), step("pending", "done", "failed"))
		b.run("done", base)
		running := b.claimOne("running", base)
		b.fail(b.claimOne("failed", base), true, nil, base)
		ch, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Reason: "no longer needed", Now: at(time.Second)})
		require.NoError(t, err)
		require.Equal(t, backends.StateCancelled, ch.Task.State)
		require.Equal(t, backends.DecisionNone, ch.Decision)
		require.Equal(t, []int64{running.Step.ID}, ch.CancelRequested)
		require.Len(t, ch.Steps, 2)
		require.Equal(t, []string{"failed", "pending"}, []string{ch.Steps[0].Name, ch.Steps[1].Name})
		for _, s := range ch.Steps {
			require.Equal(t, backends.StateCancelled, s.State)
		}
		require.Equal(t, backends.StateComplete, b.step(task.ID, "done").State)
		r := b.step(task.ID, "running")
		require.Equal(t, backends.StateInProgress, r.State)
		require.True(t, r.CancelRequested)
		last := b.transitions(task.ID)
		require.Contains(t, []string{"no longer needed"}, last[len(last)-1].Reason)
		b.checkTransitions(task.ID)
	})

	t.Run("CancelStepCancelsDescendantsAndFinalizes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		// a -> b -> c, a -> d: cancelling b cancels c; d still runs.
		task := b.create(step("a"), step("b", "a"), step("c", "b"), step("d", "a"))
		b.run("a", base)
		ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: b.step(task.ID, "b").ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, []string{"b", "c"}, []string{ch.Steps[0].Name, ch.Steps[1].Name})
		require.Equal(t, backends.DecisionContinue, ch.Decision)
		require.Equal(t, backends.StateInProgress, ch.Task.State)
		// When d completes nothing can run: the task is cancelled, not left
		// waiting for dependencies forever (Differs from Tasker).
		res := b.run("d", base)
		require.Equal(t, backends.StatusWaitingForDependencies, res.Context.ExecutionStatus)
		require.Equal(t, backends.DecisionCancelled, res.Decision)
		require.Equal(t, backends.StateCancelled, res.Task.State)
		b.checkTransitions(task.ID)
	})

	t.Run("CancelStepFinalizesAtOnceWhenNothingIsLeft", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.run("a", base)
		ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: b.step(task.ID, "b").ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, backends.DecisionCancelled, ch.Decision)
		require.Equal(t, backends.StateCancelled, ch.Task.State)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>cancelled"}, b.moves(task.ID, 0))
	})

	t.Run("CancelStepWaitsForABackoffElsewhere", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		b.fail(b.claimOne("a", base), true, nil, base)
		ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: b.step(task.ID, "b").ID, Now: base})
		require.NoError(t, err)
		// a waits on its backoff: the task must not be cancelled.
		require.Equal(t, backends.DecisionContinue, ch.Decision)
		require.Equal(t, backends.StateInProgress, ch.Task.State)
		res := b.run("a", at(2*time.Second))
		require.Equal(t, backends.DecisionCancelled, res.Decision)
	})

	t.Run("CancelRunningStepThenItReports", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		c := b.claimOne("a", base)
		ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: c.Step.ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, []int64{c.Step.ID}, ch.CancelRequested)
		require.Equal(t, []string{"b"}, []string{ch.Steps[0].Name}) // its descendant, pending
		require.Equal(t, backends.DecisionContinue, ch.Decision)    // a still runs
		res := b.complete(c, at(time.Second))
		require.Equal(t, backends.StateCancelled, res.Step.State)
		require.Equal(t, backends.DecisionCancelled, res.Decision)
		b.checkTransitions(task.ID)
	})

	t.Run("ResolveStepLetsChildrenRun", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.fail(b.claimOne("a", base), true, nil, base)
		ch, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: b.step(task.ID, "a").ID,
			Results: json.RawMessage(`{"manual":1}`), Reason: "fixed by hand", Now: base})
		require.NoError(t, err)
		require.Equal(t, backends.StateResolvedManually, ch.Steps[0].State)
		require.JSONEq(t, `{"manual":1}`, string(ch.Steps[0].Results))
		require.Equal(t, backends.DecisionContinue, ch.Decision)
		c := b.claimOne("b", base)
		require.JSONEq(t, `{"manual":1}`, string(c.ParentResults["a"]))
		res := b.complete(c, base)
		require.Equal(t, backends.DecisionComplete, res.Decision)
	})

	t.Run("ResolveStepDefaultResults", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		ch, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: b.step(task.ID, "a").ID, Now: base})
		require.NoError(t, err)
		require.JSONEq(t, `{}`, string(ch.Steps[0].Results))
		// The only step resolved: a pending task finishes, through in_progress.
		require.Equal(t, backends.DecisionComplete, ch.Decision)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>complete"}, b.moves(task.ID, 0))
	})

	t.Run("ResolveBlockedStepRestartsTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		res := b.fail(b.claimOne("a", base), false, nil, base)
		require.Equal(t, backends.StateError, res.Task.State)
		ch, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: res.Step.ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, backends.DecisionContinue, ch.Decision)
		require.Equal(t, backends.StateInProgress, ch.Task.State)
		b.claimOne("b", base)
		b.checkTransitions(task.ID)
	})

	t.Run("ResolveTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.fail(b.claimOne("a", base), false, nil, base)
		ch, err := b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Reason: "done elsewhere", Now: base})
		require.NoError(t, err)
		require.Equal(t, backends.StateResolvedManually, ch.Task.State)
		require.Empty(t, ch.Steps)
		require.Equal(t, backends.StatePending, b.step(task.ID, "b").State)
		b.checkTransitions(task.ID)
	})

	t.Run("RetryStepGrantsOneMoreAttempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 1
		task := b.create(s)
		res := b.fail(b.claimOne("a", base), false, ptr(600), base)
		require.Equal(t, backends.StateError, res.Task.State)
		ch, err := b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: res.Step.ID, Reason: "try again", Now: at(time.Second)})
		require.NoError(t, err)
		got := ch.Steps[0]
		require.Equal(t, backends.StatePending, got.State)
		require.Equal(t, 2, got.RetryLimit) // attempts + 1
		require.True(t, got.Retryable)
		require.Nil(t, got.BackoffRequestSeconds)
		require.Equal(t, backends.StateInProgress, ch.Task.State)
		require.Equal(t, backends.DecisionNone, ch.Decision)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>error", "error>pending", "pending>in_progress"},
			b.moves(task.ID, 0))
		// Ready at once, and only once more.
		c := b.claimOne("a", at(time.Second))
		require.Equal(t, 2, c.Step.Attempts)
		res = b.fail(c, true, nil, at(time.Second))
		require.True(t, res.Step.Retryable)
		require.Equal(t, backends.DecisionError, res.Decision)
		b.checkTransitions(task.ID)
	})

	t.Run("RetryStepKeepsAHigherLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 5
		task := b.create(s, step("b"))
		b.fail(b.claimOne("a", base), true, ptr(60), base)
		ch, err := b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: b.step(task.ID, "a").ID, Now: base})
		require.NoError(t, err)
		require.Equal(t, 5, ch.Steps[0].RetryLimit)
		require.Equal(t, backends.StateInProgress, ch.Task.State) // it was in progress: unchanged
		require.True(t, b.readiness(task.ID, base)["a"].ReadyForExecution)
	})

	t.Run("RetryTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"), step("c"))
		a, bb := b.claimOne("a", base), b.claimOne("b", base)
		b.run("c", base)
		b.fail(a, false, nil, base)
		res := b.fail(bb, false, nil, base)
		require.Equal(t, backends.StateError, res.Task.State)
		ch, err := b.store.RetryTask(b.ctx, &backends.RetryTaskParams{TaskID: task.ID, Now: at(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b"}, []string{ch.Steps[0].Name, ch.Steps[1].Name})
		require.Equal(t, backends.StateInProgress, ch.Task.State)
		require.Len(t, b.claim(10, at(time.Minute)), 2)
		b.checkTransitions(task.ID)
	})
}
