package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// The readiness rule (SEMANTICS §3) and the execution context (§4) live in
// the SQL functions of migrations/0002_functions.sql (the context's as
// 0007_context_waiting_cancelled.sql replaced them); these methods only
// call them and scan.

const readinessColumns = `step_id, task_id, name, current_state, dependencies_satisfied, retry_eligible,
	ready_for_execution, last_failure_at, next_retry_at, total_parents, completed_parents,
	attempts, retry_limit, backoff_request_seconds, last_attempted_at`

const contextColumns = `task_id, total_steps, pending_steps, in_progress_steps, completed_steps,
	failed_steps, ready_steps, blocked_steps, waiting_steps, execution_status, recommended_action,
	health_status, completion_percentage`

var (
	// One task. The LEFT JOIN yields one all-NULL row for a task without
	// steps and no row for an unknown task, so one statement tells the two
	// apart.
	stepReadinessSQL = `SELECT t.id, r.step_id, r.task_id, r.name, r.current_state, r.dependencies_satisfied,
		r.retry_eligible, r.ready_for_execution, r.last_failure_at, r.next_retry_at,
		r.total_parents, r.completed_parents, r.attempts, r.retry_limit,
		r.backoff_request_seconds, r.last_attempted_at
	  FROM tasks t LEFT JOIN LATERAL taskerd_step_readiness(t.id, $2) r ON true
	 WHERE t.id = $1
	 ORDER BY r.position`
	stepReadinessBatchSQL = `SELECT ` + readinessColumns + ` FROM taskerd_step_readiness_batch($1, $2)`
	taskContextSQL        = `SELECT ` + contextColumns + ` FROM taskerd_task_execution_context($1, $2)`
	taskContextsSQL       = `SELECT ` + contextColumns + ` FROM taskerd_task_execution_contexts($1, $2)`
)

// StepReadiness implements backends.Store (taskerd_step_readiness).
func (s *Store) StepReadiness(ctx context.Context, taskID int64, now time.Time) (_ []backends.ReadinessRow, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, stepReadinessSQL, taskID, ts(now))
	if err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	known := false
	out := []backends.ReadinessRow{}
	for rows.Next() {
		known = true
		var knownTask int64
		r, ok, err := scanReadiness(rows, &knownTask)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
		}
		if ok { // not the all-NULL row of a task without steps
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	if !known {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, backends.ErrNotFound)
	}
	return out, nil
}

// scanReadiness reads the readiness columns, preceded by the lead
// destinations, every one as nullable so that the LEFT JOIN row of a task
// without steps can be read; ok is false for that row.
func scanReadiness(sc pgx.Row, lead ...any) (r backends.ReadinessRow, ok bool, err error) {
	var (
		stepID, taskID                      *int64
		name, state                         *string
		deps, eligible, ready               *bool
		total, completed, attempts, limit   *int
		lastFailure, nextRetry, lastAttempt *time.Time
		backoffReq                          *int
	)
	dest := append(lead, &stepID, &taskID, &name, &state, &deps, &eligible, &ready, &lastFailure,
		&nextRetry, &total, &completed, &attempts, &limit, &backoffReq, &lastAttempt)
	if err := sc.Scan(dest...); err != nil {
		return r, false, err
	}
	if stepID == nil {
		return r, false, nil
	}
	r.StepID, r.TaskID, r.Name = *stepID, *taskID, *name
	r.CurrentState = backends.State(*state)
	r.DependenciesSatisfied, r.RetryEligible, r.ReadyForExecution = *deps, *eligible, *ready
	r.LastFailureAt, r.NextRetryAt, r.LastAttemptedAt = lastFailure, nextRetry, lastAttempt
	r.TotalParents, r.CompletedParents, r.Attempts, r.RetryLimit = *total, *completed, *attempts, *limit
	r.BackoffRequestSeconds = backoffReq
	return r, true, nil
}

// StepReadinessBatch implements backends.Store (taskerd_step_readiness_batch).
func (s *Store) StepReadinessBatch(ctx context.Context, taskIDs []int64, now time.Time) (_ []backends.ReadinessRow, rerr error) {
	defer classifyErr(&rerr)
	out := []backends.ReadinessRow{}
	if len(taskIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, stepReadinessBatchSQL, taskIDs, ts(now))
	if err != nil {
		return nil, fmt.Errorf("step readiness of %d tasks: %w", len(taskIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		r, _, err := scanReadiness(rows)
		if err != nil {
			return nil, fmt.Errorf("step readiness of %d tasks: %w", len(taskIDs), err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("step readiness of %d tasks: %w", len(taskIDs), err)
	}
	return out, nil
}

func scanContext(sc pgx.Row) (backends.ExecutionContext, error) {
	var ec backends.ExecutionContext
	err := sc.Scan(&ec.TaskID, &ec.TotalSteps, &ec.PendingSteps, &ec.InProgressSteps, &ec.CompletedSteps,
		&ec.FailedSteps, &ec.ReadySteps, &ec.BlockedSteps, &ec.WaitingSteps, &ec.ExecutionStatus, &ec.RecommendedAction,
		&ec.HealthStatus, &ec.CompletionPercentage)
	return ec, err
}

// TaskExecutionContext implements backends.Store (taskerd_task_execution_context).
func (s *Store) TaskExecutionContext(ctx context.Context, taskID int64, now time.Time) (_ *backends.ExecutionContext, rerr error) {
	defer classifyErr(&rerr)
	ec, err := taskContext(ctx, s.pool, taskID, now)
	if err != nil {
		return nil, fmt.Errorf("execution context of task %d: %w", taskID, err)
	}
	return &ec, nil
}

func taskContext(ctx context.Context, q querier, taskID int64, now time.Time) (backends.ExecutionContext, error) {
	ec, err := scanContext(q.QueryRow(ctx, taskContextSQL, taskID, ts(now)))
	if errors.Is(err, pgx.ErrNoRows) {
		return ec, backends.ErrNotFound
	}
	return ec, err
}

// TaskExecutionContexts implements backends.Store (taskerd_task_execution_contexts).
func (s *Store) TaskExecutionContexts(ctx context.Context, taskIDs []int64, now time.Time) (_ []backends.ExecutionContext, rerr error) {
	defer classifyErr(&rerr)
	out := []backends.ExecutionContext{}
	if len(taskIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, taskContextsSQL, taskIDs, ts(now))
	if err != nil {
		return nil, fmt.Errorf("execution contexts of %d tasks: %w", len(taskIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		ec, err := scanContext(rows)
		if err != nil {
			return nil, fmt.Errorf("execution contexts of %d tasks: %w", len(taskIDs), err)
		}
		out = append(out, ec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("execution contexts of %d tasks: %w", len(taskIDs), err)
	}
	return out, nil
}

// nextWakeupSQL calls taskerd_next_wakeup (migration 0004, which says why
// it is a PL/pgSQL function with a generic plan).
const nextWakeupSQL = `SELECT taskerd_next_wakeup($1)`

// NextWakeup implements backends.Store.
func (s *Store) NextWakeup(ctx context.Context, now time.Time) (_ *time.Time, rerr error) {
	defer classifyErr(&rerr)
	var at *time.Time
	if err := s.pool.QueryRow(ctx, nextWakeupSQL, ts(now)).Scan(&at); err != nil {
		return nil, fmt.Errorf("next wakeup: %w", err)
	}
	return at, nil
}
