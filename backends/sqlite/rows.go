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

// querier is what both *sql.DB and *sql.Tx offer, so that reads can run on
// the reader pool or inside a write transaction (finalize reads the context
// in the transaction of the write it follows).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type scanner interface{ Scan(dest ...any) error }

// Times are unix microseconds UTC.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullInt(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	i := int(v.Int64)
	return &i
}

func nullJSON(v sql.NullString) json.RawMessage {
	if !v.Valid {
		return nil
	}
	return json.RawMessage(v.String)
}

// jsonOrNil stores an empty message as NULL.
func jsonOrNil(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const taskColumns = `id, namespace, workflow_name, workflow_version, context, initiator, source_system,
	reason, tags, requested_at, coalesce(idempotency_key, ''), request_hash, state, created_at, updated_at`

// scanTask reads taskColumns, then any extra columns into extra.
func scanTask(sc scanner, extra ...any) (*backends.Task, error) {
	var (
		t                     backends.Task
		ctxJSON, tags         string
		requested, created, u int64
		state                 string
	)
	dest := append([]any{&t.ID, &t.Namespace, &t.WorkflowName, &t.WorkflowVersion, &ctxJSON, &t.Initiator,
		&t.SourceSystem, &t.Reason, &tags, &requested, &t.IdempotencyKey, &t.RequestHash, &state,
		&created, &u}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	t.Context = json.RawMessage(ctxJSON)
	if err := json.Unmarshal([]byte(tags), &t.Tags); err != nil {
		return nil, fmt.Errorf("task %d tags: %w", t.ID, err)
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	t.RequestedAt, t.CreatedAt, t.UpdatedAt = fromMicros(requested), fromMicros(created), fromMicros(u)
	t.State = backends.State(state)
	return &t, nil
}

const stepColumns = `id, task_id, name, position, handler, config, retryable, retry_limit,
	backoff_base_us, backoff_max_us, timeout_us, skippable, state, attempts, started_at,
	last_attempted_at, last_failure_at, backoff_request_seconds, results, error, processed,
	processed_at, coalesce(lease_owner, ''), lease_expires_at, lease_token, cancel_requested,
	created_at, updated_at`

func scanStep(sc scanner) (*backends.Step, error) {
	var (
		s                                        backends.Step
		config, results, errJSON                 sql.NullString
		base, maxB, timeout, created, updated    int64
		started, lastAttempt, lastFailure        sql.NullInt64
		backoffReq, processedAt, leaseExpires    sql.NullInt64
		state                                    string
		retryable, skippable, processed, cancelR int
	)
	if err := sc.Scan(&s.ID, &s.TaskID, &s.Name, &s.Position, &s.Handler, &config, &retryable,
		&s.RetryLimit, &base, &maxB, &timeout, &skippable, &state, &s.Attempts, &started,
		&lastAttempt, &lastFailure, &backoffReq, &results, &errJSON, &processed, &processedAt,
		&s.LeaseOwner, &leaseExpires, &s.LeaseToken, &cancelR, &created, &updated); err != nil {
		return nil, err
	}
	s.Config, s.Results, s.Error = nullJSON(config), nullJSON(results), nullJSON(errJSON)
	s.Retryable, s.Skippable, s.Processed, s.CancelRequested = retryable != 0, skippable != 0, processed != 0, cancelR != 0
	s.BackoffBase = time.Duration(base) * time.Microsecond
	s.BackoffMax = time.Duration(maxB) * time.Microsecond
	s.Timeout = time.Duration(timeout) * time.Microsecond
	s.State = backends.State(state)
	s.StartedAt, s.LastAttemptedAt, s.LastFailureAt = nullTime(started), nullTime(lastAttempt), nullTime(lastFailure)
	s.BackoffRequestSeconds = nullInt(backoffReq)
	s.ProcessedAt, s.LeaseExpiresAt = nullTime(processedAt), nullTime(leaseExpires)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &s, nil
}

func getTask(ctx context.Context, q querier, id int64) (*backends.Task, error) {
	t, err := scanTask(q.QueryRowContext(ctx, getTaskSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %d: %w", id, backends.ErrNotFound)
	}
	return t, err
}

func getStep(ctx context.Context, q querier, id int64) (*backends.Step, error) {
	s, err := scanStep(q.QueryRowContext(ctx, getStepSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("step %d: %w", id, backends.ErrNotFound)
	}
	return s, err
}

func taskExists(ctx context.Context, q querier, id int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM tasks WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("task %d: %w", id, backends.ErrNotFound)
	}
	return err
}

func listSteps(ctx context.Context, q querier, taskID int64) ([]*backends.Step, error) {
	return queryAll(ctx, q, scanStep, `SELECT `+stepColumns+` FROM steps WHERE task_id = ? ORDER BY position`, taskID)
}

// metadata marshals a transition's metadata; nil stays NULL.
func metadata(m map[string]any) any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // maps of plain values always marshal
	}
	return string(b)
}

// insertTransition appends one transition row for a task (stepID 0) or a
// step, numbered after the object's last one. Which row is the most recent
// is derived when the trail is read (migration 0003).
func insertTransition(ctx context.Context, tx querier, taskID, stepID int64, from, to backends.State,
	reason string, meta map[string]any, now time.Time) error {
	var fromArg any
	if from != "" {
		fromArg = string(from)
	}
	var err error
	if stepID == 0 {
		_, err = tx.ExecContext(ctx, insertTaskTransitionSQL,
			taskID, fromArg, string(to), reason, metadata(meta), micros(now))
	} else {
		_, err = tx.ExecContext(ctx, insertStepTransitionSQL,
			taskID, stepID, fromArg, string(to), reason, metadata(meta), micros(now))
	}
	if err != nil {
		return fmt.Errorf("writing transition %s -> %s: %w", from, to, err)
	}
	return nil
}

// moveTask changes a task's state and writes its transition, refusing what
// SEMANTICS §2 does not allow.
func moveTask(ctx context.Context, tx querier, taskID int64, from, to backends.State, reason string,
	meta map[string]any, now time.Time) error {
	if !backends.TaskTransitionAllowed(from, to) {
		return &backends.InvalidTransitionError{Object: backends.TaskObject(taskID), From: string(from), To: string(to)}
	}
	res, err := tx.ExecContext(ctx, moveTaskSQL,
		string(to), micros(now), taskID, string(from))
	if err != nil {
		return fmt.Errorf("moving task %d to %s: %w", taskID, to, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("moving task %d to %s: it is no longer %s", taskID, to, from)
	}
	return insertTransition(ctx, tx, taskID, 0, from, to, reason, meta, now)
}

// moveStep changes a step's state and writes its transition; the caller
// updates the step's other columns in the same transaction.
func moveStep(ctx context.Context, tx querier, s *backends.Step, to backends.State, reason string,
	meta map[string]any, now time.Time) error {
	_, err := moveStepWith(ctx, tx, s, to, reason, meta, now, "")
	return err
}

// moveStepWith is moveStep that, when set is not empty, also writes set's
// assignments (with args for their parameters) in the same UPDATE, one
// write of the row instead of two, and returns the row as written.
func moveStepWith(ctx context.Context, tx querier, s *backends.Step, to backends.State, reason string,
	meta map[string]any, now time.Time, set string, args ...any) (*backends.Step, error) {
	if !backends.StepTransitionAllowed(s.State, to) {
		return nil, &backends.InvalidTransitionError{Object: backends.StepObject(s), From: string(s.State), To: string(to)}
	}
	var written *backends.Step
	if set == "" {
		res, err := tx.ExecContext(ctx, moveStepSQL,
			string(to), micros(now), s.ID, string(s.State))
		if err != nil {
			return nil, fmt.Errorf("moving %s to %s: %w", backends.StepObject(s), to, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil, fmt.Errorf("moving %s to %s: it is no longer %s", backends.StepObject(s), to, s.State)
		}
	} else {
		all := make([]any, 0, len(args)+4)
		all = append(append(append(all, string(to), micros(now)), args...), s.ID, string(s.State))
		var err error
		written, err = scanStep(tx.QueryRowContext(ctx, moveStepWithSQL(set), all...))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("moving %s to %s: it is no longer %s", backends.StepObject(s), to, s.State)
		}
		if err != nil {
			return nil, fmt.Errorf("moving %s to %s: %w", backends.StepObject(s), to, err)
		}
	}
	moved := *s
	moved.State = to
	if err := recordMove(ctx, tx, &moved, s.State, reason, meta, now); err != nil {
		return nil, err
	}
	s.State = to
	return written, nil
}

// recordMove writes what follows a step's move from `from` to s.State,
// whichever statement moved it: its transition and, when it entered
// complete or resolved_manually, its children's count of unsatisfied
// parents.
func recordMove(ctx context.Context, tx querier, s *backends.Step, from backends.State, reason string,
	meta map[string]any, now time.Time) error {
	if err := insertTransition(ctx, tx, s.TaskID, s.ID, from, s.State, reason, meta, now); err != nil {
		return err
	}
	// Keep the children's unsatisfied_parents exact (migration 0002):
	// moveStepWith and CompleteStep are the only places a step enters
	// complete or resolved_manually, and neither state is ever left.
	if s.State.Satisfies() {
		if _, err := tx.ExecContext(ctx, satisfyChildrenSQL, s.ID); err != nil {
			return fmt.Errorf("moving %s to %s: counting its children's parents: %w", backends.StepObject(s), s.State, err)
		}
	}
	return nil
}
