package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// Times: timestamptz holds microseconds; the Store contract asks callers
// for times already truncated, and a store to truncate anything finer.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func jsonOf(p *string) json.RawMessage {
	if p == nil {
		return nil
	}
	return json.RawMessage(*p)
}

// jsonOrNil stores an empty message as NULL.
func jsonOrNil(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

const taskColumns = `id, namespace, workflow_name, workflow_version, context, initiator, source_system,
	reason, tags, requested_at, coalesce(idempotency_key, ''), request_hash, state, created_at, updated_at`

// scanTask reads taskColumns, then any extra columns into extra.
func scanTask(sc pgx.Row, extra ...any) (*backends.Task, error) {
	var (
		t       backends.Task
		ctxJSON string
		state   string
	)
	dest := append([]any{&t.ID, &t.Namespace, &t.WorkflowName, &t.WorkflowVersion, &ctxJSON, &t.Initiator,
		&t.SourceSystem, &t.Reason, &t.Tags, &t.RequestedAt, &t.IdempotencyKey, &t.RequestHash, &state,
		&t.CreatedAt, &t.UpdatedAt}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	t.Context = json.RawMessage(ctxJSON)
	if t.Tags == nil {
		t.Tags = []string{}
	}
	t.State = backends.State(state)
	return &t, nil
}

const stepColumns = `id, task_id, name, position, handler, config, retryable, retry_limit,
	backoff_base_us, backoff_max_us, timeout_us, skippable, state, attempts, started_at,
	last_attempted_at, last_failure_at, backoff_request_seconds, results, error, processed,
	processed_at, coalesce(lease_owner, ''), lease_expires_at, lease_token, cancel_requested,
	created_at, updated_at`

func scanStep(sc pgx.Row) (*backends.Step, error) {
	var (
		s                        backends.Step
		config, results, errJSON *string
		base, maxB, timeout      int64
		state                    string
	)
	if err := sc.Scan(&s.ID, &s.TaskID, &s.Name, &s.Position, &s.Handler, &config, &s.Retryable,
		&s.RetryLimit, &base, &maxB, &timeout, &s.Skippable, &state, &s.Attempts, &s.StartedAt,
		&s.LastAttemptedAt, &s.LastFailureAt, &s.BackoffRequestSeconds, &results, &errJSON, &s.Processed,
		&s.ProcessedAt, &s.LeaseOwner, &s.LeaseExpiresAt, &s.LeaseToken, &s.CancelRequested,
		&s.CreatedAt, &s.UpdatedAt); err != nil {
		return nil, err
	}
	s.Config, s.Results, s.Error = jsonOf(config), jsonOf(results), jsonOf(errJSON)
	s.BackoffBase = time.Duration(base) * time.Microsecond
	s.BackoffMax = time.Duration(maxB) * time.Microsecond
	s.Timeout = time.Duration(timeout) * time.Microsecond
	s.State = backends.State(state)
	return &s, nil
}

func getTask(ctx context.Context, q querier, id int64) (*backends.Task, error) {
	t, err := scanTask(q.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %d: %w", id, backends.ErrNotFound)
	}
	return t, err
}

// lockTask reads a task and locks its row until the transaction ends.
func lockTask(ctx context.Context, q querier, id int64) (*backends.Task, error) {
	t, err := scanTask(q.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 FOR NO KEY UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %d: %w", id, backends.ErrNotFound)
	}
	return t, err
}

func getStep(ctx context.Context, q querier, id int64) (*backends.Step, error) {
	s, err := scanStep(q.QueryRow(ctx, `SELECT `+stepColumns+` FROM steps WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("step %d: %w", id, backends.ErrNotFound)
	}
	return s, err
}

// lockStep reads a step and locks its row until the transaction ends.
func lockStep(ctx context.Context, q querier, id int64) (*backends.Step, error) {
	s, err := scanStep(q.QueryRow(ctx, `SELECT `+stepColumns+` FROM steps WHERE id = $1 FOR NO KEY UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("step %d: %w", id, backends.ErrNotFound)
	}
	return s, err
}

func taskExists(ctx context.Context, q querier, id int64) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM tasks WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("task %d: %w", id, backends.ErrNotFound)
	}
	return err
}

// querySteps runs a query selecting stepColumns and scans every row.
func querySteps(ctx context.Context, q querier, query string, args ...any) ([]*backends.Step, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var steps []*backends.Step
	for rows.Next() {
		s, err := scanStep(rows)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, rows.Err()
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

// moveTaskSQL changes a task's state and writes its transition in one
// statement: the UPDATE bumps transition_count, which numbers the new
// transition row (and makes it the most recent: see ListTransitions).
// $1 to, $2 now, $3 task id, $4 from, $5 reason, $6 metadata.
const moveTaskSQL = `WITH moved AS (
	UPDATE tasks SET state = $1, updated_at = $2, transition_count = transition_count + 1
	 WHERE id = $3 AND state = $4
	RETURNING *
), logged AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT m.id, NULL, $4, $1, $5, $6, m.transition_count, $2 FROM moved m
)
SELECT ` + taskColumns + ` FROM moved`

// moveTask changes a task's state and writes its transition, refusing what
// SEMANTICS §2 does not allow. It returns the task's row as written.
func moveTask(ctx context.Context, tx querier, taskID int64, from, to backends.State, reason string,
	meta map[string]any, now time.Time) (*backends.Task, error) {
	if !backends.TaskTransitionAllowed(from, to) {
		return nil, &backends.InvalidTransitionError{Object: backends.TaskObject(taskID), From: string(from), To: string(to)}
	}
	t, err := scanTask(tx.QueryRow(ctx, moveTaskSQL, string(to), ts(now), taskID, string(from), reason, metadata(meta)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("moving task %d to %s: it is no longer %s", taskID, to, from)
	}
	if err != nil {
		return nil, fmt.Errorf("moving task %d to %s: %w", taskID, to, err)
	}
	return t, nil
}

// moveStepSQL changes a step's state, writes its transition and, when the
// step enters complete or resolved_manually (terminal states, so once per
// step), takes one from each child's unsatisfied_parents — one statement.
// $1 to, $2 now, $3 step id, $4 from, $5 reason, $6 metadata; set (see
// resolveSet and retrySet) may assign more columns with parameters from $7.
func moveStepSQL(set string) string {
	if set != "" {
		set = ", " + set
	}
	return `WITH moved AS (
	UPDATE steps SET state = $1, updated_at = $2, transition_count = transition_count + 1` + set + `
	 WHERE id = $3 AND state = $4
	RETURNING *
), satisfied AS (
	UPDATE steps c SET unsatisfied_parents = c.unsatisfied_parents - 1
	  FROM moved m JOIN edges e ON e.parent_step_id = m.id
	 WHERE c.id = e.child_step_id AND m.state IN ('complete', 'resolved_manually')
), logged AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT m.task_id, m.id, $4, $1, $5, $6, m.transition_count, $2 FROM moved m
)
SELECT ` + stepColumns + ` FROM moved`
}

// What operator actions write to a step together with its move.
const (
	// $7 results.
	resolveSet = `results = $7`
	// (none) an operator's retry.
	retrySet = `retry_limit = greatest(retry_limit, attempts + 1), retryable = true,
		backoff_request_seconds = NULL`
	// (none) a claim undone before its handler started.
	releaseSet = `attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL`
)

// moveStep changes a step's state and writes its transition, refusing what
// SEMANTICS §2 does not allow; set and args write more columns in the same
// UPDATE. It returns the row as written and sets s.State.
func moveStep(ctx context.Context, tx querier, s *backends.Step, to backends.State, reason string,
	meta map[string]any, now time.Time, set string, args ...any) (*backends.Step, error) {
	if !backends.StepTransitionAllowed(s.State, to) {
		return nil, &backends.InvalidTransitionError{Object: backends.StepObject(s), From: string(s.State), To: string(to)}
	}
	all := append([]any{string(to), ts(now), s.ID, string(s.State), reason, metadata(meta)}, args...)
	written, err := scanStep(tx.QueryRow(ctx, moveStepSQL(set), all...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("moving %s to %s: it is no longer %s", backends.StepObject(s), to, s.State)
	}
	if err != nil {
		return nil, fmt.Errorf("moving %s to %s: %w", backends.StepObject(s), to, err)
	}
	s.State = to
	return written, nil
}
