package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Operator actions (SEMANTICS §5.7–§5.9). Each is one transaction; a refused
// transition returns *backends.InvalidTransitionError before anything is
// written (or rolls back what was), so nothing changes.

// cancelSteps applies cancelOrRequest to each step and says which were
// cancelled and which were asked to stop.
func cancelSteps(ctx context.Context, tx querier, steps []*backends.Step, reason string, now time.Time) (changed, requested []int64, err error) {
	for _, st := range steps {
		ch, rq, err := cancelOrRequest(ctx, tx, st, reason, now)
		if err != nil {
			return nil, nil, err
		}
		if ch {
			changed = append(changed, st.ID)
		}
		if rq {
			requested = append(requested, st.ID)
		}
	}
	return changed, requested, nil
}

// cancelOrRequest cancels a pending or error step, or asks a running one to
// stop. It reports whether the step's state changed and whether a cancel was
// requested; finished steps are left alone.
func cancelOrRequest(ctx context.Context, tx querier, st *backends.Step, reason string, now time.Time) (changed, requested bool, err error) {
	switch st.State {
	case backends.StatePending, backends.StateError:
		if err := moveStep(ctx, tx, st, backends.StateCancelled, reason, nil, now); err != nil {
			return false, false, err
		}
		return true, false, nil
	case backends.StateInProgress:
		if _, err := tx.ExecContext(ctx, `UPDATE steps SET cancel_requested = 1, updated_at = ? WHERE id = ?`,
			micros(now), st.ID); err != nil {
			return false, false, err
		}
		return false, true, nil
	}
	return false, false, nil
}

// change reads back the task and the changed steps (in Position order).
func change(ctx context.Context, tx querier, taskID int64, stepIDs, requested []int64, d backends.FinalizeDecision) (*backends.Change, error) {
	c := &backends.Change{CancelRequested: requested, Decision: d, Steps: []*backends.Step{}}
	if c.CancelRequested == nil {
		c.CancelRequested = []int64{}
	}
	var err error
	if c.Task, err = getTask(ctx, tx, taskID); err != nil {
		return nil, err
	}
	for _, id := range stepIDs {
		st, err := getStep(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		c.Steps = append(c.Steps, st)
	}
	sort.Slice(c.Steps, func(i, j int) bool { return c.Steps[i].Position < c.Steps[j].Position })
	return c, nil
}

// CancelTask implements backends.Store. It does not finalize: the task is
// cancelled outright (Decision is DecisionNone).
func (s *Store) CancelTask(ctx context.Context, p *backends.CancelTaskParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		task, err := getTask(ctx, tx, p.TaskID)
		if err != nil {
			return err
		}
		if err := moveTask(ctx, tx, task.ID, task.State, backends.StateCancelled, p.Reason, nil, p.Now); err != nil {
			return err
		}
		steps, err := listSteps(ctx, tx, task.ID)
		if err != nil {
			return err
		}
		changed, requested, err := cancelSteps(ctx, tx, steps, p.Reason, p.Now)
		if err != nil {
			return err
		}
		c, err = change(ctx, tx, task.ID, changed, requested, backends.DecisionNone)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancelling task %d: %w", p.TaskID, err)
	}
	return c, nil
}

// CancelStep implements backends.Store. The step itself must be pending,
// error (-> cancelled) or in_progress (-> CancelRequested); a finished step
// is refused. Its descendants are treated alike (SEMANTICS §5.7 "does the
// same for that step and its descendants"): pending and error ones are
// cancelled, a running one (possible when a path to it went through a
// bypassed or resolved step) gets CancelRequested, finished ones are left.
func (s *Store) CancelStep(ctx context.Context, p *backends.CancelStepParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		st, err := getStep(ctx, tx, p.StepID)
		if err != nil {
			return err
		}
		if st.State.Finished() {
			return &backends.InvalidTransitionError{Object: backends.StepObject(st), From: string(st.State), To: string(backends.StateCancelled)}
		}
		descendants, err := querySteps(ctx, tx, `WITH RECURSIVE descendants(id) AS (
				SELECT child_step_id FROM edges WHERE parent_step_id = ?
				UNION
				SELECT e.child_step_id FROM edges e JOIN descendants d ON e.parent_step_id = d.id
			)
			SELECT `+stepColumns+` FROM steps WHERE id IN (SELECT id FROM descendants) ORDER BY position`, st.ID)
		if err != nil {
			return err
		}
		targets := append([]*backends.Step{st}, descendants...)
		changed, requested, err := cancelSteps(ctx, tx, targets, p.Reason, p.Now)
		if err != nil {
			return err
		}
		_, d, _, err := finalize(ctx, tx, st.TaskID, p.Now)
		if err != nil {
			return err
		}
		c, err = change(ctx, tx, st.TaskID, changed, requested, d)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancelling step %d: %w", p.StepID, err)
	}
	return c, nil
}

// ResolveStep implements backends.Store.
func (s *Store) ResolveStep(ctx context.Context, p *backends.ResolveStepParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		st, err := getStep(ctx, tx, p.StepID)
		if err != nil {
			return err
		}
		if err := moveStep(ctx, tx, st, backends.StateResolvedManually, p.Reason, nil, p.Now); err != nil {
			return err
		}
		results := p.Results
		if len(results) == 0 {
			results = json.RawMessage(`{}`)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE steps SET results = ?, updated_at = ? WHERE id = ?`,
			string(results), micros(p.Now), st.ID); err != nil {
			return err
		}
		_, d, _, err := finalize(ctx, tx, st.TaskID, p.Now)
		if err != nil {
			return err
		}
		c, err = change(ctx, tx, st.TaskID, []int64{st.ID}, nil, d)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("resolving step %d: %w", p.StepID, err)
	}
	return c, nil
}

// ResolveTask implements backends.Store. Only a task in error may be
// resolved; its steps are left as they are.
func (s *Store) ResolveTask(ctx context.Context, p *backends.ResolveTaskParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		task, err := getTask(ctx, tx, p.TaskID)
		if err != nil {
			return err
		}
		if task.State != backends.StateError {
			return &backends.InvalidTransitionError{Object: backends.TaskObject(task.ID), From: string(task.State), To: string(backends.StateResolvedManually)}
		}
		if err := moveTask(ctx, tx, task.ID, task.State, backends.StateResolvedManually, p.Reason, nil, p.Now); err != nil {
			return err
		}
		c, err = change(ctx, tx, task.ID, nil, nil, backends.DecisionNone)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("resolving task %d: %w", p.TaskID, err)
	}
	return c, nil
}

// retryStep grants one more attempt to a step in error.
func retryStep(ctx context.Context, tx querier, st *backends.Step, reason string, now time.Time) error {
	meta := map[string]any{"retry_limit": max(st.RetryLimit, st.Attempts+1)}
	if err := moveStep(ctx, tx, st, backends.StatePending, reason, meta, now); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE steps SET retry_limit = max(retry_limit, attempts + 1), retryable = 1,
		backoff_request_seconds = NULL, updated_at = ? WHERE id = ?`, micros(now), st.ID)
	return err
}

// restartTask moves a task in error back to work: error -> pending ->
// in_progress. A task already pending or in_progress is left so.
//
// A retry of a finished task is refused (the contract names only error and
// in_progress tasks; a resolved_manually task may still hold a step in error,
// but its steps can never be claimed again, so granting an attempt would
// strand it): the refusal names the task's move to pending.
func restartTask(ctx context.Context, tx querier, task *backends.Task, reason string, now time.Time) error {
	switch task.State {
	case backends.StateError:
		if err := moveTask(ctx, tx, task.ID, backends.StateError, backends.StatePending, reason, nil, now); err != nil {
			return err
		}
		return moveTask(ctx, tx, task.ID, backends.StatePending, backends.StateInProgress, reason, nil, now)
	case backends.StatePending, backends.StateInProgress:
		return nil
	}
	return &backends.InvalidTransitionError{Object: backends.TaskObject(task.ID), From: string(task.State), To: string(backends.StatePending)}
}

// RetryStep implements backends.Store. It does not finalize (Decision is
// DecisionNone): the step is pending and ready at once.
func (s *Store) RetryStep(ctx context.Context, p *backends.RetryStepParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		st, err := getStep(ctx, tx, p.StepID)
		if err != nil {
			return err
		}
		if st.State != backends.StateError {
			return &backends.InvalidTransitionError{Object: backends.StepObject(st), From: string(st.State), To: string(backends.StatePending)}
		}
		task, err := getTask(ctx, tx, st.TaskID)
		if err != nil {
			return err
		}
		if err := restartTask(ctx, tx, task, p.Reason, p.Now); err != nil {
			return err
		}
		if err := retryStep(ctx, tx, st, p.Reason, p.Now); err != nil {
			return err
		}
		c, err = change(ctx, tx, st.TaskID, []int64{st.ID}, nil, backends.DecisionNone)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retrying step %d: %w", p.StepID, err)
	}
	return c, nil
}

// RetryTask implements backends.Store. The task must be in error; anything
// else is refused as an invalid move to pending (the first move of a task
// retry).
func (s *Store) RetryTask(ctx context.Context, p *backends.RetryTaskParams) (*backends.Change, error) {
	var c *backends.Change
	err := s.write(ctx, func(tx querier) error {
		task, err := getTask(ctx, tx, p.TaskID)
		if err != nil {
			return err
		}
		if task.State != backends.StateError {
			return &backends.InvalidTransitionError{Object: backends.TaskObject(task.ID), From: string(task.State), To: string(backends.StatePending)}
		}
		if err := restartTask(ctx, tx, task, p.Reason, p.Now); err != nil {
			return err
		}
		steps, err := listSteps(ctx, tx, task.ID)
		if err != nil {
			return err
		}
		var changed []int64
		for _, st := range steps {
			if st.State != backends.StateError {
				continue
			}
			if err := retryStep(ctx, tx, st, p.Reason, p.Now); err != nil {
				return err
			}
			changed = append(changed, st.ID)
		}
		c, err = change(ctx, tx, task.ID, changed, nil, backends.DecisionNone)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retrying task %d: %w", p.TaskID, err)
	}
	return c, nil
}
