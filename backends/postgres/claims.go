package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// finalize is SEMANTICS §5.5 inside the transaction of the write it follows.
// It first locks the task's row, and only then computes the execution
// context (taskerd_task_execution_context) in a new statement: under READ
// COMMITTED that statement sees every result committed by a finalize that
// held the lock before, so of two steps finishing at once the second sees
// the first. Then backends.Decide and the task transitions of
// backends.FinalizePath. A finished task is left alone (DecisionNone). It
// returns the task's row as it stands after these moves.
func finalize(ctx context.Context, tx querier, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, *backends.Task, error) {
	ec, d, task, _, err := finalizeFrom(ctx, tx, taskID, now)
	return ec, d, task, err
}

// finalizeFrom is finalize, which also returns the task's state before it.
func finalizeFrom(ctx context.Context, tx querier, taskID int64, now time.Time) (_ backends.ExecutionContext, _ backends.FinalizeDecision, _ *backends.Task, before backends.State, _ error) {
	var anyCancelled bool
	task, err := scanTask(tx.QueryRow(ctx, `SELECT `+taskColumns+`,
			EXISTS (SELECT 1 FROM steps WHERE task_id = t.id AND state = 'cancelled')
		FROM tasks t WHERE id = $1 FOR NO KEY UPDATE`, taskID), &anyCancelled)
	if err != nil {
		return backends.ExecutionContext{}, "", nil, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	ec, err := taskContext(ctx, tx, taskID, now)
	if err != nil {
		return ec, "", nil, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	before = task.State
	if task.State.Finished() {
		return ec, backends.DecisionNone, task, before, nil
	}
	d := backends.Decide(ec, anyCancelled)
	meta := map[string]any{"decision": string(d), "execution_status": ec.ExecutionStatus}
	for _, to := range backends.FinalizePath(task.State, d) {
		if task, err = moveTask(ctx, tx, taskID, task.State, to, "finalize: "+ec.ExecutionStatus, meta, now); err != nil {
			return ec, "", nil, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
		}
	}
	return ec, d, task, before, nil
}

// claimSQL picks the steps to claim, in claim order (backends.Store's
// ClaimSteps): the ready heads of tasks with no step in_progress (idle),
// oldest task first; then those of the other tasks, oldest first; then the
// other ready steps by task and position. @excluded names workflows
// ("namespace/name") whose steps are left alone (at their concurrency
// limit), @picked steps this claim already holds. $1 now, $2 limit.
//
// claim_tasks walks the task ids of steps_claimable in order, one index
// descent per task (a skip scan: the next task id above the last): a task's
// entries after its head are not read to reach the next task, so a wide
// fan-out costs each heads pass one entry, and the tasks of an excluded
// workflow are dropped whole, however many ready steps they have. The
// recursion runs only as far as the LIMITs pull it: the idle heads pass
// reads the tasks in order until it has its picks, passing over the busy
// ones (at most one per running step in the cluster). busy is the task ids
// of the running steps, read once through steps_running (running steps
// are few: the cluster's workers and what they claimed ahead).
//
// Each condition on a step repeats the predicate of the partial index
// steps_claimable word for word, so only steps that may run and whose
// parents are all done are read, however long the history
// (unsatisfied_parents is a pre-filter; the readiness function still
// judges dependencies). The task's state and the readiness rule are scalar
// subqueries on the candidate's keys, which the planner cannot turn into
// joins: as joins, plans made with a young database's statistics (kept by
// each pooled connection) drove the claim from a full scan of the steps
// or, with few tasks unfinished, read all of tasks_unfinished in a bitmap
// scan per candidate, through every entry that tasks finished since the
// last VACUUM left there (migration 0006 says more). FOR (NO KEY) UPDATE
// SKIP LOCKED, per task: nodes claiming at once each take different rows
// and never wait for each other (a head another claim holds is passed over
// for the task's next step); a row another claim changed before we lock it
// is re-checked (EvalPlanQual) and dropped when it is no longer pending or
// error. A LIMIT counts only locked rows. A head that is locked but not
// ready stays locked until the claim ends, which only makes other claims
// pass over it: they could not have claimed it either.
var claimSQLTemplate = `WITH RECURSIVE claim_tasks(task_id) AS (
	(SELECT s.task_id FROM steps s
	  WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
	  ORDER BY s.task_id, s.position LIMIT 1)
	UNION ALL
	SELECT (SELECT s.task_id FROM steps s
	         WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0 AND s.task_id > c.task_id
	         ORDER BY s.task_id, s.position LIMIT 1)
	  FROM claim_tasks c WHERE c.task_id IS NOT NULL
), busy AS (
	SELECT coalesce(array_agg(DISTINCT s.task_id), '{}') AS ids FROM steps s WHERE s.state = 'in_progress'
), runnable AS (
	SELECT c.task_id, c.task_id = ANY ((SELECT ids FROM busy)::bigint[]) AS busy FROM claim_tasks c
	 WHERE c.task_id IS NOT NULL
	   AND (SELECT t.state IN ('pending', 'in_progress') AND t.namespace || '/' || t.workflow_name <> ALL (@excluded::text[])
	          FROM tasks t WHERE t.id = c.task_id)
), idle_heads AS (
	SELECT h.*, 0 AS pass FROM runnable r CROSS JOIN LATERAL (` + claimHeadSQL + `) h
	 WHERE NOT r.busy AND (SELECT rr.ready_for_execution FROM taskerd_step_readiness_rows($1) rr WHERE rr.step_id = h.id)
	 LIMIT $2
), busy_heads AS (
	SELECT h.*, 1 AS pass FROM runnable r CROSS JOIN LATERAL (` + claimHeadSQL + `) h
	 WHERE r.busy AND (SELECT rr.ready_for_execution FROM taskerd_step_readiness_rows($1) rr WHERE rr.step_id = h.id)
	 LIMIT greatest($2 - (SELECT count(*) FROM idle_heads), 0)
), heads AS (
	SELECT coalesce(array_agg(id), '{}') AS ids, count(*) AS n
	  FROM (SELECT id FROM idle_heads UNION ALL SELECT id FROM busy_heads) h
), rest AS (
	SELECT x.*, 2 AS pass FROM runnable r CROSS JOIN LATERAL (
		SELECT s.id, s.task_id, s.position, s.state, s.updated_at AS prev_updated_at, s.backoff_request_seconds
		  FROM steps s
		 WHERE s.task_id = r.task_id AND s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
		   AND s.id <> ALL (@picked::bigint[]) AND s.id <> ALL ((SELECT ids FROM heads)::bigint[])
		   AND (SELECT rr.ready_for_execution FROM taskerd_step_readiness_rows($1) rr WHERE rr.step_id = s.id)
		 ORDER BY s.position LIMIT $2
		   FOR NO KEY UPDATE OF s SKIP LOCKED) x
	 LIMIT greatest($2 - (SELECT n FROM heads), 0)
)
SELECT p.id, p.task_id, p.position, p.state, p.prev_updated_at,
	CASE WHEN p.state = 'error' OR p.backoff_request_seconds IS NOT NULL
	     THEN (SELECT rr.next_retry_at FROM taskerd_step_readiness_rows($1) rr WHERE rr.step_id = p.id)
	END AS next_retry_at,
	p.pass,
	-- The claim order, for the places that wait for a worker.
	row_number() OVER () AS ord,
	@workflow AS workflow
FROM (SELECT * FROM idle_heads UNION ALL SELECT * FROM busy_heads UNION ALL SELECT * FROM rest) p`

// claimHeadSQL is the head of task r.task_id (its waiting step of lowest
// position), locked, or if another claim holds it, the next one.
const claimHeadSQL = `SELECT s.id, s.task_id, s.position, s.state, s.updated_at AS prev_updated_at, s.backoff_request_seconds
		  FROM steps s
		 WHERE s.task_id = r.task_id AND s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
		   AND s.id <> ALL (@picked::bigint[])
		 ORDER BY s.position LIMIT 1
		   FOR NO KEY UPDATE OF s SKIP LOCKED`

// Only claimSQL returns each pick's workflow ("namespace/name"), which only
// claimLimited needs.
var (
	claimSQL = strings.NewReplacer("@excluded", "$3", "@picked", "$4",
		"@workflow", "(SELECT t.namespace || '/' || t.workflow_name FROM tasks t WHERE t.id = p.task_id)").
		Replace(claimSQLTemplate)
	claimStepsSQL = `WITH picked AS (` +
		strings.NewReplacer("@excluded", "$6", "@picked", "$7", "@workflow", "NULL::text").Replace(claimSQLTemplate) + `
)` + claimTail
	// claimPickedSQL claims the steps claimLimited picked, locked by its
	// transaction: $6.. the pick's columns as arrays, in claim order. ($2
	// is unused but for the array lengths' check.)
	claimPickedSQL = `WITH picked AS (
	SELECT * FROM unnest($6::bigint[], $7::bigint[], $8::integer[], $9::text[], $10::timestamptz[], $11::timestamptz[])
		WITH ORDINALITY AS p(id, task_id, position, state, prev_updated_at, next_retry_at, ord)
	 WHERE cardinality($6::bigint[]) <= $2
)` + claimTail
)

// claimTail is the whole claim after the pick, one statement
// (SEMANTICS §5.2): the picks move to in_progress (error -> pending ->
// in_progress for a retry: two transitions, sort keys n+1 and n+2) with
// attempts+1, started_at, the requested backoff and a cancel request
// cleared, and a lease with a new token; their pending tasks move to
// in_progress. Each row returns the claimed step, whether it was a retry,
// its parents' results as a JSON object, its task's row (as started here,
// or as it stands), and whether this statement started that task, in claim
// order (picked.ord). Transition metadata is built as Go's encoding/json
// would write it (keys sorted).
// The first $5 picks in claim order start now (started_at); the others
// wait for a worker (started_at NULL until StartStep).
// $1 now, $3 owner, $4 lease expiry, $5 places that start now.
const claimTail = `, pick_order AS (
	SELECT coalesce(array_agg(id ORDER BY ord), '{}') AS ids FROM picked
), claimed AS (
	-- The picks by id, from an array read once (an InitPlan): primary key
	-- lookups whatever the planner guesses about the CTE's size. (Joined to
	-- picked, a plan made while steps was small scanned all of it per pick.)
	-- In SET, s.state is the state before this update.
	UPDATE steps s SET state = 'in_progress', updated_at = $1,
		transition_count = s.transition_count + CASE WHEN s.state = 'error' THEN 2 ELSE 1 END,
		attempts = s.attempts + 1,
		started_at = CASE WHEN array_position((SELECT ids FROM pick_order)::bigint[], s.id) <= $5::integer
		                  THEN $1::timestamptz END,
		backoff_request_seconds = NULL,
		cancel_requested = false, lease_owner = $3, lease_expires_at = $4, lease_token = s.lease_token + 1
	 WHERE s.id = ANY ((SELECT ids FROM pick_order)::bigint[])
	RETURNING s.*,
		format('{"attempt":%s,"lease_token":%s,"owner":%s}', s.attempts, s.lease_token, to_json($3::text)) AS meta
), step_log AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT c.task_id, c.id, 'error', 'pending', 'retry', c.meta, c.transition_count - 1, $1
	  FROM claimed c JOIN picked p ON p.id = c.id WHERE p.state = 'error'
	UNION ALL
	SELECT c.task_id, c.id, 'pending', 'in_progress', 'claimed', c.meta, c.transition_count, $1
	  FROM claimed c
), claimed_tasks AS (
	-- As above: the task lookups below are primary key scans.
	SELECT coalesce(array_agg(DISTINCT task_id), '{}') AS ids FROM claimed
), started AS (
	UPDATE tasks t SET state = 'in_progress', updated_at = $1, transition_count = t.transition_count + 1
	 WHERE t.id = ANY ((SELECT ids FROM claimed_tasks)::bigint[]) AND t.state = 'pending'
	RETURNING t.*
), task_log AS (
	INSERT INTO transitions (task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
	SELECT st.id, NULL, 'pending', 'in_progress', 'first claim',
		format('{"owner":%s}', to_json($3::text)), st.transition_count, $1
	  FROM started st
)
SELECT c.id, c.task_id, c.name, c.position, c.handler, c.config, c.retryable, c.retry_limit,
	c.backoff_base_us, c.backoff_max_us, c.timeout_us, c.skippable, c.state, c.attempts, c.started_at,
	c.last_attempted_at, c.last_failure_at, c.backoff_request_seconds, c.results, c.error, c.processed,
	c.processed_at, coalesce(c.lease_owner, ''), c.lease_expires_at, c.lease_token, c.cancel_requested,
	c.created_at, c.updated_at,
	p.state = 'error',
	(SELECT json_object_agg(p.name, p.results::json)::text
	   FROM edges e, LATERAL (SELECT name, results FROM steps WHERE id = e.parent_step_id OFFSET 0) p
	  WHERE e.child_step_id = c.id),
	-- Ready since: the step's last change before the claim, its backoff's
	-- end, its parents' last changes (greatest ignores NULLs).
	greatest(p.prev_updated_at, p.next_retry_at,
		(SELECT max(p.updated_at)
		   FROM edges e, LATERAL (SELECT updated_at FROM steps WHERE id = e.parent_step_id OFFSET 0) p
		  WHERE e.child_step_id = c.id)),
	t.id, t.namespace, t.workflow_name, t.workflow_version, t.context, t.initiator, t.source_system,
	t.reason, t.tags, t.requested_at, coalesce(t.idempotency_key, ''), t.request_hash,
	coalesce(st.state, t.state), t.created_at, coalesce(st.updated_at, t.updated_at), st.id IS NOT NULL
FROM claimed c JOIN picked p ON p.id = c.id
	-- A lookup per claimed step: OFFSET 0 keeps the planner from making
	-- this a join, which it may answer by scanning tasks.
	CROSS JOIN LATERAL (SELECT * FROM tasks WHERE id = c.task_id OFFSET 0) t
	LEFT JOIN started st ON st.id = c.task_id
ORDER BY p.ord`

// ClaimSteps implements backends.Store with claimStepsSQL, one statement,
// or under concurrency limits with claimLimited.
func (s *Store) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) (_ []*backends.Claim, rerr error) {
	defer classifyErr(&rerr)
	claims := []*backends.Claim{}
	if p.Limit <= 0 {
		return claims, nil
	}
	var events []*backends.Event
	err := retrying(func() (err error) {
		if len(p.Limits) > 0 {
			claims, events, err = s.claimLimited(ctx, p)
		} else {
			claims, events, err = s.claimOnce(ctx, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming steps for %s: %w", p.Owner, err)
	}
	sinkEvents(ctx, events)
	return claims, nil
}

// claimOnce runs claimStepsSQL in a transaction of its own, after
// keyLookupsSQL: its plan is made once per connection and kept, and a plan
// made while the tables are small reads whole tables (the task lookups, a
// sequential scan of tasks per candidate) long after they have grown. Two
// round trips: BEGIN, the settings and the claim go as one batch; a second
// carries the claim's events (backends.ClaimEvents, built from its rows)
// and COMMIT, or COMMIT alone when nothing was claimed.
func (s *Store) claimOnce(ctx context.Context, p *backends.ClaimStepsParams) (claims []*backends.Claim, events []*backends.Event, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	defer rollbackOnError(ctx, conn, &err)

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(keyLookupsSQL)
	b.Queue(claimStepsSQL, ts(p.Now), p.Limit, p.Owner, ts(p.Now.Add(p.LeaseDuration)), p.Limit-p.Queued,
		[]string{}, []int64{})
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		var err error
		if claims, err = scanClaims(br.Query()); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	events = backends.ClaimEvents(claims, p.Now)
	if err = commitWithEvents(ctx, conn, events, nil); err != nil {
		return nil, nil, err
	}
	return claims, events, nil
}

// concurrencyLockClass is the first key of the transaction-level advisory
// locks that serialize claims of limited workflows (the second is the
// hash of the workflow's name). Two-key advisory locks do not overlap the
// one-key ones other code may take.
const concurrencyLockClass = 0x74736b63 // "tskc"

// runningSQL counts the in_progress steps of the workflows $1 names
// ("namespace/name"), through steps_running (running steps are few: at
// most the cluster's workers and what they claimed ahead). A task lookup
// per running step, as in claimStepsSQL.
const runningSQL = `SELECT t.workflow, count(*) FROM steps s
	CROSS JOIN LATERAL (SELECT namespace || '/' || workflow_name AS workflow FROM tasks WHERE id = s.task_id OFFSET 0) t
	WHERE s.state = 'in_progress' AND t.workflow = ANY ($1::text[])
	GROUP BY t.workflow`

// pick is a row of claimSQL.
type pick struct {
	id, taskID         int64
	position           int32
	state              string
	prevUpdated, retry *time.Time
	workflow           string
}

// claimLimited is a claim under concurrency limits, in one transaction.
// Workflows at their limit by a first count are excluded from the pick
// (claimSQL, which locks what it returns). When the pick holds steps of a
// limited workflow the claim takes the advisory locks of all limited
// workflows, in a fixed order, and counts again: a claim that committed
// steps of them before is then seen (READ COMMITTED: each statement sees
// what committed before it began), and one that has not committed yet
// holds the locks, so the count is exact until this transaction ends. The
// picks over a limit are dropped (left as they are), and the freed places
// are picked again without those workflows. A claim whose picks name no
// limited workflow takes no lock: unlimited work is not serialized. Rows
// picked and dropped stay locked until the end of the claim, which only
// makes other claims pass over them.
func (s *Store) claimLimited(ctx context.Context, p *backends.ClaimStepsParams) (claims []*backends.Claim, events []*backends.Event, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	defer rollbackOnError(ctx, conn, &err)

	caps := backends.NewClaimCaps(p.Limits)
	keys := caps.Keys()
	// count reads runningSQL's rows into caps.
	count := func(rows pgx.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		running := map[string]int{}
		for rows.Next() {
			var (
				k string
				n int
			)
			if err := rows.Scan(&k, &n); err != nil {
				return err
			}
			running[k] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		caps.Reset(running)
		return nil
	}
	// BEGIN, the settings and the first count in one round trip.
	err = func() error {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(keyLookupsSQL)
		b.Queue(runningSQL, keys)
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := count(br.Query()); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	var (
		picks  []pick
		held   = []int64{}
		locked bool
	)
	for len(picks) < p.Limit {
		batch, err := scanPicks(conn.Query(ctx, claimSQL, ts(p.Now), p.Limit-len(picks), caps.Full(), held))
		if err != nil {
			return nil, nil, err
		}
		if !locked && slices.ContainsFunc(batch, func(pk pick) bool { return caps.Limited(pk.workflow) }) {
			b := &pgx.Batch{}
			for _, k := range keys {
				b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(concurrencyLockClass), k)
			}
			b.Queue(runningSQL, keys)
			err := func() error {
				br := conn.SendBatch(ctx, b)
				defer br.Close()
				for range keys {
					if _, err := br.Exec(); err != nil {
						return err
					}
				}
				// Picks of earlier rounds named no limited workflow.
				if err := count(br.Query()); err != nil {
					return err
				}
				return br.Close()
			}()
			if err != nil {
				return nil, nil, err
			}
			locked = true
		}
		dropped := false
		for _, pk := range batch {
			held = append(held, pk.id)
			if caps.Take(pk.workflow) {
				picks = append(picks, pk)
			} else {
				dropped = true
			}
		}
		if !dropped {
			break
		}
	}

	var (
		ids, taskIDs        = make([]int64, len(picks)), make([]int64, len(picks))
		positions           = make([]int32, len(picks))
		states              = make([]string, len(picks))
		prevUpdated, retrys = make([]*time.Time, len(picks)), make([]*time.Time, len(picks))
	)
	for i, pk := range picks {
		ids[i], taskIDs[i], positions[i], states[i], prevUpdated[i], retrys[i] =
			pk.id, pk.taskID, pk.position, pk.state, pk.prevUpdated, pk.retry
	}
	claims, err = scanClaims(conn.Query(ctx, claimPickedSQL, ts(p.Now), p.Limit, p.Owner,
		ts(p.Now.Add(p.LeaseDuration)), p.Limit-p.Queued, ids, taskIDs, positions, states, prevUpdated, retrys))
	if err != nil {
		return nil, nil, err
	}
	events = backends.ClaimEvents(claims, p.Now)
	if err = commitWithEvents(ctx, conn, events, nil); err != nil {
		return nil, nil, err
	}
	return claims, events, nil
}

// scanPicks reads claimSQL's rows.
func scanPicks(rows pgx.Rows, err error) ([]pick, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var picks []pick
	for rows.Next() {
		var (
			pk        pick
			pass, ord int64
		)
		if err := rows.Scan(&pk.id, &pk.taskID, &pk.position, &pk.state, &pk.prevUpdated, &pk.retry,
			&pass, &ord, &pk.workflow); err != nil {
			return nil, err
		}
		picks = append(picks, pk)
	}
	return picks, rows.Err()
}

// scanClaims reads claimStepsSQL's rows.
func scanClaims(rows pgx.Rows, err error) ([]*backends.Claim, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	claims := []*backends.Claim{}
	seen := map[int64]bool{} // tasks whose first claim here is already listed
	for rows.Next() {
		var (
			parents *string
			started bool
			c       = &backends.Claim{}
		)
		// Step columns, then the claim's, then the task's.
		var err error
		c.Step, err = scanStep(scanFunc(func(dest ...any) error {
			c.Task, err = scanTask(scanFunc(func(taskDest ...any) error {
				return rows.Scan(append(append(dest, &c.Retry, &parents, &c.ReadyAt), taskDest...)...)
			}), &started)
			return err
		}))
		if err != nil {
			return nil, err
		}
		c.ParentResults = map[string]json.RawMessage{}
		if parents != nil {
			if err := json.Unmarshal([]byte(*parents), &c.ParentResults); err != nil {
				return nil, fmt.Errorf("parent results of step %d: %w", c.Step.ID, err)
			}
		}
		// The task moved once, for its first step in claim order.
		c.TaskStarted = started && !seen[c.Task.ID]
		seen[c.Task.ID] = true
		claims = append(claims, c)
	}
	return claims, rows.Err()
}

// scanFunc adapts a function to pgx.Row, to scan one result row into
// several row types.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// ExtendLeases implements backends.Store, in one statement. A lease is
// current while its step is in_progress under the same owner and token; a
// lease that expired but was not yet recovered is still current (recovery
// and a new claim both change the token), so it is extended.
func (s *Store) ExtendLeases(ctx context.Context, p *backends.ExtendLeasesParams) (_ []backends.LeaseStatus, rerr error) {
	defer classifyErr(&rerr)
	out := make([]backends.LeaseStatus, 0, len(p.Leases))
	if len(p.Leases) == 0 {
		return out, nil
	}
	ids := make([]int64, len(p.Leases))
	tokens := make([]int64, len(p.Leases))
	for i, l := range p.Leases {
		ids[i], tokens[i] = l.StepID, l.Token
	}
	live := map[backends.Lease]bool{} // current lease -> cancel requested
	err := s.tx(ctx, func(tx pgx.Tx) error {
		clear(live)
		rows, err := tx.Query(ctx, `UPDATE steps s SET lease_expires_at = $1, updated_at = $2
			FROM unnest($3::bigint[], $4::bigint[]) AS l(id, token)
			WHERE s.id = l.id AND s.lease_token = l.token AND s.state = 'in_progress' AND s.lease_owner = $5
			RETURNING s.id, s.lease_token, s.cancel_requested`,
			ts(p.Now.Add(p.LeaseDuration)), ts(p.Now), ids, tokens, p.Owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				l      backends.Lease
				cancel bool
			)
			if err := rows.Scan(&l.StepID, &l.Token, &cancel); err != nil {
				return err
			}
			live[l] = cancel
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("extending %d leases for %s: %w", len(p.Leases), p.Owner, err)
	}
	for _, l := range p.Leases {
		cancel, ok := live[l]
		out = append(out, backends.LeaseStatus{StepID: l.StepID, Lost: !ok, CancelRequested: cancel})
	}
	return out, nil
}
