package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/internal/operator"
)

// Operator actions (SEMANTICS §5.7–§5.9) are operator.Actions, embedded in
// Store: each runs in one transaction (Store.tx, run again as a deadlock
// victim) over opTx.
func (s *Store) operatorTx(ctx context.Context, fn func(operator.Tx) error) (rerr error) {
	defer classifyErr(&rerr)
	var w *wake
	err := s.tx(ctx, func(tx pgx.Tx) error {
		w = nil
		return fn(opTx{q: tx, n: s.wakes, w: &w})
	})
	if err == nil {
		w.committed()
	}
	return err
}

// opTx is operator.Tx inside a transaction. Its locks are FOR NO KEY UPDATE
// row locks (see the package comment), held until the transaction ends.
// AppendEvents also notifies other nodes of the work the action made (a
// retry, a resolve), through n, and leaves the notification in *w.
type opTx struct {
	q querier
	n *notifier
	w **wake
}

func (t opTx) LockTaskSteps(ctx context.Context, taskID int64) ([]*backends.Step, error) {
	return querySteps(ctx, t.q, `SELECT `+stepColumns+` FROM steps WHERE task_id = $1 ORDER BY position FOR NO KEY UPDATE`, taskID)
}

func (t opTx) LockTask(ctx context.Context, taskID int64) (*backends.Task, error) {
	return lockTask(ctx, t.q, taskID)
}

func (t opTx) LockStep(ctx context.Context, stepID int64) (*backends.Step, error) {
	return lockStep(ctx, t.q, stepID)
}

// descendantsSQL: every step reachable from step $1 through edges, locked
// in position order.
const descendantsSQL = `WITH RECURSIVE descendants(id) AS (
		SELECT child_step_id FROM edges WHERE parent_step_id = $1
		UNION
		SELECT e.child_step_id FROM edges e JOIN descendants d ON e.parent_step_id = d.id
	)
	SELECT ` + stepColumns + ` FROM steps WHERE id IN (SELECT id FROM descendants)
	ORDER BY position FOR NO KEY UPDATE`

func (t opTx) LockDescendants(ctx context.Context, stepID int64) ([]*backends.Step, error) {
	return querySteps(ctx, t.q, descendantsSQL, stepID)
}

func (t opTx) MoveTask(ctx context.Context, taskID int64, from, to backends.State, reason string, now time.Time) error {
	_, err := moveTask(ctx, t.q, taskID, from, to, reason, nil, now)
	return err
}

// stepWrites are the assignments each operator.StepWrite adds to the
// UPDATE of moveStepSQL (none for operator.StateOnly).
var stepWrites = map[operator.StepWrite]string{
	operator.WithResults:  resolveSet,
	operator.GrantAttempt: retrySet,
}

func (t opTx) MoveStep(ctx context.Context, st *backends.Step, to backends.State, reason string,
	meta map[string]any, now time.Time, w operator.StepWrite, args ...any) error {
	_, err := moveStep(ctx, t.q, st, to, reason, meta, now, stepWrites[w], args...)
	return err
}

func (t opTx) RequestCancel(ctx context.Context, st *backends.Step, now time.Time) error {
	_, err := t.q.Exec(ctx, `UPDATE steps SET cancel_requested = true, updated_at = $1 WHERE id = $2`, ts(now), st.ID)
	return err
}

// ReadBack reads the task, then the steps in one statement.
func (t opTx) ReadBack(ctx context.Context, taskID int64, stepIDs []int64) (*backends.Task, []*backends.Step, error) {
	task, err := getTask(ctx, t.q, taskID)
	if err != nil || len(stepIDs) == 0 {
		return task, nil, err
	}
	steps, err := querySteps(ctx, t.q, `SELECT `+stepColumns+` FROM steps WHERE id = ANY ($1)`, stepIDs)
	return task, steps, err
}

func (t opTx) Finalize(ctx context.Context, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, error) {
	ec, d, _, err := finalize(ctx, t.q, taskID, now)
	return ec, d, err
}

func (t opTx) ErrorStepNames(ctx context.Context, taskID int64) ([]string, error) {
	return errorStepNames(ctx, t.q, taskID)
}

// AppendEvents is called by the operator flows last, right before the
// commit (see events.go).
func (t opTx) AppendEvents(ctx context.Context, events []*backends.Event) error {
	if err := appendEvents(ctx, t.q, events); err != nil || len(events) == 0 {
		return err
	}
	*t.w = t.n.note(events, events[0].Time)
	return (*t.w).exec(ctx, t.q)
}
