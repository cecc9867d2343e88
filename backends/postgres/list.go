package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// listTasksSQL is one statement for every combination of filters (a NULL
// parameter switches its filter off). Newest first, from the cursor down.
const listTasksSQL = `SELECT ` + taskColumns + ` FROM tasks
	WHERE ($1::bigint = 0 OR id < $1)
	  AND ($2::text[] IS NULL OR state = ANY ($2))
	  AND ($3::text[] IS NULL OR namespace = ANY ($3))
	  AND ($4::text IS NULL OR workflow_name = $4)
	  AND ($5::timestamptz IS NULL OR created_at > $5)
	  AND ($6::timestamptz IS NULL OR created_at < $6)
	  AND ($7::text IS NULL OR $7 = ANY (tags))
	ORDER BY id DESC
	LIMIT $8`

// ListTasks implements backends.Store.
func (s *Store) ListTasks(ctx context.Context, p *backends.ListTasksParams) (_ []*backends.Task, rerr error) {
	defer classifyErr(&rerr)
	var states, namespaces []string
	for _, st := range p.States {
		states = append(states, string(st))
	}
	namespaces = append(namespaces, p.Namespaces...)
	var limit any
	if p.Limit > 0 {
		limit = p.Limit
	}
	rows, err := s.pool.Query(ctx, listTasksSQL, p.BeforeID, states, namespaces, nullText(p.WorkflowName),
		nullTime(p.CreatedAfter), nullTime(p.CreatedBefore), nullText(p.Tag), limit)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	defer rows.Close()
	tasks := []*backends.Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tasks: %w", err)
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	return tasks, nil
}

// UpdateTask implements backends.Store.
func (s *Store) UpdateTask(ctx context.Context, p *backends.UpdateTaskParams) (_ *backends.Task, rerr error) {
	defer classifyErr(&rerr)
	var reason any
	if p.Reason != nil {
		reason = *p.Reason
	}
	var tags any
	if p.Tags != nil {
		tags = append([]string{}, p.Tags...)
	}
	task, err := scanTask(s.pool.QueryRow(ctx, `UPDATE tasks
		SET reason = coalesce($1::text, reason), tags = coalesce($2::text[], tags), updated_at = $3
		WHERE id = $4 RETURNING `+taskColumns, reason, tags, ts(p.Now), p.TaskID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("updating task %d: task %d: %w", p.TaskID, p.TaskID, backends.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("updating task %d: %w", p.TaskID, err)
	}
	return task, nil
}

// Stats implements backends.Store: one REPEATABLE READ snapshot. Steps in
// error are classified by the readiness function itself.
func (s *Store) Stats(ctx context.Context, now time.Time) (_ *backends.Stats, rerr error) {
	defer classifyErr(&rerr)
	st := &backends.Stats{Tasks: map[backends.State]int{}, Steps: map[backends.State]int{}}
	for _, state := range backends.AllStates {
		st.Tasks[state], st.Steps[state] = 0, 0
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, c := range []struct {
			sql    string
			counts map[backends.State]int
		}{
			{`SELECT state, count(*) FROM tasks GROUP BY state`, st.Tasks},
			{`SELECT state, count(*) FROM steps GROUP BY state`, st.Steps},
		} {
			rows, err := tx.Query(ctx, c.sql)
			if err != nil {
				return err
			}
			for rows.Next() {
				var (
					state string
					n     int
				)
				if err := rows.Scan(&state, &n); err != nil {
					rows.Close()
					return err
				}
				c.counts[backends.State(state)] = n
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `SELECT
				count(*) FILTER (WHERE retry_eligible),
				count(*) FILTER (WHERE retry_eligible AND next_retry_at > $1),
				count(*) FILTER (WHERE NOT retry_eligible)
			FROM taskerd_step_readiness_rows($1) WHERE current_state = 'error'`, ts(now)).
			Scan(&st.RetryableErrors, &st.InBackoff, &st.Exhausted); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM taskerd_step_readiness_rows($1) r
			JOIN tasks t ON t.id = r.task_id
			WHERE r.current_state IN ('pending', 'error') AND r.ready_for_execution
			  AND t.state IN ('pending', 'in_progress')`, ts(now)).Scan(&st.ReadySteps)
	})
	if err != nil {
		return nil, fmt.Errorf("counting tasks and steps: %w", err)
	}
	return st, nil
}

// Setting implements backends.Store.
func (s *Store) Setting(ctx context.Context, name string) (_ string, rerr error) {
	defer classifyErr(&rerr)
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM taskerd_settings WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("setting %q: %w", name, backends.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading setting %q: %w", name, err)
	}
	return v, nil
}

// PutSettingIfAbsent implements backends.Store. A concurrent insert of the
// same name waits for the first transaction; the SELECT after it, a new
// statement under READ COMMITTED, then sees the row that won.
func (s *Store) PutSettingIfAbsent(ctx context.Context, name, value string, now time.Time) (_ string, _ bool, rerr error) {
	defer classifyErr(&rerr)
	var (
		stored  string
		created bool
	)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO taskerd_settings (name, value, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, name, value, ts(now))
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		return tx.QueryRow(ctx, `SELECT value FROM taskerd_settings WHERE name = $1`, name).Scan(&stored)
	})
	if err != nil {
		return "", false, fmt.Errorf("storing setting %q: %w", name, err)
	}
	return stored, created, nil
}

func nullText(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}
