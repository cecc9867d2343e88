package operator

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// The conformance suite (backends/backendtest) judges what the actions do
// on both stores. These tests pin what it cannot see: the order in which a
// flow locks rows (steps before their task, PostgreSQL's order for every
// write) and writes.

// fakeTx is a Tx over one task in memory that records every call.
type fakeTx struct {
	task  backends.Task
	steps []*backends.Step // in position order
	calls []string

	seq    int64
	events []*backends.Event
}

func (f *fakeTx) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeTx) step(id int64) (*backends.Step, error) {
	for _, st := range f.steps {
		if st.ID == id {
			c := *st
			return &c, nil
		}
	}
	return nil, fmt.Errorf("step %d: %w", id, backends.ErrNotFound)
}

func (f *fakeTx) LockTaskSteps(_ context.Context, taskID int64) ([]*backends.Step, error) {
	f.record("lock steps of task %d", taskID)
	var out []*backends.Step
	for _, st := range f.steps {
		c := *st
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeTx) LockTask(_ context.Context, taskID int64) (*backends.Task, error) {
	f.record("lock task %d", taskID)
	t := f.task
	return &t, nil
}

func (f *fakeTx) LockStep(_ context.Context, stepID int64) (*backends.Step, error) {
	f.record("lock step %d", stepID)
	return f.step(stepID)
}

func (f *fakeTx) LockDescendants(_ context.Context, stepID int64) ([]*backends.Step, error) {
	f.record("lock descendants of step %d", stepID)
	return nil, nil
}

func (f *fakeTx) MoveTask(_ context.Context, taskID int64, from, to backends.State, _ string, _ time.Time) error {
	if !backends.TaskTransitionAllowed(from, to) {
		return &backends.InvalidTransitionError{Object: backends.TaskObject(taskID), From: string(from), To: string(to)}
	}
	f.record("move task %d to %s", taskID, to)
	f.task.State = to
	return nil
}

func (f *fakeTx) MoveStep(_ context.Context, st *backends.Step, to backends.State, _ string, _ map[string]any,
	_ time.Time, w StepWrite, _ ...any) error {
	if !backends.StepTransitionAllowed(st.State, to) {
		return &backends.InvalidTransitionError{Object: backends.StepObject(st), From: string(st.State), To: string(to)}
	}
	f.record("move step %d to %s%s", st.ID, to, map[StepWrite]string{WithResults: " with results", GrantAttempt: " granting an attempt"}[w])
	st.State = to
	for _, mine := range f.steps {
		if mine.ID == st.ID {
			mine.State = to
		}
	}
	return nil
}

func (f *fakeTx) RequestCancel(_ context.Context, st *backends.Step, _ time.Time) error {
	f.record("request cancel of step %d", st.ID)
	return nil
}

// ReadBack returns the steps in reverse order: the flows must sort them.
func (f *fakeTx) ReadBack(_ context.Context, taskID int64, stepIDs []int64) (*backends.Task, []*backends.Step, error) {
	var steps []*backends.Step
	for _, id := range slices.Backward(stepIDs) {
		st, err := f.step(id)
		if err != nil {
			return nil, nil, err
		}
		steps = append(steps, st)
	}
	t := f.task
	return &t, steps, nil
}

func (f *fakeTx) Finalize(_ context.Context, taskID int64, _ time.Time) (backends.ExecutionContext, backends.FinalizeDecision, error) {
	f.record("finalize task %d", taskID)
	return backends.ExecutionContext{TaskID: taskID, ExecutionStatus: backends.StatusHasReadySteps}, backends.DecisionContinue, nil
}

func (f *fakeTx) ErrorStepNames(_ context.Context, taskID int64) ([]string, error) {
	var names []string
	for _, st := range f.steps {
		if st.State == backends.StateError {
			names = append(names, st.Name)
		}
	}
	return names, nil
}

// AppendEvents records the events' types and numbers them from 1.
func (f *fakeTx) AppendEvents(_ context.Context, events []*backends.Event) error {
	for _, ev := range events {
		f.seq++
		ev.Seq = f.seq
		f.events = append(f.events, ev)
	}
	return nil
}

func newFake(taskState backends.State, stepStates ...backends.State) *fakeTx {
	f := &fakeTx{task: backends.Task{ID: 1, State: taskState}}
	for i, s := range stepStates {
		f.steps = append(f.steps, &backends.Step{ID: int64(10 + i), TaskID: 1, Name: fmt.Sprint("s", i), Position: i, State: s})
	}
	return f
}

// actions runs every flow directly on f, as a store's inTx would.
func actions(f *fakeTx) Actions {
	return NewActions(func(_ context.Context, fn func(Tx) error) error { return fn(f) })
}

func TestLocksStepsBeforeTheirTask(t *testing.T) {
	ctx, now := context.Background(), time.Unix(0, 0)

	f := newFake(backends.StateError, backends.StateComplete, backends.StateError, backends.StateInProgress)
	c, err := actions(f).CancelTask(ctx, &backends.CancelTaskParams{TaskID: 1, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"lock steps of task 1", "lock task 1", "move task 1 to cancelled",
		"move step 11 to cancelled", "request cancel of step 12"}, f.calls)
	require.Equal(t, []int64{12}, c.CancelRequested)

	f = newFake(backends.StateError, backends.StateError, backends.StatePending, backends.StateError)
	c, err = actions(f).RetryTask(ctx, &backends.RetryTaskParams{TaskID: 1, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"lock steps of task 1", "lock task 1", "move task 1 to pending", "move task 1 to in_progress",
		"move step 10 to pending granting an attempt", "move step 12 to pending granting an attempt"}, f.calls)
	require.Equal(t, []string{"s0", "s2"}, []string{c.Steps[0].Name, c.Steps[1].Name}, "in position order")

	f = newFake(backends.StateInProgress, backends.StateError)
	_, err = actions(f).RetryStep(ctx, &backends.RetryStepParams{StepID: 10, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"lock step 10", "lock task 1", "move step 10 to pending granting an attempt"}, f.calls, "a running task is left so")

	f = newFake(backends.StateInProgress, backends.StatePending)
	_, err = actions(f).CancelStep(ctx, &backends.CancelStepParams{StepID: 10, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"lock step 10", "lock descendants of step 10", "move step 10 to cancelled", "lock task 1", "finalize task 1"}, f.calls)
}

// A step in error whose task is finished is refused on the task, after
// both locks and before any write, and the error names the action.
func TestRetryStepInAFinishedTaskWritesNothing(t *testing.T) {
	f := newFake(backends.StateResolvedManually, backends.StateError)
	c, err := actions(f).RetryStep(context.Background(), &backends.RetryStepParams{StepID: 10, Now: time.Unix(0, 0)})
	require.Nil(t, c)
	require.ErrorIs(t, err, backends.ErrInvalidTransition)
	require.EqualError(t, err, "retrying step 10: invalid state transition for task 1: resolved_manually -> pending")
	require.Equal(t, []string{"lock step 10", "lock task 1"}, f.calls)
}

func TestChangeIsNeverNil(t *testing.T) {
	f := newFake(backends.StateError, backends.StateComplete)
	c, err := actions(f).ResolveTask(context.Background(), &backends.ResolveTaskParams{TaskID: 1, Now: time.Unix(0, 0)})
	require.NoError(t, err)
	require.Equal(t, backends.StateResolvedManually, c.Task.State)
	require.Equal(t, backends.DecisionNone, c.Decision)
	require.NotNil(t, c.Steps)
	require.Empty(t, c.Steps)
	require.NotNil(t, c.CancelRequested)
	require.Empty(t, c.CancelRequested)
}

// Each action writes its events in its transaction and hands them, numbered,
// to the context's sink once it returns.
func TestActionsWriteTheirEvents(t *testing.T) {
	now := time.Unix(100, 0).UTC()
	var got []*backends.Event
	ctx := backends.WithEventSink(context.Background(), func(evs []*backends.Event) { got = append(got, evs...) })
	types := func(evs []*backends.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, fmt.Sprintf("%d %s %s", ev.Seq, ev.Type, ev.StepName))
		}
		return out
	}

	f := newFake(backends.StateError, backends.StateError, backends.StateComplete, backends.StateError)
	_, err := actions(f).RetryTask(ctx, &backends.RetryTaskParams{TaskID: 1, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"1 step.retry_requested s0", "2 step.retry_requested s2", "3 task.retry_requested "}, types(got))
	require.Equal(t, f.events, got, "the sink gets what the transaction wrote")

	got = nil
	f = newFake(backends.StateInProgress, backends.StatePending, backends.StateInProgress)
	_, err = actions(f).CancelTask(ctx, &backends.CancelTaskParams{TaskID: 1, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"1 step.cancelled s0", "2 task.cancelled "}, types(got), "a running step only gets a cancel request")

	got = nil
	f = newFake(backends.StateInProgress, backends.StateError)
	_, err = actions(f).ResolveStep(ctx, &backends.ResolveStepParams{StepID: 10, Now: now})
	require.NoError(t, err)
	require.Equal(t, []string{"1 step.resolved_manually s0", "2 workflow.task_finalized "}, types(got))
	require.Equal(t, backends.StatusHasReadySteps, got[1].ExecutionStatus)
	require.Equal(t, now, got[0].Time)

	got = nil
	f = newFake(backends.StateComplete, backends.StateComplete)
	_, err = actions(f).RetryTask(ctx, &backends.RetryTaskParams{TaskID: 1, Now: now})
	require.Error(t, err)
	require.Empty(t, got, "a refused action writes and hands over nothing")
	require.Empty(t, f.events)
}
