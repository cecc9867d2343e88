package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/taskerd/taskerd/backends"
)

// transitionsSQL selects a transition's columns for scanTransition; the
// most recent transition of each object (a task, each of its steps) is its
// last by sort_key. Callers add WHERE and ORDER BY.
const transitionsSQL = `SELECT id, task_id, coalesce(step_id, 0), coalesce(from_state, ''),
	to_state, reason, metadata, sort_key,
	sort_key = max(sort_key) OVER (PARTITION BY task_id, step_id), created_at
	FROM transitions`

// queryAll runs query and scans every row with scan; no row is an empty
// slice, not nil.
func queryAll[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanTransition scans a row of transitionsSQL.
func scanTransition(sc scanner) (*backends.Transition, error) {
	var (
		t              backends.Transition
		from, to       string
		meta           sql.NullString
		recent         int
		createdAtMicro int64
	)
	if err := sc.Scan(&t.ID, &t.TaskID, &t.StepID, &from, &to, &t.Reason, &meta, &t.SortKey,
		&recent, &createdAtMicro); err != nil {
		return nil, err
	}
	t.From, t.To = backends.State(from), backends.State(to)
	t.Metadata = nullJSON(meta)
	t.MostRecent = recent != 0
	t.CreatedAt = fromMicros(createdAtMicro)
	return &t, nil
}

// scanEdge scans a row of (parent_step_id, child_step_id).
func scanEdge(sc scanner) (backends.Edge, error) {
	var e backends.Edge
	err := sc.Scan(&e.ParentStepID, &e.ChildStepID)
	return e, err
}

// scanTaskRow is scanTask of a row holding taskColumns only.
func scanTaskRow(sc scanner) (*backends.Task, error) { return scanTask(sc) }

// queryEventRows runs a query selecting (seq, task_id, namespace,
// created_at, body) and hands each row to each.
func queryEventRows(ctx context.Context, q querier, each func(backends.EventRow) error, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r       backends.EventRow
			created int64
		)
		if err := rows.Scan(&r.First, &r.TaskID, &r.Namespace, &created, &r.Body); err != nil {
			return err
		}
		r.Time = fromMicros(created)
		if err := each(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// inTaskIDs is the condition "x is one of the ids of the JSON array ?1".
const inTaskIDs = ` IN (SELECT value FROM json_each(?1))`

// readOfTasks runs query, whose ?1 is the JSON array of ids, in a read
// transaction and scans its rows; what names them in an error ("the
// steps of ", or "" for the tasks themselves).
func readOfTasks[T any](ctx context.Context, s *Store, what string, ids []int64, scan func(scanner) (T, error), query string) (_ []T, rerr error) {
	defer classifyErr(&rerr)
	var out []T
	err := s.read(ctx, func(tx querier) error {
		var err error
		out, err = queryAll(ctx, tx, scan, query, idsJSON(ids))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s%d tasks: %w", what, len(ids), err)
	}
	return out, nil
}

// GetTasks implements backends.BatchReader.
func (s *Store) GetTasks(ctx context.Context, ids []int64) ([]*backends.Task, error) {
	return readOfTasks(ctx, s, "", ids, scanTaskRow, `SELECT `+taskColumns+` FROM tasks WHERE id`+inTaskIDs+` ORDER BY id`)
}

// ListStepsOfTasks implements backends.BatchReader.
func (s *Store) ListStepsOfTasks(ctx context.Context, taskIDs []int64) ([]*backends.Step, error) {
	return readOfTasks(ctx, s, "the steps of ", taskIDs, scanStep,
		`SELECT `+stepColumns+` FROM steps WHERE task_id`+inTaskIDs+` ORDER BY task_id, position`)
}

// ListEdgesOfTasks implements backends.BatchReader.
func (s *Store) ListEdgesOfTasks(ctx context.Context, taskIDs []int64) ([]backends.Edge, error) {
	return readOfTasks(ctx, s, "the edges of ", taskIDs, scanEdge, `SELECT e.parent_step_id, e.child_step_id
		FROM edges e JOIN steps c ON c.id = e.child_step_id
		WHERE c.task_id`+inTaskIDs+` ORDER BY e.child_step_id, e.parent_step_id`)
}

// ListTransitionsOfTasks implements backends.BatchReader.
func (s *Store) ListTransitionsOfTasks(ctx context.Context, taskIDs []int64) ([]*backends.Transition, error) {
	return readOfTasks(ctx, s, "the transitions of ", taskIDs, scanTransition,
		transitionsSQL+` WHERE task_id`+inTaskIDs+` ORDER BY task_id, id`)
}

// ListEventsOfTasks implements backends.BatchReader: of each task, the
// first limit rows holding an event after after (each holds at least one),
// cut to limit events by backends.EventsOfTasks.
func (s *Store) ListEventsOfTasks(ctx context.Context, taskIDs []int64, after int64, limit int) (_ []*backends.Event, rerr error) {
	defer classifyErr(&rerr)
	q := &backends.EventQuery{After: after, Limit: limit}
	out := []*backends.Event{}
	var run backends.EventsOfTasks
	err := s.read(ctx, func(tx querier) error {
		return queryEventRows(ctx, tx, func(r backends.EventRow) (err error) {
			out, err = run.Append(out, q, r)
			return err
		}, `SELECT seq, task_id, namespace, created_at, body FROM (
				SELECT seq, task_id, namespace, created_at, body,
					row_number() OVER (PARTITION BY task_id ORDER BY seq) AS n
				FROM events WHERE task_id`+inTaskIDs+` AND last_seq > ?2
			) WHERE n <= ?3 ORDER BY task_id, seq`, idsJSON(taskIDs), after, q.LimitOrDefault())
	})
	if err != nil {
		return nil, fmt.Errorf("listing the events of %d tasks: %w", len(taskIDs), err)
	}
	return out, nil
}
