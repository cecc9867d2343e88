package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/taskerd/taskerd/backends"
)

// CreateTask implements backends.Store.
func (s *Store) CreateTask(ctx context.Context, p *backends.CreateTaskParams) (*backends.Task, bool, error) {
	var (
		task    *backends.Task
		created bool
		events  []*backends.Event
	)
	err := s.write(ctx, func(tx querier) error {
		if p.IdempotencyKey != "" {
			existing, err := byIdempotencyKey(ctx, tx, p)
			if err != nil || existing != nil {
				task = existing
				return err
			}
		}
		var err error
		task, events, err = createTaskTx(ctx, tx, p)
		created = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("creating a task of %s/%s@%s: %w", p.Namespace, p.WorkflowName, p.WorkflowVersion, err)
	}
	notify(ctx, events)
	return task, created, nil
}

// byIdempotencyKey returns the task holding p's key if its request hash is
// p's, ErrDuplicate if another request holds it, and nil if none does.
func byIdempotencyKey(ctx context.Context, tx querier, p *backends.CreateTaskParams) (*backends.Task, error) {
	var (
		id   int64
		hash string
	)
	err := tx.QueryRowContext(ctx, `SELECT id, request_hash FROM tasks WHERE idempotency_key = ?`,
		p.IdempotencyKey).Scan(&id, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, err
	case hash != p.RequestHash:
		return nil, fmt.Errorf("idempotency key %q names task %d, created by another request: %w",
			p.IdempotencyKey, id, backends.ErrDuplicate)
	}
	return getTask(ctx, tx, id)
}

// createTaskTx inserts a new task in tx and returns it with the events to
// append after commit (already written to the log in tx).
func createTaskTx(ctx context.Context, tx querier, p *backends.CreateTaskParams) (*backends.Task, []*backends.Event, error) {
	id, err := insertTask(ctx, tx, p)
	if err != nil {
		return nil, nil, err
	}
	var task *backends.Task
	if len(p.Steps) > 0 && !slices.ContainsFunc(p.Steps, func(ns backends.NewStep) bool { return ns.Bypass }) {
		// Finalize cannot move a new task with steps and none bypassed
		// (backendtest NewTaskNeedsNoFinalize): it stays pending.
		if task, err = getTask(ctx, tx, id); err != nil {
			return nil, nil, err
		}
	} else if _, _, task, _, err = finalize(ctx, tx, id, p.Now); err != nil {
		// A task whose every step was bypassed is complete at once (pending
		// -> in_progress -> complete); any other new task has a ready step
		// or nothing at all, and finalize leaves it pending.
		return nil, nil, err
	}
	events := backends.CreatedEvents(task, p.Now)
	if err := appendEvents(ctx, tx, events); err != nil {
		return nil, nil, err
	}
	return task, events, nil
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO task_namespaces (namespace) VALUES (?) ON CONFLICT DO NOTHING`,
		p.Namespace); err != nil {
		return 0, fmt.Errorf("noting the task's namespace: %w", err)
	}
	// Check the DAG, then write all steps in one statement and all edges in
	// another, whatever the task's size. Every parent starts unsatisfied:
	// bypassed steps are moved to resolved_manually afterwards, by moveStep,
	// which satisfies their children then.
	pos := make(map[string]int, len(p.Steps))
	rows := make([]newStepRow, len(p.Steps))
	for i, ns := range p.Steps {
		if _, dup := pos[ns.Name]; dup {
			return 0, fmt.Errorf("step %q given twice", ns.Name)
		}
		for _, parent := range ns.Parents {
			if _, ok := pos[parent]; !ok {
				return 0, fmt.Errorf("step %q depends on %q, which is not an earlier step", ns.Name, parent)
			}
		}
		pos[ns.Name] = i
		var config *string
		if len(ns.Config) > 0 {
			c := string(ns.Config)
			config = &c
		}
		rows[i] = newStepRow{Name: ns.Name, Position: i, Handler: ns.Handler, Config: config,
			Retryable: boolInt(ns.Retryable), RetryLimit: ns.RetryLimit, BaseUs: ns.BackoffBase.Microseconds(),
			MaxUs: ns.BackoffMax.Microseconds(), TimeoutUs: ns.Timeout.Microseconds(),
			Skippable: boolInt(ns.Skippable), Unsatisfied: len(ns.Parents)}
	}
	if len(rows) == 0 {
		return id, nil
	}
	rowsJSON, err := json.Marshal(rows)
	if err != nil {
		return 0, err
	}
	res, err := tx.QueryContext(ctx, insertStepsSQL, id, string(rowsJSON), now)
	if err != nil {
		return 0, fmt.Errorf("inserting the steps: %w", err)
	}
	ids := make([]int64, len(rows))
	for res.Next() {
		var stepID int64
		var position int
		if err := res.Scan(&stepID, &position); err != nil {
			res.Close()
			return 0, fmt.Errorf("inserting the steps: %w", err)
		}
		ids[position] = stepID
	}
	if err := res.Close(); err != nil {
		return 0, fmt.Errorf("inserting the steps: %w", err)
	}
	var edges [][2]int64
	for i, ns := range p.Steps {
		for _, parent := range ns.Parents {
			edges = append(edges, [2]int64{ids[pos[parent]], ids[i]})
		}
	}
	if len(edges) > 0 {
		edgesJSON, err := json.Marshal(edges)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, insertEdgesSQL, string(edgesJSON)); err != nil {
			return 0, fmt.Errorf("inserting the edges: %w", err)
		}
	}
	for i, ns := range p.Steps {
		if !ns.Bypass {
			continue
		}
		st := &backends.Step{ID: ids[i], TaskID: id, Name: ns.Name, State: backends.StatePending}
		if err := moveStep(ctx, tx, st, backends.StateResolvedManually, "bypassed", nil, p.Now); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE steps SET results = '{"bypassed":true}' WHERE id = ?`, ids[i]); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// GetTask implements backends.Store.
func (s *Store) GetTask(ctx context.Context, taskID int64) (_ *backends.Task, rerr error) {
	defer classifyErr(&rerr)
	t, err := getTask(ctx, s.rq(), taskID)
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", taskID, err)
	}
	return t, nil
}

// GetStep implements backends.Store.
func (s *Store) GetStep(ctx context.Context, stepID int64) (_ *backends.Step, rerr error) {
	defer classifyErr(&rerr)
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
		var err error
		edges, err = queryAll(ctx, tx, scanEdge, `SELECT e.parent_step_id, e.child_step_id
			FROM edges e JOIN steps c ON c.id = e.child_step_id
			WHERE c.task_id = ? ORDER BY e.child_step_id, e.parent_step_id`, taskID)
		return err
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
		var err error
		out, err = queryAll(ctx, tx, scanTransition, transitionsSQL+` WHERE task_id = ? ORDER BY id`, taskID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the transitions of task %d: %w", taskID, err)
	}
	return out, nil
}

// newStepRow is one step of insertStepsSQL's JSON array.
type newStepRow struct {
	Name        string  `json:"name"`
	Position    int     `json:"position"`
	Handler     string  `json:"handler"`
	Config      *string `json:"config"` // the config's JSON text, or null
	Retryable   int     `json:"retryable"`
	RetryLimit  int     `json:"retry_limit"`
	BaseUs      int64   `json:"base_us"`
	MaxUs       int64   `json:"max_us"`
	TimeoutUs   int64   `json:"timeout_us"`
	Skippable   int     `json:"skippable"`
	Unsatisfied int     `json:"unsatisfied"`
}

// A task's steps and edges are each written by one statement over a JSON
// array (?2 / ?1), in array order, so one prepared text serves every task
// size instead of one INSERT per row.
const (
	insertStepsSQL = `INSERT INTO steps (task_id, name, position, handler, config, retryable,
		retry_limit, backoff_base_us, backoff_max_us, timeout_us, skippable, state, unsatisfied_parents,
		created_at, updated_at)
		SELECT ?1, value->>'name', value->>'position', value->>'handler', value->>'config',
		       value->>'retryable', value->>'retry_limit', value->>'base_us', value->>'max_us',
		       value->>'timeout_us', value->>'skippable', 'pending', value->>'unsatisfied', ?3, ?3
		  FROM json_each(?2) ORDER BY key
		RETURNING id, position`
	insertEdgesSQL = `INSERT INTO edges (parent_step_id, child_step_id)
		SELECT value->>0, value->>1 FROM json_each(?1)`
)
