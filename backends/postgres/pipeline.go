package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
)

// The hot paths — a claim and a step result — are what every step costs,
// so they are written to cross the network as few times as possible:
//
//   - ClaimSteps is ONE statement (claimStepsSQL), in its own implicit
//     transaction: pick and lock, move the steps and write their
//     transitions, start their pending tasks, return the rows with the
//     parents' results.
//   - CompleteStep and FailStep send BEGIN, the fenced write of the step,
//     the lock of its task and the execution context in ONE pipeline (a pgx
//     batch: the statements still run one after the other, each with its
//     own READ COMMITTED snapshot, so the context is read after the lock is
//     held), then backends.Decide runs in Go and the finalize moves go with
//     COMMIT in a second pipeline.

// retryableTx reports whether PostgreSQL aborted a transaction that may
// simply be run again (a deadlock victim or a serialization failure).
func retryableTx(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// afterStepMove is the rest of a statement whose CTE `moved` updated one
// step (RETURNING *) from `from`: the children's unsatisfied_parents when it
// entered complete or resolved_manually, its transition (reason and
// metadata are SQL expressions over m, the moved row; $3 is now), and the
// written row.
func afterStepMove(from, reason, meta string) string {
	return `, satisfied AS (
	UPDATE steps c SET unsatisfied_parents = c.unsatisfied_parents - 1
	  FROM moved m JOIN edges e ON e.parent_step_id = m.id
	 WHERE c.id = e.child_step_id AND m.state IN ('complete', 'resolved_manually')
), logged AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT m.task_id, m.id, '` + from + `', m.state, ` + reason + `, ` + meta + `, m.transition_count, $3 FROM moved m
)
SELECT ` + stepColumns + ` FROM moved`
}

// completeStepSQL: $1 step, $2 lease token, $3 now, $4 results. The WHERE
// is the fence: the UPDATE locks the row and re-checks state and token, so
// a stale token writes nothing. A cancel requested meanwhile makes the
// step cancelled instead (SET reads the row as it was).
var completeStepSQL = `WITH moved AS (
	UPDATE steps SET
		state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'complete' END,
		updated_at = $3, transition_count = transition_count + 1,
		last_attempted_at = $3, results = $4,
		processed = NOT cancel_requested,
		processed_at = CASE WHEN cancel_requested THEN processed_at ELSE $3 END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false
	 WHERE id = $1 AND state = 'in_progress' AND lease_token = $2
	RETURNING *
)` + afterStepMove("in_progress",
	`CASE WHEN m.state = 'cancelled' THEN 'cancelled while running' ELSE 'completed' END`,
	`format('{"attempt":%s,"lease_token":%s}', m.attempts, m.lease_token)`)

// failStepSQL: $1 step, $2 lease token, $3 now, $4 error JSON, $5 requested
// backoff, $6 retryable, $7 kind. A permanent failure clears retryable.
var failStepSQL = `WITH moved AS (
	UPDATE steps SET
		state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'error' END,
		updated_at = $3, transition_count = transition_count + 1,
		last_attempted_at = $3, error = $4,
		last_failure_at = CASE WHEN cancel_requested THEN last_failure_at ELSE $3 END,
		backoff_request_seconds = CASE WHEN cancel_requested THEN NULL ELSE $5::integer END,
		retryable = CASE WHEN NOT cancel_requested AND NOT $6::boolean THEN false ELSE retryable END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false
	 WHERE id = $1 AND state = 'in_progress' AND lease_token = $2
	RETURNING *
)` + afterStepMove("in_progress",
	`CASE WHEN m.state = 'cancelled' THEN 'cancelled while running' ELSE 'failed: ' || $7::text END`,
	`format('{"attempt":%s,"error":%s,"lease_token":%s}', m.attempts, $4::text, m.lease_token)`)

// finalize's two reads, by step id: the task's row, locked, with whether
// any of its steps is cancelled; then (a later statement, so a snapshot
// taken once the lock is held) its execution context.
const (
	lockStepTaskSQL = `SELECT ` + taskColumns + `,
		EXISTS (SELECT 1 FROM steps WHERE task_id = t.id AND state = 'cancelled')
		FROM tasks t WHERE id = (SELECT task_id FROM steps WHERE id = $1) FOR NO KEY UPDATE`
	// LATERAL, not a sub-select argument: PostgreSQL inlines a SQL function
	// only when its arguments hold no sub-select; otherwise it plans the
	// function's body again on every call, which costs ten times the query.
	stepTaskContextSQL = `SELECT c.task_id, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps,
		c.failed_steps, c.ready_steps, c.blocked_steps, c.execution_status, c.recommended_action,
		c.health_status, c.completion_percentage
		FROM steps s, LATERAL taskerd_task_execution_context(s.task_id, $2) c WHERE s.id = $1`
)

// recordResult writes a step result with its finalize (see the top of this
// file), retrying a transaction PostgreSQL aborted for a deadlock.
func (s *Store) recordResult(ctx context.Context, stepID, token int64, now time.Time, moveSQL string, args ...any) (*backends.RecordResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := s.recordOnce(ctx, stepID, token, now, moveSQL, args)
		if err != nil && attempt < maxTxAttempts && retryableTx(err) {
			continue
		}
		return res, err
	}
}

func (s *Store) recordOnce(ctx context.Context, stepID, token int64, now time.Time, moveSQL string, args []any) (res *backends.RecordResult, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// A connection left inside a transaction is closed by Release, never
	// reused; the ROLLBACK below is only the polite path.
	defer conn.Release()
	defer func() {
		if err != nil && !conn.Conn().IsClosed() && conn.Conn().PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(moveSQL, append([]any{stepID, token, ts(now)}, args...)...)
	b.Queue(lockStepTaskSQL, stepID)
	b.Queue(stepTaskContextSQL, stepID, ts(now))
	br := conn.SendBatch(ctx, b)
	var (
		st           *backends.Step
		task         *backends.Task
		ec           backends.ExecutionContext
		anyCancelled bool
	)
	_, err = br.Exec()
	if err == nil {
		st, err = scanStep(br.QueryRow())
	}
	if err == nil {
		task, err = scanTask(br.QueryRow(), &anyCancelled)
	}
	if err == nil {
		ec, err = scanContext(br.QueryRow())
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) && st == nil {
		// The fence refused (or there is no such step): say which.
		if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
			return nil, rerr
		}
		cur, gerr := getStep(ctx, conn, stepID)
		if gerr != nil {
			return nil, gerr
		}
		return nil, fmt.Errorf("%s (token %d, current %d, state %s): %w",
			backends.StepObject(cur), token, cur.LeaseToken, cur.State, backends.ErrLeaseLost)
	}
	if err != nil {
		return nil, err
	}
	d, task, err := finishFinalize(ctx, conn, task, ec, anyCancelled, now)
	if err != nil {
		return nil, err
	}
	return &backends.RecordResult{Step: st, Task: task, Context: ec, Decision: d}, nil
}

// finishFinalize decides (backends.Decide), and sends the task moves of
// backends.FinalizePath with COMMIT in one pipeline. task is the locked row.
func finishFinalize(ctx context.Context, conn *pgxpool.Conn, task *backends.Task, ec backends.ExecutionContext,
	anyCancelled bool, now time.Time) (backends.FinalizeDecision, *backends.Task, error) {
	d := backends.DecisionNone
	var path []backends.State
	if !task.State.Finished() {
		d = backends.Decide(ec, anyCancelled)
		path = backends.FinalizePath(task.State, d)
	}
	b := &pgx.Batch{}
	meta := metadata(map[string]any{"decision": string(d), "execution_status": ec.ExecutionStatus})
	from := task.State
	for _, to := range path {
		if !backends.TaskTransitionAllowed(from, to) {
			return d, nil, &backends.InvalidTransitionError{Object: backends.TaskObject(task.ID), From: string(from), To: string(to)}
		}
		b.Queue(moveTaskSQL, string(to), ts(now), task.ID, string(from), "finalize: "+ec.ExecutionStatus, meta)
		from = to
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	var err error
	for range path {
		var moved *backends.Task
		if moved, err = scanTask(br.QueryRow()); err != nil {
			break
		}
		task = moved
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d, nil, fmt.Errorf("finalizing task %d: %w", task.ID, err)
	}
	return d, task, nil
}

// createTaskSQL inserts a task, its first transition, its namespace (when
// new), all its steps and edges in one statement: steps come as parallel arrays (one element per
// step, in position order), edges as pairs of positions. $1–$11 the task,
// $12 now; steps $13 name, $14 handler, $15 config, $16 retryable, $17
// retry limit, $18 base, $19 max, $20 timeout, $21 skippable, $22
// unsatisfied parents; edges $23 parent positions, $24 child positions.
// It returns the task's row as written.
const createTaskSQL = `WITH task AS (
	INSERT INTO tasks (namespace, workflow_name, workflow_version, context, initiator, source_system,
		reason, tags, requested_at, idempotency_key, request_hash, state, transition_count, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 1, $12, $12) RETURNING *
), logged AS (
	INSERT INTO transitions (task_id, to_state, reason, sort_key, created_at)
	SELECT id, 'pending', 'created', 1, $12 FROM task
), noted AS (
	INSERT INTO task_namespaces (namespace) VALUES ($1) ON CONFLICT DO NOTHING
), new_steps AS (
	INSERT INTO steps (task_id, name, position, handler, config, retryable, retry_limit,
		backoff_base_us, backoff_max_us, timeout_us, skippable, state, unsatisfied_parents, created_at, updated_at)
	SELECT task.id, u.name, u.ord - 1, u.handler, u.config, u.retryable, u.retry_limit,
		u.base, u.max, u.timeout, u.skippable, 'pending', u.unsatisfied, $12, $12
	  FROM task, unnest($13::text[], $14::text[], $15::text[], $16::boolean[], $17::integer[],
		$18::bigint[], $19::bigint[], $20::bigint[], $21::boolean[], $22::integer[])
		WITH ORDINALITY AS u(name, handler, config, retryable, retry_limit, base, max, timeout, skippable, unsatisfied, ord)
	RETURNING id, position
), new_edges AS (
	INSERT INTO edges (parent_step_id, child_step_id)
	SELECT p.id, c.id
	  FROM unnest($23::integer[], $24::integer[]) AS e(parent, child)
	  JOIN new_steps p ON p.position = e.parent
	  JOIN new_steps c ON c.position = e.child
)
SELECT ` + taskColumns + ` FROM task`

// createTaskPipelined is CreateTask for a request without an idempotency
// key and without bypassed steps, with at least one step (the common case):
// createTaskSQL alone, in its own implicit transaction, so one round trip
// and one commit.
//
// It does not finalize, because finalize cannot move such a task: every
// step is pending with no attempt, so no step is complete (not
// all_complete), none is in error (not blocked_by_failures) and none is
// cancelled, and backends.Decide then answers continue, which leaves a
// pending task where it is. TestCreateNeedsNoFinalize in backendtest holds
// the stores to that.
func (s *Store) createTaskPipelined(ctx context.Context, p *backends.CreateTaskParams) (*backends.Task, error) {
	n := len(p.Steps)
	var (
		names, handlers, configs = make([]string, n), make([]string, n), make([]*string, n)
		retryable, skippable     = make([]bool, n), make([]bool, n)
		limits, unsatisfied      = make([]int32, n), make([]int32, n)
		bases, maxes, timeouts   = make([]int64, n), make([]int64, n), make([]int64, n)
		parents, children        []int32
	)
	positions := make(map[string]int32, n)
	for i, ns := range p.Steps {
		if _, dup := positions[ns.Name]; dup {
			return nil, fmt.Errorf("step %q given twice", ns.Name)
		}
		for _, parent := range ns.Parents {
			pos, ok := positions[parent]
			if !ok {
				return nil, fmt.Errorf("step %q depends on %q, which is not an earlier step", ns.Name, parent)
			}
			parents, children = append(parents, pos), append(children, int32(i))
		}
		positions[ns.Name] = int32(i)
		names[i], handlers[i] = ns.Name, ns.Handler
		if len(ns.Config) > 0 {
			c := string(ns.Config)
			configs[i] = &c
		}
		retryable[i], skippable[i], limits[i] = ns.Retryable, ns.Skippable, int32(ns.RetryLimit)
		bases[i], maxes[i], timeouts[i] = ns.BackoffBase.Microseconds(), ns.BackoffMax.Microseconds(), ns.Timeout.Microseconds()
		unsatisfied[i] = int32(len(ns.Parents)) // nothing is bypassed here
	}
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	taskCtx := p.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage(`{}`)
	}
	now := ts(p.Now)

	return scanTask(s.pool.QueryRow(ctx, createTaskSQL, p.Namespace, p.WorkflowName, p.WorkflowVersion, string(taskCtx), p.Initiator,
		p.SourceSystem, p.Reason, tags, now, nil, p.RequestHash, now,
		names, handlers, configs, retryable, limits, bases, maxes, timeouts, skippable, unsatisfied,
		parents, children))
}
