package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// StepReadiness implements backends.Store (SEMANTICS §3, sql/readiness.sql).
func (s *Store) StepReadiness(ctx context.Context, taskID int64, now time.Time) (_ []backends.ReadinessRow, rerr error) {
	defer classifyErr(&rerr)
	rows, err := stepReadiness(ctx, s.rq(), taskID, now)
	if err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	return rows, nil
}

func stepReadiness(ctx context.Context, q querier, taskID int64, now time.Time) ([]backends.ReadinessRow, error) {
	rows, err := q.QueryContext(ctx, stepReadinessSQL, sql.Named("task_id", taskID), sql.Named("now", micros(now)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	known := false
	out := []backends.ReadinessRow{}
	for rows.Next() {
		known = true
		var knownTask int64
		r, ok, err := scanReadiness(rows, &knownTask)
		if err != nil {
			return nil, err
		}
		if ok { // not the all-NULL row of a task without steps
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !known {
		return nil, backends.ErrNotFound
	}
	return out, nil
}

// scanReadiness reads the readiness row columns (step id, task id, name,
// state, dependencies satisfied, retry eligible, ready, last failure, next
// retry, total and completed parents, attempts, retry limit, requested
// backoff, last attempted), preceded by the lead destinations.
// Every column is scanned as nullable so that the LEFT JOIN row of a task
// without steps can be read; ok is false for that row.
func scanReadiness(sc scanner, lead ...any) (r backends.ReadinessRow, ok bool, err error) {
	var (
		stepID, taskID, total, completed, attempts, limit sql.NullInt64
		name, state                                       sql.NullString
		deps, eligible, ready                             sql.NullInt64
		lastFailure, nextRetry, backoffReq, lastAttempt   sql.NullInt64
	)
	dest := append(lead, &stepID, &taskID, &name, &state, &deps, &eligible, &ready, &lastFailure,
		&nextRetry, &total, &completed, &attempts, &limit, &backoffReq, &lastAttempt)
	if err := sc.Scan(dest...); err != nil {
		return r, false, err
	}
	r.StepID = stepID.Int64
	r.TaskID = taskID.Int64
	r.Name = name.String
	r.CurrentState = backends.State(state.String)
	r.DependenciesSatisfied = deps.Int64 != 0
	r.RetryEligible = eligible.Int64 != 0
	r.ReadyForExecution = ready.Int64 != 0
	r.LastFailureAt = nullTime(lastFailure)
	r.NextRetryAt = nullTime(nextRetry)
	r.TotalParents = int(total.Int64)
	r.CompletedParents = int(completed.Int64)
	r.Attempts = int(attempts.Int64)
	r.RetryLimit = int(limit.Int64)
	r.BackoffRequestSeconds = nullInt(backoffReq)
	r.LastAttemptedAt = nullTime(lastAttempt)
	return r, stepID.Valid, nil
}

func idsJSON(ids []int64) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// StepReadinessBatch implements backends.Store.
func (s *Store) StepReadinessBatch(ctx context.Context, taskIDs []int64, now time.Time) (_ []backends.ReadinessRow, rerr error) {
	defer classifyErr(&rerr)
	out := []backends.ReadinessRow{}
	if len(taskIDs) == 0 {
		return out, nil
	}
	rows, err := s.rq().QueryContext(ctx, stepReadinessBatchSQL, sql.Named("ids", idsJSON(taskIDs)), sql.Named("now", micros(now)))
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

func scanContext(sc scanner) (backends.ExecutionContext, error) {
	var ec backends.ExecutionContext
	err := sc.Scan(contextDest(&ec)...)
	return ec, err
}

// contextDest is where contextColumns are scanned to.
func contextDest(ec *backends.ExecutionContext) []any {
	return []any{&ec.TaskID, &ec.TotalSteps, &ec.PendingSteps, &ec.InProgressSteps, &ec.CompletedSteps,
		&ec.FailedSteps, &ec.ReadySteps, &ec.BlockedSteps, &ec.WaitingSteps, &ec.ExecutionStatus, &ec.RecommendedAction,
		&ec.HealthStatus, &ec.CompletionPercentage}
}

// prefixed scans a row whose first columns go to head, and the rest to
// what its Scan is given: one row read by two scan functions.
type prefixed struct {
	sc   scanner
	head []any
}

func (p prefixed) Scan(dest ...any) error { return p.sc.Scan(append(p.head, dest...)...) }

// TaskExecutionContext implements backends.Store (SEMANTICS §4, sql/context.sql).
func (s *Store) TaskExecutionContext(ctx context.Context, taskID int64, now time.Time) (_ *backends.ExecutionContext, rerr error) {
	defer classifyErr(&rerr)
	ec, err := taskContext(ctx, s.rq(), taskID, now)
	if err != nil {
		return nil, fmt.Errorf("execution context of task %d: %w", taskID, err)
	}
	return &ec, nil
}

func taskContext(ctx context.Context, q querier, taskID int64, now time.Time) (backends.ExecutionContext, error) {
	ec, err := scanContext(q.QueryRowContext(ctx, taskContextSQL, sql.Named("task_id", taskID), sql.Named("now", micros(now))))
	if errors.Is(err, sql.ErrNoRows) {
		return ec, backends.ErrNotFound
	}
	return ec, err
}

// TaskExecutionContexts implements backends.Store.
func (s *Store) TaskExecutionContexts(ctx context.Context, taskIDs []int64, now time.Time) (_ []backends.ExecutionContext, rerr error) {
	defer classifyErr(&rerr)
	out := []backends.ExecutionContext{}
	if len(taskIDs) == 0 {
		return out, nil
	}
	rows, err := s.rq().QueryContext(ctx, taskContextsSQL, sql.Named("ids", idsJSON(taskIDs)), sql.Named("now", micros(now)))
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

// NextWakeup implements backends.Store.
func (s *Store) NextWakeup(ctx context.Context, now time.Time) (_ *time.Time, rerr error) {
	defer classifyErr(&rerr)
	var at sql.NullInt64
	if err := s.rq().QueryRowContext(ctx, nextWakeupSQL, sql.Named("now", micros(now))).Scan(&at); err != nil {
		return nil, fmt.Errorf("next wakeup: %w", err)
	}
	return nullTime(at), nil
}
