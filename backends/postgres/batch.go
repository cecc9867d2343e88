package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// transitionsSQL selects a transition's columns for scanTransition; a
// transition is the most recent of its object when its sort_key is the
// object's transition_count. Callers add WHERE and ORDER BY.
const transitionsSQL = `SELECT tr.id, tr.task_id, coalesce(tr.step_id, 0), coalesce(tr.from_state, ''),
		tr.to_state, tr.reason, tr.metadata, tr.sort_key,
		tr.sort_key = coalesce(s.transition_count, t.transition_count), tr.created_at
	FROM transitions tr
	JOIN tasks t ON t.id = tr.task_id
	LEFT JOIN steps s ON s.id = tr.step_id`

func scanTransition(r pgx.CollectableRow) (*backends.Transition, error) {
	var (
		t        backends.Transition
		from, to string
		meta     *string
	)
	if err := r.Scan(&t.ID, &t.TaskID, &t.StepID, &from, &to, &t.Reason, &meta, &t.SortKey,
		&t.MostRecent, &t.CreatedAt); err != nil {
		return nil, err
	}
	t.From, t.To = backends.State(from), backends.State(to)
	t.Metadata = jsonOf(meta)
	return &t, nil
}

// GetTasks implements backends.BatchReader.
func (s *Store) GetTasks(ctx context.Context, ids []int64) (_ []*backends.Task, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ANY ($1::bigint[]) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("getting %d tasks: %w", len(ids), err)
	}
	tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*backends.Task, error) { return scanTask(r) })
	if err != nil {
		return nil, fmt.Errorf("getting %d tasks: %w", len(ids), err)
	}
	return nonNil(tasks), nil
}

// ListStepsOfTasks implements backends.BatchReader.
func (s *Store) ListStepsOfTasks(ctx context.Context, taskIDs []int64) (_ []*backends.Step, rerr error) {
	defer classifyErr(&rerr)
	steps, err := querySteps(ctx, s.pool, `SELECT `+stepColumns+` FROM steps
		WHERE task_id = ANY ($1::bigint[]) ORDER BY task_id, position`, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("listing the steps of %d tasks: %w", len(taskIDs), err)
	}
	return nonNil(steps), nil
}

// ListEdgesOfTasks implements backends.BatchReader.
func (s *Store) ListEdgesOfTasks(ctx context.Context, taskIDs []int64) (_ []backends.Edge, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT e.parent_step_id, e.child_step_id
		FROM edges e JOIN steps c ON c.id = e.child_step_id
		WHERE c.task_id = ANY ($1::bigint[]) ORDER BY e.child_step_id, e.parent_step_id`, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("listing the edges of %d tasks: %w", len(taskIDs), err)
	}
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (backends.Edge, error) {
		var e backends.Edge
		err := r.Scan(&e.ParentStepID, &e.ChildStepID)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the edges of %d tasks: %w", len(taskIDs), err)
	}
	return nonNil(edges), nil
}

// ListTransitionsOfTasks implements backends.BatchReader.
func (s *Store) ListTransitionsOfTasks(ctx context.Context, taskIDs []int64) (_ []*backends.Transition, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, transitionsSQL+` WHERE tr.task_id = ANY ($1::bigint[]) ORDER BY tr.task_id, tr.id`, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of %d tasks: %w", len(taskIDs), err)
	}
	out, err := pgx.CollectRows(rows, scanTransition)
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of %d tasks: %w", len(taskIDs), err)
	}
	return nonNil(out), nil
}

// ListEventsOfTasks implements backends.BatchReader: of each task, the
// first limit rows holding an event after after (each holds at least one),
// cut to limit events by backends.AppendEventRows.
func (s *Store) ListEventsOfTasks(ctx context.Context, taskIDs []int64, after int64, limit int) (_ []*backends.Event, rerr error) {
	defer classifyErr(&rerr)
	q := &backends.EventQuery{After: after, Limit: limit}
	rows, err := s.pool.Query(ctx, `SELECT seq, task_id, namespace, created_at, body FROM (
			SELECT seq, task_id, namespace, created_at, body,
				row_number() OVER (PARTITION BY task_id ORDER BY seq) AS n
			FROM events WHERE task_id = ANY ($1::bigint[]) AND last_seq > $2
		) r WHERE n <= $3 ORDER BY task_id, seq`, taskIDs, after, q.LimitOrDefault())
	if err != nil {
		return nil, fmt.Errorf("listing the events of %d tasks: %w", len(taskIDs), err)
	}
	defer rows.Close()
	out, run := []*backends.Event{}, backends.EventsOfTasks{}
	for rows.Next() {
		var r backends.EventRow
		if err := rows.Scan(&r.First, &r.TaskID, &r.Namespace, &r.Time, &r.Body); err != nil {
			return nil, fmt.Errorf("listing the events of %d tasks: %w", len(taskIDs), err)
		}
		r.Time = ts(r.Time)
		if out, err = run.Append(out, q, r); err != nil {
			return nil, fmt.Errorf("listing the events of %d tasks: %w", len(taskIDs), err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the events of %d tasks: %w", len(taskIDs), err)
	}
	return out, nil
}

// nonNil is xs, or an empty slice for none.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
