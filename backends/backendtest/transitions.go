package backendtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// stepIn builds a task whose step "a" is in the given state, through Store
// operations only. The task has a second, independent step "other" so that
// "a" finishing does not finish the task.
func (b *bundle) stepIn(state backends.State) (*backends.Task, *backends.Step) {
	b.t.Helper()
	task := b.create(step("a"), step("other"))
	a := b.step(task.ID, "a")
	switch state {
	case backends.StatePending:
	case backends.StateInProgress:
		b.claimOne("a", base)
	case backends.StateComplete:
		b.run("a", base)
	case backends.StateError:
		b.fail(b.claimOne("a", base), true, nil, base)
	case backends.StateCancelled:
		_, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: a.ID, Now: base})
		require.NoError(b.t, err)
	case backends.StateResolvedManually:
		_, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: a.ID, Now: base})
		require.NoError(b.t, err)
	}
	a = b.step(task.ID, "a")
	require.Equal(b.t, state, a.State)
	return task, a
}

// taskIn builds a task in the given state, through Store operations only.
func (b *bundle) taskIn(state backends.State) *backends.Task {
	b.t.Helper()
	task := b.create(step("a"))
	switch state {
	case backends.StatePending:
	case backends.StateInProgress:
		b.claimOne("a", base)
	case backends.StateComplete:
		b.run("a", base)
	case backends.StateError:
		b.fail(b.claimOne("a", base), false, nil, base)
	case backends.StateCancelled:
		_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: base})
		require.NoError(b.t, err)
	case backends.StateResolvedManually:
		b.fail(b.claimOne("a", base), false, nil, base)
		_, err := b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Now: base})
		require.NoError(b.t, err)
	}
	task = b.task(task.ID)
	require.Equal(b.t, state, task.State)
	b.checkTransitions(task.ID)
	return task
}

func testTransitions(t *testing.T, newStore func(t *testing.T) backends.Store) {
	now := at(time.Hour) // past every backoff of the fixtures

	// Every operator action on a step, from every step state: allowed where
	// SEMANTICS §2 allows the move, refused with nothing changed elsewhere.
	stepActions := []struct {
		name string
		to   backends.State
		// allowed lists the states the action accepts.
		allowed []backends.State
		do      func(b *bundle, s *backends.Step) error
	}{
		{"ResolveStep", backends.StateResolvedManually, []backends.State{backends.StatePending, backends.StateError},
			func(b *bundle, s *backends.Step) error {
				_, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: s.ID, Now: now})
				return err
			}},
		{"CancelStep", backends.StateCancelled, []backends.State{backends.StatePending, backends.StateError, backends.StateInProgress},
			func(b *bundle, s *backends.Step) error {
				_, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: s.ID, Now: now})
				return err
			}},
		{"RetryStep", backends.StatePending, []backends.State{backends.StateError},
			func(b *bundle, s *backends.Step) error {
				_, err := b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: s.ID, Now: now})
				return err
			}},
	}
	for _, action := range stepActions {
		for _, from := range backends.AllStates {
			allowed := false
			for _, s := range action.allowed {
				allowed = allowed || s == from
			}
			t.Run(name("Step/%s/From_%s", action.name, from), func(t *testing.T) {
				t.Parallel()
				b := setup(t, newStore)
				task, s := b.stepIn(from)
				before := b.snapshot(task.ID)
				err := action.do(b, s)
				if !allowed {
					requireInvalid(t, err, from, action.to)
					b.requireUnchanged(before)
					return
				}
				require.NoError(t, err)
				got := b.step(task.ID, "a")
				if from == backends.StateInProgress { // a cancel request, not a move
					require.Equal(t, backends.StateInProgress, got.State)
					require.True(t, got.CancelRequested)
				} else {
					require.Equal(t, action.to, got.State)
					moves := b.moves(task.ID, s.ID)
					require.Equal(t, string(from)+">"+string(action.to), moves[len(moves)-1])
				}
				b.checkTransitions(task.ID)
			})
		}
	}

	taskActions := []struct {
		name    string
		to      backends.State
		allowed []backends.State
		do      func(b *bundle, task *backends.Task) error
	}{
		{"CancelTask", backends.StateCancelled, []backends.State{backends.StatePending, backends.StateInProgress, backends.StateError},
			func(b *bundle, task *backends.Task) error {
				_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: now})
				return err
			}},
		{"ResolveTask", backends.StateResolvedManually, []backends.State{backends.StateError},
			func(b *bundle, task *backends.Task) error {
				_, err := b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Now: now})
				return err
			}},
		{"RetryTask", backends.StatePending, []backends.State{backends.StateError},
			func(b *bundle, task *backends.Task) error {
				_, err := b.store.RetryTask(b.ctx, &backends.RetryTaskParams{TaskID: task.ID, Now: now})
				return err
			}},
	}
	for _, action := range taskActions {
		for _, from := range backends.AllStates {
			allowed := false
			for _, s := range action.allowed {
				allowed = allowed || s == from
			}
			t.Run(name("Task/%s/From_%s", action.name, from), func(t *testing.T) {
				t.Parallel()
				b := setup(t, newStore)
				task := b.taskIn(from)
				before := b.snapshot(task.ID)
				err := action.do(b, task)
				if !allowed {
					requireInvalid(t, err, from, action.to)
					b.requireUnchanged(before)
					return
				}
				require.NoError(t, err)
				moves := b.moves(task.ID, 0)
				switch action.name {
				case "RetryTask": // error -> pending -> in_progress
					require.Equal(t, []string{"error>pending", "pending>in_progress"}, moves[len(moves)-2:])
				default:
					require.Equal(t, string(from)+">"+string(action.to), moves[len(moves)-1])
				}
				b.checkTransitions(task.ID)
			})
		}
	}

	// The engine-driven moves of both machines, each reached through the
	// operation that makes it. (Task pending -> error and in_progress ->
	// pending are in the machine but no Store operation makes them: a task
	// only fails after a claim started it, and taskerd never re-queues a
	// running task; SEMANTICS §5.5 "Differs from Tasker".)
	t.Run("Machine/TaskLifecycleComplete", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		a := b.claimOne("a", base)
		require.True(t, a.TaskStarted)
		b.complete(a, base)
		res := b.run("b", base)
		require.Equal(t, backends.DecisionComplete, res.Decision)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>complete"}, b.moves(task.ID, 0))
		require.Equal(t, []string{"pending>in_progress", "in_progress>complete"}, b.moves(task.ID, a.Step.ID))
		b.checkTransitions(task.ID)
	})

	t.Run("Machine/StepRetryLifecycle", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		c := b.claimOne("a", base)
		b.fail(c, true, nil, base)
		c2 := b.claimOne("a", at(2*time.Second))
		require.True(t, c2.Retry)
		require.Equal(t, []string{"pending>in_progress", "in_progress>error", "error>pending", "pending>in_progress"},
			b.moves(task.ID, c.Step.ID))
		b.checkTransitions(task.ID)
	})

	t.Run("Machine/TaskErrorAndBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		res := b.fail(b.claimOne("a", base), false, nil, base)
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Equal(t, backends.StateError, res.Task.State)
		// Resolving the blocked step lets the task finish: error -> pending
		// -> in_progress -> complete.
		c, err := b.store.ResolveStep(b.ctx, &backends.ResolveStepParams{StepID: res.Step.ID, Now: now})
		require.NoError(t, err)
		require.Equal(t, backends.DecisionComplete, c.Decision)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>error", "error>pending",
			"pending>in_progress", "in_progress>complete"}, b.moves(task.ID, 0))
		b.checkTransitions(task.ID)
	})
}
