package sqlite

import (
	"context"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/internal/operator"
)

// Operator actions (SEMANTICS §5.7–§5.9) are operator.Actions, embedded in
// Store: each runs as one write operation (Store.write, the single writer's
// group commit) over opTx.
func (s *Store) operatorTx(ctx context.Context, fn func(operator.Tx) error) error {
	return s.write(ctx, func(tx querier) error { return fn(opTx{tx}) })
}

// opTx is operator.Tx inside a write. The writer is alone from BEGIN
// IMMEDIATE to COMMIT, so nothing can change a row between a read and the
// writes that follow it: a lock is a plain read.
type opTx struct{ q querier }

func (t opTx) LockTaskSteps(ctx context.Context, taskID int64) ([]*backends.Step, error) {
	return listSteps(ctx, t.q, taskID)
}

func (t opTx) LockTask(ctx context.Context, taskID int64) (*backends.Task, error) {
	return getTask(ctx, t.q, taskID)
}

func (t opTx) LockStep(ctx context.Context, stepID int64) (*backends.Step, error) {
	return getStep(ctx, t.q, stepID)
}

// descendantsSQL: every step reachable from step ?1 through edges.
const descendantsSQL = `WITH RECURSIVE descendants(id) AS (
		SELECT child_step_id FROM edges WHERE parent_step_id = ?
		UNION
		SELECT e.child_step_id FROM edges e JOIN descendants d ON e.parent_step_id = d.id
	)
	SELECT ` + stepColumns + ` FROM steps WHERE id IN (SELECT id FROM descendants) ORDER BY position`

func (t opTx) LockDescendants(ctx context.Context, stepID int64) ([]*backends.Step, error) {
	return queryAll(ctx, t.q, scanStep, descendantsSQL, stepID)
}

func (t opTx) MoveTask(ctx context.Context, taskID int64, from, to backends.State, reason string, now time.Time) error {
	return moveTask(ctx, t.q, taskID, from, to, reason, nil, now)
}

// stepWrites are the assignments each operator.StepWrite adds to the
// UPDATE of moveStepWithSQL (none for operator.StateOnly).
var stepWrites = map[operator.StepWrite]string{
	operator.WithResults:  `results = ?`,
	operator.GrantAttempt: `retry_limit = max(retry_limit, attempts + 1), retryable = 1, backoff_request_seconds = NULL`,
}

func (t opTx) MoveStep(ctx context.Context, st *backends.Step, to backends.State, reason string,
	meta map[string]any, now time.Time, w operator.StepWrite, args ...any) error {
	_, err := moveStepWith(ctx, t.q, st, to, reason, meta, now, stepWrites[w], args...)
	return err
}

func (t opTx) RequestCancel(ctx context.Context, st *backends.Step, now time.Time) error {
	_, err := t.q.ExecContext(ctx, `UPDATE steps SET cancel_requested = 1, updated_at = ? WHERE id = ?`, micros(now), st.ID)
	return err
}

// ReadBack reads the task, then each step by id: one cached statement,
// whatever the number of steps.
func (t opTx) ReadBack(ctx context.Context, taskID int64, stepIDs []int64) (*backends.Task, []*backends.Step, error) {
	task, err := getTask(ctx, t.q, taskID)
	if err != nil {
		return nil, nil, err
	}
	steps := make([]*backends.Step, 0, len(stepIDs))
	for _, id := range stepIDs {
		st, err := getStep(ctx, t.q, id)
		if err != nil {
			return nil, nil, err
		}
		steps = append(steps, st)
	}
	return task, steps, nil
}

func (t opTx) Finalize(ctx context.Context, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, error) {
	ec, d, _, _, err := finalize(ctx, t.q, taskID, now)
	return ec, d, err
}
