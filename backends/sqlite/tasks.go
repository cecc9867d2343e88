package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/taskerd/taskerd/backends"
)

// CreateTask implements backends.Store.
func (s *Store) CreateTask(ctx context.Context, p *backends.CreateTaskParams) (*backends.Task, bool, error) {
	var (
		task    *backends.Task
		created bool
	)
	err := s.write(ctx, func(tx querier) error {
		if p.IdempotencyKey != "" {
			var (
				id   int64
				hash string
			)
			err := tx.QueryRowContext(ctx, `SELECT id, request_hash FROM tasks WHERE idempotency_key = ?`,
				p.IdempotencyKey).Scan(&id, &hash)
			switch {
			case err == nil && hash == p.RequestHash:
				task, err = getTask(ctx, tx, id)
				return err
			case err == nil:
				return fmt.Errorf("idempotency key %q names task %d, created by another request: %w",
					p.IdempotencyKey, id, backends.ErrDuplicate)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		id, err := insertTask(ctx, tx, p)
		if err != nil {
			return err
		}
		// Finalize at once: a task whose every step was bypassed is complete
		// (pending -> in_progress -> complete); any other new task has a
		// ready step or nothing at all, and finalize leaves it pending.
		if _, _, task, err = finalize(ctx, tx, id, p.Now); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("creating a task of %s/%s@%s: %w", p.Namespace, p.WorkflowName, p.WorkflowVersion, err)
	}
	return task, created, nil
}

func insertTask(ctx context.Context, tx querier, p *backends.CreateTaskParams) (int64, error) {
	now := micros(p.Now)
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return 0, err
	}
	taskCtx := p.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage(`{}`)
	}
	var key any
	if p.IdempotencyKey != "" {
		key = p.IdempotencyKey
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO tasks (namespace, workflow_name, workflow_version, context,
		initiator, source_system, reason, tags, requested_at, idempotency_key, request_hash, state, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id`,
		p.Namespace, p.WorkflowName, p.WorkflowVersion, string(taskCtx), p.Initiator, p.SourceSystem, p.Reason,
		string(tagsJSON), now, key, p.RequestHash, now, now).Scan(&id); err != nil {
		return 0, fmt.Errorf("inserting the task: %w", err)
	}
	if err := insertTransition(ctx, tx, id, 0, "", backends.StatePending, "created", nil, p.Now); err != nil {
		return 0, err
	}
	ids := make(map[string]int64, len(p.Steps))
	bypassed := make(map[string]bool)
	for i, ns := range p.Steps {
		if _, dup := ids[ns.Name]; dup {
			return 0, fmt.Errorf("step %q given twice", ns.Name)
		}
		// Every earlier step is pending, or resolved_manually if bypassed
		// (moveStep below; its children did not exist yet to be counted).
		unsatisfied := 0
		for _, parent := range ns.Parents {
			if !bypassed[parent] {
				unsatisfied++
			}
		}
		var stepID int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO steps (task_id, name, position, handler, config, retryable,
			retry_limit, backoff_base_us, backoff_max_us, timeout_us, skippable, state, unsatisfied_parents,
			created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id`,
			id, ns.Name, i, ns.Handler, jsonOrNil(ns.Config), boolInt(ns.Retryable), ns.RetryLimit,
			ns.BackoffBase.Microseconds(), ns.BackoffMax.Microseconds(), ns.Timeout.Microseconds(),
			boolInt(ns.Skippable), unsatisfied, now, now).Scan(&stepID); err != nil {
			return 0, fmt.Errorf("inserting step %q: %w", ns.Name, err)
		}
		ids[ns.Name] = stepID
		for _, parent := range ns.Parents {
			parentID, ok := ids[parent]
			if !ok {
				return 0, fmt.Errorf("step %q depends on %q, which is not an earlier step", ns.Name, parent)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO edges (parent_step_id, child_step_id) VALUES (?, ?)`,
				parentID, stepID); err != nil {
				return 0, fmt.Errorf("inserting edge %s -> %s: %w", parent, ns.Name, err)
			}
		}
		if ns.Bypass {
			bypassed[ns.Name] = true
			st := &backends.Step{ID: stepID, TaskID: id, Name: ns.Name, State: backends.StatePending}
			if err := moveStep(ctx, tx, st, backends.StateResolvedManually, "bypassed", nil, p.Now); err != nil {
				return 0, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE steps SET results = '{"bypassed":true}' WHERE id = ?`, stepID); err != nil {
				return 0, err
			}
		}
	}
	return id, nil
}

// GetTask implements backends.Store.
func (s *Store) GetTask(ctx context.Context, taskID int64) (*backends.Task, error) {
	t, err := getTask(ctx, s.rq(), taskID)
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", taskID, err)
	}
	return t, nil
}

// GetStep implements backends.Store.
func (s *Store) GetStep(ctx context.Context, stepID int64) (*backends.Step, error) {
	st, err := getStep(ctx, s.rq(), stepID)
	if err != nil {
		return nil, fmt.Errorf("getting step %d: %w", stepID, err)
	}
	return st, nil
}

// ListSteps implements backends.Store.
func (s *Store) ListSteps(ctx context.Context, taskID int64) ([]*backends.Step, error) {
	var steps []*backends.Step
	err := s.read(ctx, func(tx querier) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		var err error
		steps, err = listSteps(ctx, tx, taskID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the steps of task %d: %w", taskID, err)
	}
	if steps == nil {
		steps = []*backends.Step{}
	}
	return steps, nil
}

// ListEdges implements backends.Store. Like every read by task id, it
// returns ErrNotFound for an unknown task (store.go's general rule).
func (s *Store) ListEdges(ctx context.Context, taskID int64) ([]backends.Edge, error) {
	edges := []backends.Edge{}
	err := s.read(ctx, func(tx querier) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT e.parent_step_id, e.child_step_id
			FROM edges e JOIN steps c ON c.id = e.child_step_id
			WHERE c.task_id = ? ORDER BY e.child_step_id, e.parent_step_id`, taskID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e backends.Edge
			if err := rows.Scan(&e.ParentStepID, &e.ChildStepID); err != nil {
				return err
			}
			edges = append(edges, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing the edges of task %d: %w", taskID, err)
	}
	return edges, nil
}

// ListTransitions implements backends.Store.
func (s *Store) ListTransitions(ctx context.Context, taskID int64) ([]*backends.Transition, error) {
	out := []*backends.Transition{}
	err := s.read(ctx, func(tx querier) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		// The most recent transition of each object (the task, each step)
		// is its last by sort_key.
		rows, err := tx.QueryContext(ctx, `SELECT id, task_id, coalesce(step_id, 0), coalesce(from_state, ''),
			to_state, reason, metadata, sort_key,
			sort_key = max(sort_key) OVER (PARTITION BY step_id), created_at
			FROM transitions WHERE task_id = ? ORDER BY id`, taskID)
		if err != nil {
			return err
		}
		defer rows.Close()
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
				return err
			}
			t.From, t.To = backends.State(from), backends.State(to)
			t.Metadata = nullJSON(meta)
			t.MostRecent = recent != 0
			t.CreatedAt = fromMicros(createdAtMicro)
			out = append(out, &t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of task %d: %w", taskID, err)
	}
	return out, nil
}
