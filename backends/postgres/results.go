package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
)

// Step results are written in batches. On PostgreSQL a step result costs
// far more in statements than in data: BEGIN, the fenced write, the task's
// lock, its execution context, COMMIT, each parsed, planned and executed,
// with two network round trips and a commit. With sixteen workers finishing
// steps every few milliseconds, what each of these costs is paid per
// batch instead of per step:
//
//   - The first caller of CompleteStep or FailStep to find no batch being
//     written leads: it takes every result waiting (up to maxResultBatch),
//     writes them in one transaction, answers each caller, and goes on
//     with whatever queued meanwhile until its own result is answered; then
//     it hands the lead to the oldest waiting caller (ledBatches). No
//     goroutine runs in the background, and a lone result waits for
//     nobody.
//   - The transaction is two pipelines. The first: BEGIN; the fenced moves
//     of all the batch's steps, one statement per kind (completeStepsSQL,
//     failStepsSQL); the lock of their tasks in id order (lockTasksSQL); and,
//     a later statement, hence a snapshot taken once every lock is held,
//     their execution contexts (taskContextsOfStepsSQL). Then
//     backends.Decide runs in Go for each task, and the second pipeline
//     carries the tasks' finalize moves with COMMIT.
//   - A batch holds at most one result per task, because finalize decides
//     once per task and each result must carry the decision its own write
//     led to. Two results of one task found in one batch (the moves return
//     each step's task) roll it back, and it is written again in rounds of
//     one result per task, in arrival order: the second sees the first.
//   - A deadlock victim is run again; any other failure of a batch of
//     several is written again one result at a time, so that each caller
//     gets its own result's error and not a neighbour's.
//
// Every caller is answered only after COMMIT: an acknowledged result is
// durable, as when each result had its own transaction.

// maxResultBatch bounds the results written in one transaction.
const maxResultBatch = 64

// completeStepsSQL moves steps from in_progress to complete: $1 step ids,
// $2 lease tokens, $3 instants, $4 results (parallel arrays). The WHERE is
// the fence: the UPDATE locks each row and re-checks state and token, so a
// stale token writes nothing. A cancel requested while the step ran makes
// it cancelled instead (SET reads the row as it was): its results and
// LastAttemptedAt are still stored, but Processed stays false, since the
// results will never be used.
var completeStepsSQL = `WITH moved AS (
	UPDATE steps s SET
		state = CASE WHEN s.cancel_requested THEN 'cancelled' ELSE 'complete' END,
		updated_at = ` + reqAt + `, transition_count = s.transition_count + 1,
		last_attempted_at = ` + reqAt + `, results = ` + req(4, "text") + `,
		processed = NOT s.cancel_requested,
		processed_at = CASE WHEN s.cancel_requested THEN s.processed_at ELSE ` + reqAt + ` END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false
	 WHERE ` + reqFence + `
	RETURNING s.*
)` + afterStepsMoved(
	`CASE WHEN m.state = 'cancelled' THEN 'cancelled while running' ELSE 'completed' END`,
	`format('{"attempt":%s,"lease_token":%s}', m.attempts, m.lease_token)`)

// failStepsSQL moves steps from in_progress to error: $1 step ids, $2
// lease tokens, $3 instants, $4 errors (JSON), $5 requested backoffs
// (NULL for none), $6 retryable, $7 error kinds. A permanent failure clears
// retryable. When a cancel was requested while the step ran, it becomes
// cancelled: the error (as kind cancelled, not retryable: whatever the
// handler said, the step stopped because it was cancelled) and
// LastAttemptedAt are stored, but LastFailureAt is not (it is the time the
// step last entered error) and neither is the requested backoff.
var failStepsSQL = `WITH moved AS (
	UPDATE steps s SET
		state = CASE WHEN s.cancel_requested THEN 'cancelled' ELSE 'error' END,
		updated_at = ` + reqAt + `, transition_count = s.transition_count + 1,
		last_attempted_at = ` + reqAt + `,
		error = CASE WHEN s.cancel_requested
		             THEN (` + req(4, "text") + `::jsonb || '{"kind": "cancelled", "retryable": false}')::text
		             ELSE ` + req(4, "text") + ` END,
		last_failure_at = CASE WHEN s.cancel_requested THEN s.last_failure_at ELSE ` + reqAt + ` END,
		backoff_request_seconds = CASE WHEN s.cancel_requested THEN NULL ELSE ` + req(5, "integer") + ` END,
		retryable = CASE WHEN NOT s.cancel_requested AND NOT ` + req(6, "boolean") + ` THEN false ELSE s.retryable END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false
	 WHERE ` + reqFence + `
	RETURNING s.*, ` + req(7, "text") + ` AS kind
)` + afterStepsMoved(
	`CASE WHEN m.state = 'cancelled' THEN 'cancelled while running' ELSE 'failed: ' || m.kind END`,
	`format('{"attempt":%s,"error":%s,"lease_token":%s}', m.attempts, m.error, m.lease_token)`)

// req is, for the step s being updated, the element of parameter array
// $n (of type typ) for its request: the one at its id's first position in
// $1. The UPDATEs find their rows by id = ANY ($1), so that the plan is an
// index scan of the primary key whatever the statistics say (a join with
// unnest() is planned as a hash join over the whole table when they are
// missing, as in a new database). A step id given twice would be matched
// to its first request only: writeBatch never sends one twice.
func req(n int, typ string) string {
	return fmt.Sprintf("($%d::%s[])[array_position($1::bigint[], s.id)]", n, typ)
}

var (
	reqAt    = req(3, "timestamptz")
	reqFence = `s.id = ANY ($1::bigint[]) AND s.state = 'in_progress' AND s.lease_token = ` + req(2, "bigint")
)

// afterStepsMoved is the rest of a statement whose CTE `moved` moved steps
// out of in_progress (RETURNING the rows as written): the children's
// unsatisfied_parents for those that entered complete (counted, since two
// parents of one child may move together; ids in an array, for an index
// scan as above), their transitions (reason and
// metadata are SQL expressions over m, a moved row, written at the row's
// updated_at), and the written rows.
func afterStepsMoved(reason, meta string) string {
	return `, satisfied AS (
	UPDATE steps c SET unsatisfied_parents = c.unsatisfied_parents - (
		SELECT count(*) FROM moved m JOIN edges e ON e.parent_step_id = m.id
		 WHERE e.child_step_id = c.id AND m.state IN ('complete', 'resolved_manually'))
	 WHERE c.id = ANY (ARRAY(
		SELECT e.child_step_id FROM moved m JOIN edges e ON e.parent_step_id = m.id
		 WHERE m.state IN ('complete', 'resolved_manually')))
), logged AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT m.task_id, m.id, 'in_progress', m.state, ` + reason + `, ` + meta + `, m.transition_count, m.updated_at
	  FROM moved m
)
SELECT ` + stepColumns + ` FROM moved`
}

// lockTasksSQL locks the tasks of the steps $1, in id order (so that two
// batches wait for each other rather than deadlock), and returns them. Each
// step's task is looked up by the step's id in a scalar subquery: as a
// join (or an IN), a plan made while steps was small read all of it on
// every batch (TestPlansMadeYoungStayCheap).
const lockTasksSQL = `SELECT ` + taskColumns + ` FROM tasks
	 WHERE id = ANY (ARRAY(SELECT (SELECT task_id FROM steps WHERE id = x) FROM unnest($1::bigint[]) x))
	 ORDER BY id FOR NO KEY UPDATE`

// taskContextsOfStepsSQL is the execution context (SEMANTICS §4) of the
// tasks of the steps $1, each at the latest of those steps' instants $2
// (scanContext's columns). LATERAL over a plain
// column: PostgreSQL inlines the SQL function only when its arguments hold
// no sub-select; otherwise it plans the function's body on every call. The
// steps are read by id in a LATERAL lookup (OFFSET 0 keeps it one), for
// the reason lockTasksSQL gives.
const taskContextsOfStepsSQL = `SELECT c.task_id, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps,
	c.failed_steps, c.ready_steps, c.blocked_steps, c.waiting_steps, c.execution_status, c.recommended_action,
	c.health_status, c.completion_percentage
	FROM (SELECT s.task_id, max(r.at) AS at
	        FROM unnest($1::bigint[], $2::timestamptz[]) AS r(id, at),
	             LATERAL (SELECT task_id FROM steps WHERE id = r.id OFFSET 0) s
	       GROUP BY s.task_id) q,
	     LATERAL taskerd_task_execution_context(q.task_id, q.at) c`

// keyLookupsSQL tells the planner, for the rest of the transaction, that
// every row is to be found through an index, and to use the generic plan:
// the result batch's statements and the claim read a few rows by key.
//
//   - Their plans are made once per connection and kept (generic plans),
//     and a plan made while a table is small (a new database: no
//     statistics yet, a few pages) reads all of it with a sequential scan
//     or a hash join, which stays in the cached plan as the table grows,
//     until autovacuum's next ANALYZE. Measured: the lock of the tasks and
//     the contexts took 4–5 ms each at 8,000 tasks with such plans, against
//     0.1 ms with index scans.
//   - With array parameters, PostgreSQL's plan cache often judged a custom
//     plan cheaper than the generic one and planned the statement again on
//     each call: the contexts statement was planned on a quarter of its
//     calls, 1 ms each, four times its execution time
//     (pg_stat_statements, track_planning).
const keyLookupsSQL = `SELECT set_config('enable_seqscan', 'off', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
	set_config('plan_cache_mode', 'force_generic_plan', true)`

// rollbackOnError ends, after a failure, the transaction a batch opened on
// conn, if it is still open. (A connection left inside a transaction is
// closed by Release, never reused; this is only the polite path.)
func rollbackOnError(ctx context.Context, conn *pgxpool.Conn, err *error) {
	if *err != nil && !conn.Conn().IsClosed() && conn.Conn().PgConn().TxStatus() != 'I' {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
}

// resultReq is one CompleteStep or FailStep call.
type resultReq struct {
	complete bool
	stepID   int64
	token    int64
	now      time.Time
	results  string // complete: JSON
	// fail:
	errJSON   string
	backoff   *int32
	retryable bool
	kind      string
	// custom: the handler's events, written before the step's own.
	custom []backends.CustomEvent

	resp resultResp // the outcome, set by the batch that wrote it
}

type resultResp struct {
	rr  *backends.RecordResult
	err error
	// events: what the batch wrote for this request, numbered, for the
	// caller's sink.
	events []*backends.Event
}

// record writes r in a batch (see the top of this file) and returns its
// outcome once the batch committed, and hands r's events (and only r's) to
// the sink of ctx.
func (s *Store) record(ctx context.Context, r *resultReq) (*backends.RecordResult, error) {
	resp := s.recordResp(ctx, r)
	if resp.err != nil {
		return nil, resp.err
	}
	sinkEvents(ctx, resp.events)
	return resp.rr, nil
}

// recordResp is record without the sink.
func (s *Store) recordResp(ctx context.Context, r *resultReq) resultResp {
	s.results.do(ctx, r, maxResultBatch, s.writeBatch)
	return r.resp
}

// writeBatch writes the batch and sets the outcome of every request in it.
func (s *Store) writeBatch(ctx context.Context, batch []*resultReq) {
	// A step given twice (a stale duplicate, say) is matched by the moves
	// to one request only: each copy goes in a round of its own.
	if rounds := splitRounds(batch, func(r *resultReq) (int64, bool) { return r.stepID, true }); len(rounds) > 1 {
		for _, round := range rounds {
			s.writeBatch(ctx, round)
		}
		return
	}
	for attempt := 1; ; attempt++ {
		answers, taskOf, err := s.writeBatchOnce(ctx, batch)
		switch {
		case err == nil:
			for i, r := range batch {
				r.resp = answers[i]
			}
			return
		case errors.Is(err, errSameTask):
			for _, round := range splitRounds(batch, func(r *resultReq) (int64, bool) {
				t, ok := taskOf[r.stepID]
				return t, ok
			}) {
				s.writeBatch(ctx, round)
			}
			return
		case retryableTx(err) && attempt < maxTxAttempts:
			continue
		case len(batch) > 1:
			for _, r := range batch {
				s.writeBatch(ctx, []*resultReq{r})
			}
			return
		default:
			batch[0].resp = resultResp{err: err}
			return
		}
	}
}

// errSameTask: the batch held two results of one task (rolled back).
var errSameTask = errors.New("two results of one task in a batch")

// splitRounds splits a batch into rounds holding at most one request per
// key, keeping arrival order among the requests of a key; requests without
// a key conflict with nothing.
func splitRounds[R any](batch []R, key func(R) (int64, bool)) [][]R {
	var rounds [][]R
	seen := map[int64]int{} // key -> requests of it placed so far
	for _, r := range batch {
		k := 0
		if id, ok := key(r); ok {
			k = seen[id]
			seen[id]++
		}
		if k == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[k] = append(rounds[k], r)
	}
	return rounds
}

// writeBatchOnce writes the batch in one transaction and returns each
// request's answer, in batch order. It also returns the task of every step
// it moved, so that a batch refused with errSameTask can be split.
func (s *Store) writeBatchOnce(ctx context.Context, batch []*resultReq) (answers []resultResp, taskOf map[int64]int64, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	defer rollbackOnError(ctx, conn, &err)

	var (
		ids, cIDs, cTokens, fIDs, fTokens []int64
		nows, cNows, fNows                []time.Time
		cResults, fErrors, fKinds         []string
		fBackoffs                         []*int32
		fRetryable                        []bool
	)
	for _, r := range batch {
		ids, nows = append(ids, r.stepID), append(nows, ts(r.now))
		if r.complete {
			cIDs, cTokens, cNows = append(cIDs, r.stepID), append(cTokens, r.token), append(cNows, ts(r.now))
			cResults = append(cResults, r.results)
		} else {
			fIDs, fTokens, fNows = append(fIDs, r.stepID), append(fTokens, r.token), append(fNows, ts(r.now))
			fErrors, fBackoffs = append(fErrors, r.errJSON), append(fBackoffs, r.backoff)
			fRetryable, fKinds = append(fRetryable, r.retryable), append(fKinds, r.kind)
		}
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(keyLookupsSQL)
	stepMoves := 0 // move statements queued
	if len(cIDs) > 0 {
		b.Queue(completeStepsSQL, cIDs, cTokens, cNows, cResults)
		stepMoves++
	}
	if len(fIDs) > 0 {
		b.Queue(failStepsSQL, fIDs, fTokens, fNows, fErrors, fBackoffs, fRetryable, fKinds)
		stepMoves++
	}
	b.Queue(lockTasksSQL, ids)
	b.Queue(taskContextsOfStepsSQL, ids, nows)

	moved := map[int64]*backends.Step{}
	tasks := map[int64]*backends.Task{}
	contexts := map[int64]backends.ExecutionContext{}
	taskOf = map[int64]int64{}
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for range stepMoves {
			steps, err := collect(scanStep)(br.Query())
			if err != nil {
				return err
			}
			for _, st := range steps {
				moved[st.ID] = st
			}
		}
		locked, err := collect(func(r pgx.Row) (*backends.Task, error) { return scanTask(r) })(br.Query())
		if err != nil {
			return err
		}
		for _, t := range locked {
			tasks[t.ID] = t
		}
		ecs, err := collect(scanContext)(br.Query())
		if err != nil {
			return err
		}
		for _, ec := range ecs {
			contexts[ec.TaskID] = ec
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	perTask := map[int64]int{}
	for id, st := range moved {
		taskOf[id] = st.TaskID
		perTask[st.TaskID]++
	}
	for _, n := range perTask {
		if n > 1 {
			return nil, taskOf, errSameTask
		}
	}

	// Finalize (SEMANTICS §5.5) each task a result moved a step of.
	type final struct {
		d    backends.FinalizeDecision
		path []backends.State
		now  time.Time
		// before: the task's state before the batch; after: once finalized.
		before, after backends.State
	}
	finals := map[int64]*final{}
	var order []int64 // tasks in batch order
	for _, r := range batch {
		st := moved[r.stepID]
		if st == nil {
			continue
		}
		task, ec := tasks[st.TaskID], contexts[st.TaskID]
		if task == nil || ec.TaskID == 0 {
			return nil, nil, fmt.Errorf("finalizing task %d: its row or context is missing", st.TaskID)
		}
		f := &final{d: backends.DecisionNone, now: r.now, before: task.State, after: task.State}
		if !task.State.Finished() {
			f.d = backends.Decide(ec, anyCancelled(ec))
			f.path = backends.FinalizePath(task.State, f.d)
			if len(f.path) > 0 {
				f.after = f.path[len(f.path)-1]
			}
		}
		finals[task.ID] = f
		order = append(order, task.ID)
	}

	// The events of each request (backends.RecordEvents), from what the
	// batch wrote and is about to write: the steps' rows, and their tasks
	// as finalize leaves them. A task that goes to error names its steps
	// in error (read here, after the moves: rare, so not in every batch).
	var toError []int64
	for _, id := range order {
		if f := finals[id]; f.after == backends.StateError && f.before != backends.StateError {
			toError = append(toError, id)
		}
	}
	errorSteps, err := errorStepNamesOf(ctx, conn, toError)
	if err != nil {
		return nil, nil, err
	}
	rrs := make([]*backends.RecordResult, len(batch))
	perReq := make([][]*backends.Event, len(batch))
	var events []*backends.Event // the batch's, in batch order
	for i, r := range batch {
		st := moved[r.stepID]
		if st == nil {
			continue
		}
		f := finals[st.TaskID]
		after := *tasks[st.TaskID]
		after.State = f.after
		rrs[i] = &backends.RecordResult{Step: st, Task: &after, Context: contexts[st.TaskID], Decision: f.d,
			TaskBefore: f.before, ErrorSteps: errorSteps[st.TaskID]}
		perReq[i] = backends.RecordEvents(rrs[i], r.custom, r.now, backends.EventStepFailed)
		events = append(events, perReq[i]...)
	}

	// The finalize moves, then the events (numbered last: see events.go),
	// then COMMIT.
	b = &pgx.Batch{}
	var moves []int64 // task of each queued move, in order
	for _, id := range order {
		f, task, ec := finals[id], tasks[id], contexts[id]
		meta := metadata(map[string]any{"decision": string(f.d), "execution_status": ec.ExecutionStatus})
		from := task.State
		for _, to := range f.path {
			if !backends.TaskTransitionAllowed(from, to) {
				return nil, nil, &backends.InvalidTransitionError{Object: backends.TaskObject(id), From: string(from), To: string(to)}
			}
			b.Queue(moveTaskSQL, string(to), ts(f.now), id, string(from), "finalize: "+ec.ExecutionStatus, meta)
			moves = append(moves, id)
			from = to
		}
	}
	if err := queueEvents(b, events); err != nil {
		return nil, nil, err
	}
	w := s.wakes.note(events, batch[0].now)
	w.queue(b)
	b.Queue("COMMIT")
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for _, id := range moves {
			t, err := scanTask(br.QueryRow())
			if err != nil {
				return fmt.Errorf("finalizing task %d: %w", id, err)
			}
			tasks[id] = t
		}
		if err := readEvents(br, events); err != nil {
			return err
		}
		if err := w.read(br); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	w.committed()

	answers = make([]resultResp, len(batch))
	for i, r := range batch {
		st := moved[r.stepID]
		if st == nil {
			// The fence refused (or there is no such step): say which.
			cur, err := getStep(ctx, conn, r.stepID)
			if err == nil {
				err = fmt.Errorf("%s (token %d, current %d, state %s): %w",
					backends.StepObject(cur), r.token, cur.LeaseToken, cur.State, backends.ErrLeaseLost)
			}
			answers[i] = resultResp{err: err}
			continue
		}
		rrs[i].Task = tasks[st.TaskID] // the row as written
		answers[i] = resultResp{rr: rrs[i], events: perReq[i]}
	}
	return answers, taskOf, nil
}

// anyCancelled reports whether a step of the task is cancelled: the one
// state the context's counts leave out (completed_steps counts complete
// and resolved_manually, failed_steps error).
func anyCancelled(ec backends.ExecutionContext) bool {
	return ec.TotalSteps > ec.PendingSteps+ec.InProgressSteps+ec.CompletedSteps+ec.FailedSteps
}

// collect reads every row of a pipelined query (the pair br.Query
// returns) with scan.
func collect[T any](scan func(pgx.Row) (T, error)) func(pgx.Rows, error) ([]T, error) {
	return func(rows pgx.Rows, err error) ([]T, error) {
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	}
}

// errorStepNamesOf names the steps in error of each task, in position
// order, as the transaction on q sees them.
func errorStepNamesOf(ctx context.Context, q querier, taskIDs []int64) (map[int64][]string, error) {
	if len(taskIDs) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT task_id, array_agg(name ORDER BY position) FROM steps
		WHERE task_id = ANY ($1::bigint[]) AND state = 'error' GROUP BY task_id`, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("naming the steps in error: %w", err)
	}
	names := map[int64][]string{}
	for rows.Next() {
		var (
			id int64
			ns []string
		)
		if err := rows.Scan(&id, &ns); err != nil {
			rows.Close()
			return nil, err
		}
		names[id] = ns
	}
	return names, rows.Err()
}
