package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/taskerd/taskerd/backends"
)

// transitionsSQL selects a transition's columns for queryTransitions; the
// most recent transition of each object (a task, each of its steps) is its
// last by sort_key. Callers add WHERE and ORDER BY.
const transitionsSQL = `SELECT id, task_id, coalesce(step_id, 0), coalesce(from_state, ''),
	to_state, reason, metadata, sort_key,
	sort_key = max(sort_key) OVER (PARTITION BY task_id, step_id), created_at
	FROM transitions`

// queryTransitions runs a query of transitionsSQL and scans every row.
func queryTransitions(ctx context.Context, q querier, query string, args ...any) ([]*backends.Transition, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*backends.Transition{}
	for rows.Next() {
		var (
			t              backends.Transition
			from, to       string
			meta           sql.NullString
			recent         int
			createdAtMicro int64
		)
		if err := rows.Scan(&t.ID, &t.TaskID, &t.StepID, &from, &to, &t.Reason, &meta, &t.SortKey,
			&recent, &createdAtMicro); err != nil {
			return nil, err
		}
		t.From, t.To = backends.State(from), backends.State(to)
		t.Metadata = nullJSON(meta)
		t.MostRecent = recent != 0
		t.CreatedAt = fromMicros(createdAtMicro)
		out = append(out, &t)
	}
	return out, rows.Err()
}

// queryTasks runs a query selecting taskColumns and scans every row.
func queryTasks(ctx context.Context, q querier, query string, args ...any) ([]*backends.Task, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	tasks := []*backends.Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, rows.Err()
}

// queryEdges runs a query selecting (parent_step_id, child_step_id) and
// scans every row.
func queryEdges(ctx context.Context, q querier, query string, args ...any) ([]backends.Edge, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	edges := []backends.Edge{}
	for rows.Next() {
		var e backends.Edge
		if err := rows.Scan(&e.ParentStepID, &e.ChildStepID); err != nil {
			return nil, err
		}
		edges = append(edges, e)
	}
	return edges, rows.Err()
}

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

// GetTasks implements backends.BatchReader.
func (s *Store) GetTasks(ctx context.Context, ids []int64) (_ []*backends.Task, rerr error) {
	defer classifyErr(&rerr)
	var out []*backends.Task
	err := s.read(ctx, func(tx querier) error {
		var err error
		out, err = queryTasks(ctx, tx, `SELECT `+taskColumns+` FROM tasks WHERE id`+inTaskIDs+` ORDER BY id`, idsJSON(ids))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting %d tasks: %w", len(ids), err)
	}
	return out, nil
}

// ListStepsOfTasks implements backends.BatchReader.
func (s *Store) ListStepsOfTasks(ctx context.Context, taskIDs []int64) (_ []*backends.Step, rerr error) {
	defer classifyErr(&rerr)
	var steps []*backends.Step
	err := s.read(ctx, func(tx querier) error {
		var err error
		steps, err = querySteps(ctx, tx, `SELECT `+stepColumns+` FROM steps WHERE task_id`+inTaskIDs+` ORDER BY task_id, position`, idsJSON(taskIDs))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the steps of %d tasks: %w", len(taskIDs), err)
	}
	if steps == nil {
		steps = []*backends.Step{}
	}
	return steps, nil
}

// ListEdgesOfTasks implements backends.BatchReader.
func (s *Store) ListEdgesOfTasks(ctx context.Context, taskIDs []int64) (_ []backends.Edge, rerr error) {
	defer classifyErr(&rerr)
	var edges []backends.Edge
	err := s.read(ctx, func(tx querier) error {
		var err error
		edges, err = queryEdges(ctx, tx, `SELECT e.parent_step_id, e.child_step_id
			FROM edges e JOIN steps c ON c.id = e.child_step_id
			WHERE c.task_id`+inTaskIDs+` ORDER BY e.child_step_id, e.parent_step_id`, idsJSON(taskIDs))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the edges of %d tasks: %w", len(taskIDs), err)
	}
	return edges, nil
}

// ListTransitionsOfTasks implements backends.BatchReader.
func (s *Store) ListTransitionsOfTasks(ctx context.Context, taskIDs []int64) (_ []*backends.Transition, rerr error) {
	defer classifyErr(&rerr)
	var out []*backends.Transition
	err := s.read(ctx, func(tx querier) error {
		var err error
		out, err = queryTransitions(ctx, tx, transitionsSQL+` WHERE task_id`+inTaskIDs+` ORDER BY task_id, id`, idsJSON(taskIDs))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of %d tasks: %w", len(taskIDs), err)
	}
	return out, nil
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
