package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Operator actions (SEMANTICS §5.7–5.9). Each is one store transaction; the
// engine then publishes its events, stops the handlers this node runs for
// steps whose cancel was requested (other nodes learn it at their next
// heartbeat), and wakes the worker pool. Errors: a *RequestError for a
// reason (or resolve results) that input.go refuses, before anything is
// written; otherwise the store's: backends.ErrNotFound, an
// *backends.InvalidTransitionError (409).

// CancelTask cancels a task: pending and error steps are cancelled at once,
// running ones when their handlers return.
func (e *Engine) CancelTask(ctx context.Context, taskID int64, reason string) (*backends.Change, error) {
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, taskID, 0, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.CancelTask(ctx, &backends.CancelTaskParams{TaskID: taskID, Reason: reason, Now: now})
	}, actionCancel, "cancelling task %d")
}

// CancelStep cancels a step and its pending or errored descendants.
func (e *Engine) CancelStep(ctx context.Context, stepID int64, reason string) (*backends.Change, error) {
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, 0, stepID, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.CancelStep(ctx, &backends.CancelStepParams{StepID: stepID, Reason: reason, Now: now})
	}, actionCancel, "cancelling step %d")
}

// ResolveStep marks a pending or error step resolved_manually with results
// (nil means {}); its children may then run.
func (e *Engine) ResolveStep(ctx context.Context, stepID int64, results json.RawMessage, reason string) (*backends.Change, error) {
	if err := checkResults(results); err != nil {
		return nil, err
	}
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, 0, stepID, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.ResolveStep(ctx, &backends.ResolveStepParams{StepID: stepID, Results: results, Reason: reason, Now: now})
	}, actionResolve, "resolving step %d")
}

// ResolveTask marks a task in error resolved_manually.
func (e *Engine) ResolveTask(ctx context.Context, taskID int64, reason string) (*backends.Change, error) {
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, taskID, 0, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.ResolveTask(ctx, &backends.ResolveTaskParams{TaskID: taskID, Reason: reason, Now: now})
	}, actionResolve, "resolving task %d")
}

// RetryStep grants a step in error one more attempt; its task, if in
// error, runs again.
func (e *Engine) RetryStep(ctx context.Context, stepID int64, reason string) (*backends.Change, error) {
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, 0, stepID, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.RetryStep(ctx, &backends.RetryStepParams{StepID: stepID, Reason: reason, Now: now})
	}, actionRetry, "retrying step %d")
}

// RetryTask retries every step in error of a task in error.
func (e *Engine) RetryTask(ctx context.Context, taskID int64, reason string) (*backends.Change, error) {
	if err := CheckReason(reason); err != nil {
		return nil, err
	}
	return e.operate(ctx, taskID, 0, func(ctx context.Context, now time.Time) (*backends.Change, error) {
		return e.store.RetryTask(ctx, &backends.RetryTaskParams{TaskID: taskID, Reason: reason, Now: now})
	}, actionRetry, "retrying task %d")
}

// UpdateTask changes a task's reason and/or tags (p.Reason nil: unchanged;
// p.Tags nil: unchanged, empty: none), the only fields a caller may change
// once the task exists. A reason or tags that input.go refuses is a
// *RequestError and nothing is written; p.Now zero means now.
func (e *Engine) UpdateTask(ctx context.Context, p *backends.UpdateTaskParams) (*backends.Task, error) {
	if p.Reason != nil {
		if err := CheckReason(*p.Reason); err != nil {
			return nil, err
		}
	}
	if p.Tags != nil {
		if err := CheckTags(p.Tags); err != nil {
			return nil, err
		}
	}
	q := *p
	if q.Now.IsZero() {
		q.Now = e.now()
	}
	task, err := e.store.UpdateTask(ctx, &q)
	if err != nil {
		return nil, fmt.Errorf("updating task %d: %w", p.TaskID, err)
	}
	return task, nil
}

type action int

const (
	actionCancel action = iota
	actionResolve
	actionRetry
)

// operate runs one operator action: the store's transaction, then its
// events, then local cancellation and a wake-up. taskID or stepID names the
// object (the other is 0); what describes the action for errors.
func (e *Engine) operate(ctx context.Context, taskID, stepID int64, do func(ctx context.Context, now time.Time) (*backends.Change, error), act action, what string) (*backends.Change, error) {
	id := taskID
	if stepID != 0 {
		id = stepID
	}
	w, now := e.gate.beginNow(e.now)
	wctx, wrote := e.collect(ctx)
	change, err := do(wctx, now)
	e.wakeDirty.Store(true)
	if err != nil {
		w.end(e.publish, nil)
		return nil, fmt.Errorf(what+": %w", id, err)
	}
	events := wrote.all()
	e.logLifecycle(events, change.Task)
	w.end(e.publish, events)

	if act == actionRetry {
		e.retryHooks(change)
	}
	e.cancelLocal(change.CancelRequested)
	e.Wake()
	return change, nil
}

// retryHooks tells the handlers of the steps a retry put back to pending
// (RetryHook), each handler name once.
func (e *Engine) retryHooks(c *backends.Change) {
	if c == nil {
		return
	}
	told := map[string]bool{}
	for _, s := range c.Steps {
		if s.State != backends.StatePending || told[s.Handler] {
			continue
		}
		told[s.Handler] = true
		if h, ok := e.registry.Lookup(s.Handler); ok {
			if hook, ok := retryHookOf(h); ok {
				hook.OperatorRetry()
			}
		}
	}
}
