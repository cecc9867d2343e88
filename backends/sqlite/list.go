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

// listTasksSQL is one statement text for every combination of filters (a
// NULL parameter switches its filter off), so the statement cache holds one
// entry. Newest first: the primary key is walked backwards from the cursor.
const listTasksSQL = `SELECT ` + taskColumns + ` FROM tasks
	WHERE (@before = 0 OR id < @before)
	  AND (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
	  AND (@namespaces IS NULL OR namespace IN (SELECT value FROM json_each(@namespaces)))
	  AND (@workflow IS NULL OR workflow_name = @workflow)
	  AND (@after_time IS NULL OR created_at > @after_time)
	  AND (@before_time IS NULL OR created_at < @before_time)
	  AND (@tag IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = @tag))
	ORDER BY id DESC
	LIMIT @limit`

// ListTasks implements backends.Store.
func (s *Store) ListTasks(ctx context.Context, p *backends.ListTasksParams) ([]*backends.Task, error) {
	limit := int64(p.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	args := []any{
		sql.Named("before", p.BeforeID),
		sql.Named("states", jsonList(p.States)),
		sql.Named("namespaces", jsonList(p.Namespaces)),
		sql.Named("workflow", nullString(p.WorkflowName)),
		sql.Named("after_time", nullMicros(p.CreatedAfter)),
		sql.Named("before_time", nullMicros(p.CreatedBefore)),
		sql.Named("tag", nullString(p.Tag)),
		sql.Named("limit", limit),
	}
	var tasks []*backends.Task
	err := s.read(ctx, func(tx querier) error {
		var err error
		tasks, err = queryAll(ctx, tx, scanTaskRow, listTasksSQL, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	return tasks, nil
}

// UpdateTask implements backends.Store.
func (s *Store) UpdateTask(ctx context.Context, p *backends.UpdateTaskParams) (*backends.Task, error) {
	var reason, tags any
	if p.Reason != nil {
		reason = *p.Reason
	}
	if p.Tags != nil {
		b, err := json.Marshal(p.Tags)
		if err != nil {
			return nil, err
		}
		tags = string(b)
	}
	var task *backends.Task
	err := s.write(ctx, func(tx querier) error {
		var err error
		task, err = scanTask(tx.QueryRowContext(ctx, `UPDATE tasks
			SET reason = coalesce(?, reason), tags = coalesce(?, tags), updated_at = ?
			WHERE id = ? RETURNING `+taskColumns, reason, tags, micros(p.Now), p.TaskID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("task %d: %w", p.TaskID, backends.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("updating task %d: %w", p.TaskID, err)
	}
	return task, nil
}

// statsErrorsSQL classifies the steps in error with the readiness rule's own
// SQL (retry_eligible, next_retry_at).
var statsErrorsSQL = withReadiness(
	`SELECT * FROM steps WHERE state = 'error'`,
	`SELECT coalesce(sum(retry_eligible), 0),
	        coalesce(sum(retry_eligible AND next_retry_at > @now), 0),
	        coalesce(sum(NOT retry_eligible), 0)
	   FROM step_readiness`)

// statsReadySQL counts what claimSQL would find without a limit.
var statsReadySQL = withReadiness(
	`SELECT s.* FROM steps s JOIN tasks t ON t.id = s.task_id
	  WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
	    AND t.state IN ('pending', 'in_progress')`,
	`SELECT count(*) FROM step_readiness WHERE ready_for_execution`)

// Stats implements backends.Store.
func (s *Store) Stats(ctx context.Context, now time.Time) (*backends.Stats, error) {
	st := &backends.Stats{Tasks: map[backends.State]int{}, Steps: map[backends.State]int{}}
	for _, state := range backends.AllStates {
		st.Tasks[state], st.Steps[state] = 0, 0
	}
	err := s.read(ctx, func(tx querier) error {
		for _, c := range []struct {
			sql    string
			counts map[backends.State]int
		}{
			{`SELECT state, count(*) FROM tasks GROUP BY state`, st.Tasks},
			{`SELECT state, count(*) FROM steps GROUP BY state`, st.Steps},
		} {
			if err := countByState(ctx, tx, c.sql, c.counts); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, statsErrorsSQL, sql.Named("now", micros(now))).
			Scan(&st.RetryableErrors, &st.InBackoff, &st.Exhausted); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, statsReadySQL, sql.Named("now", micros(now))).Scan(&st.ReadySteps)
	})
	if err != nil {
		return nil, fmt.Errorf("counting tasks and steps: %w", err)
	}
	return st, nil
}

func countByState(ctx context.Context, tx querier, query string, into map[backends.State]int) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return err
		}
		into[backends.State(state)] = n
	}
	return rows.Err()
}

// jsonList is a filter list as a JSON array for json_each, or NULL when
// empty (the filter is off).
func jsonList[T ~string](v []T) any {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings always marshal
	}
	return string(b)
}

func nullString(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}
