package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// CreateTask implements backends.Store.
func (s *Store) CreateTask(ctx context.Context, p *backends.CreateTaskParams) (_ *backends.Task, _ bool, rerr error) {
	defer classifyErr(&rerr)
	if p.IdempotencyKey == "" && len(p.Steps) > 0 && !slices.ContainsFunc(p.Steps, func(ns backends.NewStep) bool { return ns.Bypass }) {
		// Written in a batch with the creations that arrive meanwhile
		// (creations.go).
		task, events, err := s.createBatched(ctx, p)
		if err != nil {
			return nil, false, fmt.Errorf("creating a task of %s/%s@%s: %w", p.Namespace, p.WorkflowName, p.WorkflowVersion, err)
		}
		sinkEvents(ctx, events)
		return task, true, nil
	}
	var (
		task    *backends.Task
		created bool
		events  []*backends.Event
		w       *wake
	)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		created, events, w = false, nil, nil
		if p.IdempotencyKey != "" {
			existing, err := byIdempotencyKey(ctx, tx, p)
			if err != nil || existing != nil {
				task = existing
				return err
			}
		}
		var err error
		task, events, err = createTaskTx(ctx, tx, p)
		if err != nil {
			return err
		}
		created = true
		w = s.wakes.note(events, p.Now)
		return w.exec(ctx, tx)
	})
	if err == nil {
		w.committed()
	}
	var pgErr interface{ SQLState() string }
	if p.IdempotencyKey != "" && errors.As(err, &pgErr) && pgErr.SQLState() == "23505" {
		// Another request with the same key committed between our look and
		// our insert: answer as if it had been first all along.
		err = s.tx(ctx, func(tx pgx.Tx) error {
			existing, err := byIdempotencyKey(ctx, tx, p)
			if err == nil && existing == nil {
				err = fmt.Errorf("idempotency key %q: conflict, but no task holds it", p.IdempotencyKey)
			}
			task, created, events = existing, false, nil
			return err
		})
	}
	if err != nil {
		return nil, false, fmt.Errorf("creating a task of %s/%s@%s: %w", p.Namespace, p.WorkflowName, p.WorkflowVersion, err)
	}
	sinkEvents(ctx, events)
	return task, created, nil
}

// byIdempotencyKey returns the task holding p's key if its request hash is
// p's, ErrDuplicate if another request holds it, and nil if none does.
func byIdempotencyKey(ctx context.Context, tx querier, p *backends.CreateTaskParams) (*backends.Task, error) {
	var (
		id   int64
		hash string
	)
	err := tx.QueryRow(ctx, `SELECT id, request_hash FROM tasks WHERE idempotency_key = $1`, p.IdempotencyKey).Scan(&id, &hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, err
	case hash != p.RequestHash:
		return nil, fmt.Errorf("idempotency key %q names task %d, created by another request: %w",
			p.IdempotencyKey, id, backends.ErrDuplicate)
	}
	return getTask(ctx, tx, id)
}

// createTaskTx inserts a new task in tx and returns it with the events it
// appended to the log, to hand to the sink after commit.
func createTaskTx(ctx context.Context, tx querier, p *backends.CreateTaskParams) (*backends.Task, []*backends.Event, error) {
	id, err := insertTask(ctx, tx, p)
	if err != nil {
		return nil, nil, err
	}
	// Finalize at once: a task whose every step was bypassed is complete
	// (pending -> in_progress -> complete); any other new task has a ready
	// step or nothing at all, and finalize leaves it pending.
	_, _, task, err := finalize(ctx, tx, id, p.Now)
	if err != nil {
		return nil, nil, err
	}
	events := backends.CreatedEvents(task, p.Now)
	if err := appendEvents(ctx, tx, events); err != nil {
		return nil, nil, err
	}
	return task, events, nil
}

func insertTask(ctx context.Context, tx querier, p *backends.CreateTaskParams) (int64, error) {
	now := ts(p.Now)
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	taskCtx := p.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage(`{}`)
	}
	var key any
	if p.IdempotencyKey != "" {
		key = p.IdempotencyKey
	}
	// The task, its first transition (sort_key 1, from nothing) and its
	// namespace (when new).
	var id int64
	if err := tx.QueryRow(ctx, `WITH task AS (
			INSERT INTO tasks (namespace, workflow_name, workflow_version, context, initiator, source_system,
				reason, tags, requested_at, idempotency_key, request_hash, state, transition_count, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 1, $9, $9) RETURNING id
		), logged AS (
			INSERT INTO transitions (task_id, to_state, reason, sort_key, created_at)
			SELECT id, 'pending', 'created', 1, $9 FROM task
		), noted AS (
			INSERT INTO task_namespaces (namespace) VALUES ($1) ON CONFLICT DO NOTHING
		)
		SELECT id FROM task`,
		p.Namespace, p.WorkflowName, p.WorkflowVersion, string(taskCtx), p.Initiator, p.SourceSystem, p.Reason,
		tags, now, key, p.RequestHash).Scan(&id); err != nil {
		return 0, fmt.Errorf("inserting the task: %w", err)
	}
	ids := make(map[string]int64, len(p.Steps))
	bypassed := make(map[string]bool)
	for i, ns := range p.Steps {
		if _, dup := ids[ns.Name]; dup {
			return 0, fmt.Errorf("step %q given twice", ns.Name)
		}
		// Every earlier step is pending, or resolved_manually if bypassed
		// (below; its children did not exist yet to be counted).
		unsatisfied := 0
		parentIDs := make([]int64, 0, len(ns.Parents))
		for _, parent := range ns.Parents {
			parentID, ok := ids[parent]
			if !ok {
				return 0, fmt.Errorf("step %q depends on %q, which is not an earlier step", ns.Name, parent)
			}
			parentIDs = append(parentIDs, parentID)
			if !bypassed[parent] {
				unsatisfied++
			}
		}
		var stepID int64
		if err := tx.QueryRow(ctx, `WITH step AS (
				INSERT INTO steps (task_id, name, position, handler, config, retryable, retry_limit,
					backoff_base_us, backoff_max_us, timeout_us, skippable, state, unsatisfied_parents,
					created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $13) RETURNING id
			), parents AS (
				INSERT INTO edges (parent_step_id, child_step_id)
				SELECT unnest($14::bigint[]), id FROM step
			)
			SELECT id FROM step`,
			id, ns.Name, i, ns.Handler, jsonOrNil(ns.Config), ns.Retryable, ns.RetryLimit,
			ns.BackoffBase.Microseconds(), ns.BackoffMax.Microseconds(), ns.Timeout.Microseconds(),
			ns.Skippable, unsatisfied, now, parentIDs).Scan(&stepID); err != nil {
			return 0, fmt.Errorf("inserting step %q: %w", ns.Name, err)
		}
		ids[ns.Name] = stepID
		if ns.Bypass {
			bypassed[ns.Name] = true
			st := &backends.Step{ID: stepID, TaskID: id, Name: ns.Name, State: backends.StatePending}
			if _, err := moveStep(ctx, tx, st, backends.StateResolvedManually, "bypassed", nil, p.Now,
				resolveSet, `{"bypassed":true}`); err != nil {
				return 0, err
			}
		}
	}
	return id, nil
}

// GetTask implements backends.Store.
func (s *Store) GetTask(ctx context.Context, taskID int64) (_ *backends.Task, rerr error) {
	defer classifyErr(&rerr)
	t, err := getTask(ctx, s.pool, taskID)
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", taskID, err)
	}
	return t, nil
}

// GetStep implements backends.Store.
func (s *Store) GetStep(ctx context.Context, stepID int64) (_ *backends.Step, rerr error) {
	defer classifyErr(&rerr)
	st, err := getStep(ctx, s.pool, stepID)
	if err != nil {
		return nil, fmt.Errorf("getting step %d: %w", stepID, err)
	}
	return st, nil
}

// ListSteps implements backends.Store.
func (s *Store) ListSteps(ctx context.Context, taskID int64) (_ []*backends.Step, rerr error) {
	defer classifyErr(&rerr)
	var steps []*backends.Step
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		var err error
		steps, err = querySteps(ctx, tx, `SELECT `+stepColumns+` FROM steps WHERE task_id = $1 ORDER BY position`, taskID)
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

// ListEdges implements backends.Store.
func (s *Store) ListEdges(ctx context.Context, taskID int64) (_ []backends.Edge, rerr error) {
	defer classifyErr(&rerr)
	var edges []backends.Edge
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT e.parent_step_id, e.child_step_id
			FROM edges e JOIN steps c ON c.id = e.child_step_id
			WHERE c.task_id = $1 ORDER BY e.child_step_id, e.parent_step_id`, taskID)
		if err != nil {
			return err
		}
		edges, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (backends.Edge, error) {
			var e backends.Edge
			err := r.Scan(&e.ParentStepID, &e.ChildStepID)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the edges of task %d: %w", taskID, err)
	}
	if edges == nil {
		edges = []backends.Edge{}
	}
	return edges, nil
}

// ListTransitions implements backends.Store. A transition is the most
// recent of its object when its sort_key is the object's transition_count.
func (s *Store) ListTransitions(ctx context.Context, taskID int64) (_ []*backends.Transition, rerr error) {
	defer classifyErr(&rerr)
	var out []*backends.Transition
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := taskExists(ctx, tx, taskID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, transitionsSQL+` WHERE tr.task_id = $1 ORDER BY tr.id`, taskID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanTransition)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of task %d: %w", taskID, err)
	}
	if out == nil {
		out = []*backends.Transition{}
	}
	return out, nil
}
