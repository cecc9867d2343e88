// Package operator writes the operator actions of backends.Store (SEMANTICS
// §5.7–§5.9: cancel, resolve and retry a task or a step) once, for every
// store: Actions holds the six methods, which a store embeds, and runs
// their flows over Tx, the few primitive steps each store implements with
// its own SQL inside one of its own transactions.
//
// It is an internal package, not part of package backends, because none of
// this is storage contract: the flows run only inside a store's own
// transaction (SQLite's group-commit write, PostgreSQL's transaction with
// deadlock retry), so only the stores under backends/ may use them, and
// the engine and the API keep programming against backends.Store alone.
//
// Each action is one transaction. A refused move returns the
// *backends.InvalidTransitionError of the check or primitive that refused
// it, and the store rolls back whatever the flow wrote before, so nothing
// changes. Rows are locked steps first, then their task: the order claims
// and step results use on PostgreSQL (on SQLite, with one writer, a lock is
// a read).
package operator

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Tx is one store transaction as the operator flows use it.
type Tx interface {
	// LockTaskSteps reads and locks every step of a task, in position
	// order; none for an unknown task.
	LockTaskSteps(ctx context.Context, taskID int64) ([]*backends.Step, error)
	// LockTask reads and locks a task; backends.ErrNotFound if unknown.
	LockTask(ctx context.Context, taskID int64) (*backends.Task, error)
	// LockStep reads and locks a step; backends.ErrNotFound if unknown.
	LockStep(ctx context.Context, stepID int64) (*backends.Step, error)
	// LockDescendants reads and locks every step reachable from a step
	// through its children, in position order.
	LockDescendants(ctx context.Context, stepID int64) ([]*backends.Step, error)
	// MoveTask changes a task's state from `from` to `to` and writes its
	// transition (no metadata), refusing what SEMANTICS §2 forbids with a
	// *backends.InvalidTransitionError before writing anything.
	MoveTask(ctx context.Context, taskID int64, from, to backends.State, reason string, now time.Time) error
	// MoveStep changes st's state to `to`, writes what w names (with args)
	// in the same UPDATE, and writes the step's transition with meta; it
	// refuses what SEMANTICS §2 forbids like MoveTask, and sets st.State
	// when it moved.
	MoveStep(ctx context.Context, st *backends.Step, to backends.State, reason string,
		meta map[string]any, now time.Time, w StepWrite, args ...any) error
	// RequestCancel asks a running step to stop (Step.CancelRequested); its
	// state does not change.
	RequestCancel(ctx context.Context, st *backends.Step, now time.Time) error
	// ReadBack reads a task and some of its steps (in any order) as this
	// transaction has written them.
	ReadBack(ctx context.Context, taskID int64, stepIDs []int64) (*backends.Task, []*backends.Step, error)
	// Finalize is SEMANTICS §5.5 for a task, in this transaction: the
	// execution context it decided on, and its decision.
	Finalize(ctx context.Context, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, error)
	// ErrorStepNames names the task's steps in error, in position order,
	// as this transaction sees them (no lock).
	ErrorStepNames(ctx context.Context, taskID int64) ([]string, error)
	// AppendEvents writes events to the event log in this transaction, in
	// order, and sets their Seq.
	AppendEvents(ctx context.Context, events []*backends.Event) error
}

// StepWrite names what a step's move writes besides its state; each store
// keeps the SQL of each.
type StepWrite int

const (
	// StateOnly: the state alone (a cancellation).
	StateOnly StepWrite = iota
	// WithResults: the step's results, the JSON text args[0] (a resolution).
	WithResults
	// GrantAttempt: one more attempt (a retry): RetryLimit =
	// max(RetryLimit, Attempts+1), Retryable, BackoffRequestSeconds cleared.
	GrantAttempt
)

// Actions implements the operator methods of backends.Store for the store
// that embeds it.
type Actions struct {
	inTx func(ctx context.Context, fn func(Tx) error) error
}

// NewActions returns the operator methods of a store whose inTx runs fn in
// one transaction, opened the store's way, committed when fn returns nil
// and rolled back otherwise. inTx may run fn more than once (PostgreSQL
// retries a deadlock victim): the flows only set their results.
func NewActions(inTx func(ctx context.Context, fn func(Tx) error) error) Actions {
	return Actions{inTx: inTx}
}

// do runs flow in one transaction with the action's events
// (backends.ChangeEvents), and names the action in its error, as the
// stores always have: what is a format such as "cancelling task %d", id the
// object's id. Once committed, the events go to the ctx's sink.
func (a Actions) do(ctx context.Context, act backends.OperatorAction, now time.Time, what string, id int64,
	flow func(Tx) (*backends.Change, error)) (*backends.Change, error) {
	var c *backends.Change
	var events []*backends.Event
	err := a.inTx(ctx, func(tx Tx) error {
		var err error
		if c, err = flow(tx); err != nil {
			return err
		}
		if c.Task.State == backends.StateError && c.TaskBefore != backends.StateError {
			if c.ErrorSteps, err = tx.ErrorStepNames(ctx, c.Task.ID); err != nil {
				return err
			}
		}
		events = backends.ChangeEvents(c, act, now)
		return tx.AppendEvents(ctx, events)
	})
	if err != nil {
		return nil, fmt.Errorf(what+": %w", id, err)
	}
	if sink := backends.EventSinkFrom(ctx); sink != nil && len(events) > 0 {
		sink(events)
	}
	return c, nil
}

// CancelTask implements backends.Store: the task -> cancelled, its pending
// and error steps -> cancelled, its running steps get a cancel request. A
// finished task is refused. It does not finalize (Decision is
// DecisionNone).
func (a Actions) CancelTask(ctx context.Context, p *backends.CancelTaskParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionCancel, p.Now, "cancelling task %d", p.TaskID, func(tx Tx) (*backends.Change, error) {
		steps, err := tx.LockTaskSteps(ctx, p.TaskID)
		if err != nil {
			return nil, err
		}
		before, err := lockAndMoveTask(ctx, tx, p.TaskID, backends.StateCancelled, p.Reason, p.Now)
		if err != nil {
			return nil, err
		}
		changed, requested, err := cancelSteps(ctx, tx, steps, p.Reason, p.Now)
		if err != nil {
			return nil, err
		}
		return readChange(ctx, tx, p.TaskID, before, changed, requested, backends.ExecutionContext{}, backends.DecisionNone)
	})
}

// CancelStep implements backends.Store. The step must be pending, error
// (-> cancelled) or in_progress (-> a cancel request); a finished step is
// refused. Its descendants are treated alike (SEMANTICS §5.7 "does the same
// for that step and its descendants"): pending and error ones are
// cancelled, a running one (possible when a path to it went through a
// bypassed or resolved step) gets a cancel request, finished ones are left.
// Then it finalizes.
func (a Actions) CancelStep(ctx context.Context, p *backends.CancelStepParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionCancel, p.Now, "cancelling step %d", p.StepID, func(tx Tx) (*backends.Change, error) {
		st, err := lockStep(ctx, tx, p.StepID, backends.StateCancelled, unfinished)
		if err != nil {
			return nil, err
		}
		descendants, err := tx.LockDescendants(ctx, st.ID)
		if err != nil {
			return nil, err
		}
		changed, requested, err := cancelSteps(ctx, tx, append([]*backends.Step{st}, descendants...), p.Reason, p.Now)
		if err != nil {
			return nil, err
		}
		return finalizeChange(ctx, tx, st.TaskID, changed, requested, p.Now)
	})
}

// ResolveStep implements backends.Store: a pending or error step ->
// resolved_manually with p.Results ({} when empty), then it finalizes (its
// children may now run).
func (a Actions) ResolveStep(ctx context.Context, p *backends.ResolveStepParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionResolve, p.Now, "resolving step %d", p.StepID, func(tx Tx) (*backends.Change, error) {
		st, err := tx.LockStep(ctx, p.StepID)
		if err != nil {
			return nil, err
		}
		results := p.Results
		if len(results) == 0 {
			results = json.RawMessage(`{}`)
		}
		if err := tx.MoveStep(ctx, st, backends.StateResolvedManually, p.Reason, nil, p.Now, WithResults, string(results)); err != nil {
			return nil, err
		}
		return finalizeChange(ctx, tx, st.TaskID, []int64{st.ID}, nil, p.Now)
	})
}

// ResolveTask implements backends.Store. Only a task in error may be
// resolved (SEMANTICS §2 has no other way into resolved_manually, so
// MoveTask refuses any other); its steps are left as they are.
func (a Actions) ResolveTask(ctx context.Context, p *backends.ResolveTaskParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionResolve, p.Now, "resolving task %d", p.TaskID, func(tx Tx) (*backends.Change, error) {
		before, err := lockAndMoveTask(ctx, tx, p.TaskID, backends.StateResolvedManually, p.Reason, p.Now)
		if err != nil {
			return nil, err
		}
		return readChange(ctx, tx, p.TaskID, before, nil, nil, backends.ExecutionContext{}, backends.DecisionNone)
	})
}

// RetryStep implements backends.Store: a step in error gets one more
// attempt, and its task, if in error, runs again. It does not finalize
// (Decision is DecisionNone): the step is pending and ready at once.
//
// A retry in a finished task is refused (the contract names only error and
// in_progress tasks; a resolved_manually task may still hold a step in
// error, but its steps can never be claimed again, so granting an attempt
// would strand it): the refusal names the task's move to pending.
func (a Actions) RetryStep(ctx context.Context, p *backends.RetryStepParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionRetry, p.Now, "retrying step %d", p.StepID, func(tx Tx) (*backends.Change, error) {
		st, err := lockStep(ctx, tx, p.StepID, backends.StatePending, inError)
		if err != nil {
			return nil, err
		}
		return retry(ctx, tx, st.TaskID, unfinished, []*backends.Step{st}, p.Reason, p.Now)
	})
}

// RetryTask implements backends.Store: RetryStep for every step in error of
// a task in error. Any other task is refused as an invalid move to pending
// (the first move of a task retry).
func (a Actions) RetryTask(ctx context.Context, p *backends.RetryTaskParams) (*backends.Change, error) {
	return a.do(ctx, backends.ActionRetry, p.Now, "retrying task %d", p.TaskID, func(tx Tx) (*backends.Change, error) {
		steps, err := tx.LockTaskSteps(ctx, p.TaskID)
		if err != nil {
			return nil, err
		}
		failed := slices.DeleteFunc(steps, func(st *backends.Step) bool { return !inError(st.State) })
		return retry(ctx, tx, p.TaskID, inError, failed, p.Reason, p.Now)
	})
}

// retry locks the task, refusing its move to pending unless ok(its state),
// moves it from error back to work (error -> pending -> in_progress; a task
// pending or in_progress is left so), then grants each step (all in error)
// one more attempt: error -> pending, with the limit it now has in the
// transition's metadata.
func retry(ctx context.Context, tx Tx, taskID int64, ok func(backends.State) bool, steps []*backends.Step,
	reason string, now time.Time) (*backends.Change, error) {
	task, err := lockTask(ctx, tx, taskID, backends.StatePending, ok)
	if err != nil {
		return nil, err
	}
	before := task.State
	if task.State == backends.StateError {
		if err := tx.MoveTask(ctx, task.ID, backends.StateError, backends.StatePending, reason, now); err != nil {
			return nil, err
		}
		if err := tx.MoveTask(ctx, task.ID, backends.StatePending, backends.StateInProgress, reason, now); err != nil {
			return nil, err
		}
	}
	changed := make([]int64, 0, len(steps))
	for _, st := range steps {
		meta := map[string]any{"retry_limit": max(st.RetryLimit, st.Attempts+1)}
		if err := tx.MoveStep(ctx, st, backends.StatePending, reason, meta, now, GrantAttempt); err != nil {
			return nil, err
		}
		changed = append(changed, st.ID)
	}
	return readChange(ctx, tx, task.ID, before, changed, nil, backends.ExecutionContext{}, backends.DecisionNone)
}

func unfinished(s backends.State) bool { return !s.Finished() }

func inError(s backends.State) bool { return s == backends.StateError }

// lockStep locks a step and refuses its move to `to` unless ok(its state).
func lockStep(ctx context.Context, tx Tx, stepID int64, to backends.State, ok func(backends.State) bool) (*backends.Step, error) {
	st, err := tx.LockStep(ctx, stepID)
	if err == nil && !ok(st.State) {
		err = &backends.InvalidTransitionError{Object: backends.StepObject(st), From: string(st.State), To: string(to)}
	}
	return st, err
}

// lockTask locks a task and refuses its move to `to` unless ok(its state).
func lockTask(ctx context.Context, tx Tx, taskID int64, to backends.State, ok func(backends.State) bool) (*backends.Task, error) {
	task, err := tx.LockTask(ctx, taskID)
	if err == nil && !ok(task.State) {
		err = taskRefused(task, to)
	}
	return task, err
}

// lockAndMoveTask locks a task and moves it to `to` (MoveTask refuses what
// SEMANTICS §2 forbids); it returns the task's state before.
func lockAndMoveTask(ctx context.Context, tx Tx, taskID int64, to backends.State, reason string, now time.Time) (backends.State, error) {
	task, err := tx.LockTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	return task.State, tx.MoveTask(ctx, task.ID, task.State, to, reason, now)
}

func taskRefused(task *backends.Task, to backends.State) error {
	return &backends.InvalidTransitionError{Object: backends.TaskObject(task.ID), From: string(task.State), To: string(to)}
}

// cancelSteps cancels each pending or error step, or asks a running one to
// stop, and says which were cancelled and which were asked; finished steps
// are left alone.
func cancelSteps(ctx context.Context, tx Tx, steps []*backends.Step, reason string, now time.Time) (changed, requested []int64, err error) {
	for _, st := range steps {
		switch st.State {
		case backends.StatePending, backends.StateError:
			if err := tx.MoveStep(ctx, st, backends.StateCancelled, reason, nil, now, StateOnly); err != nil {
				return nil, nil, err
			}
			changed = append(changed, st.ID)
		case backends.StateInProgress:
			if err := tx.RequestCancel(ctx, st, now); err != nil {
				return nil, nil, err
			}
			requested = append(requested, st.ID)
		}
	}
	return changed, requested, nil
}

// finalizeChange finalizes the task, then reads back what changed. It
// locks the task first (after its steps, the stores' lock order) to learn
// its state before.
func finalizeChange(ctx context.Context, tx Tx, taskID int64, stepIDs, requested []int64, now time.Time) (*backends.Change, error) {
	task, err := tx.LockTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	ec, d, err := tx.Finalize(ctx, taskID, now)
	if err != nil {
		return nil, err
	}
	return readChange(ctx, tx, taskID, task.State, stepIDs, requested, ec, d)
}

// readChange reads back the task and the changed steps, in Position order.
// Steps and CancelRequested are never nil. before is the task's state
// before the action; ec and d are finalize's (zero and DecisionNone when
// the action does not finalize).
func readChange(ctx context.Context, tx Tx, taskID int64, before backends.State, stepIDs, requested []int64,
	ec backends.ExecutionContext, d backends.FinalizeDecision) (*backends.Change, error) {
	c := &backends.Change{CancelRequested: requested, Decision: d, Steps: []*backends.Step{}, TaskBefore: before}
	if d != backends.DecisionNone && d != "" {
		c.ExecutionStatus = ec.ExecutionStatus
	}
	if c.CancelRequested == nil {
		c.CancelRequested = []int64{}
	}
	task, steps, err := tx.ReadBack(ctx, taskID, stepIDs)
	if err != nil {
		return nil, err
	}
	c.Task = task
	if len(steps) > 0 {
		c.Steps = steps
	}
	slices.SortFunc(c.Steps, func(a, b *backends.Step) int { return cmp.Compare(a.Position, b.Position) })
	return c, nil
}
