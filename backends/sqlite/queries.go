package sqlite

import (
	_ "embed"
	"strings"
)

// The readiness rule (SEMANTICS §3) and the execution context (§4) are each
// written once, in sql/readiness.sql and sql/context.sql, as CTE lists over
// a `candidate_steps` CTE (and `context_tasks` for the context). Each query
// below only chooses its candidates and what to read, so every statement
// that asks "is this step ready?" — including the claim — runs the same SQL
// text.

//go:embed sql/readiness.sql
var readinessCTEs string

//go:embed sql/context.sql
var contextCTEs string

// withReadiness composes a statement: candidate steps, the readiness CTEs,
// then the body.
func withReadiness(candidateSteps, body string) string {
	return "WITH candidate_steps AS (" + candidateSteps + "),\n" +
		stripComments(readinessCTEs) + "\n" + body
}

// claimTasksCTE walks the task ids of steps_claimable in order, one index
// seek per task (a skip scan: the first entry above the last task id), so
// that reaching the next task never reads the entries of a task's wide
// fan-out; runnable keeps the tasks that may run and whose workflow is not
// excluded, and says which are busy (a step in_progress: the list of them
// is built once per statement, from steps_running; running steps are few).
// Recursion runs only as far as the statement's LIMIT pulls it: the idle
// heads pass reads the tasks in order until it has its picks, passing over
// the busy ones (at most one per running step).
const claimTasksCTE = `claim_tasks(task_id) AS (
    SELECT (SELECT s.task_id FROM steps s
             WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
             ORDER BY s.task_id LIMIT 1)
    UNION ALL
    SELECT (SELECT s.task_id FROM steps s
             WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0 AND s.task_id > c.task_id
             ORDER BY s.task_id LIMIT 1)
      FROM claim_tasks c WHERE c.task_id IS NOT NULL
),
runnable AS (
    SELECT t.id, t.id IN (SELECT task_id FROM steps WHERE state = 'in_progress') AS busy
      FROM claim_tasks c CROSS JOIN tasks t
     WHERE t.id = c.task_id AND t.state IN ('pending', 'in_progress')
       AND t.namespace || '/' || t.workflow_name NOT IN (SELECT value FROM json_each(@excluded))
)`

// claimHeads: the candidate steps of a heads pass, the head of each task
// for which cond holds (its waiting step of lowest position).
func claimHeads(cond string) string {
	return `SELECT s.* FROM runnable r CROSS JOIN steps s
	  WHERE ` + cond + ` AND s.id = (SELECT h.id FROM steps h
	                 WHERE h.task_id = r.id AND h.state IN ('pending', 'error') AND h.unsatisfied_parents = 0
	                   AND h.id NOT IN (SELECT value FROM json_each(@picked))
	                 ORDER BY h.position LIMIT 1)`
}

// claimBody reads what a claim needs of the ready candidates: the step's
// and its task's rows as they stand, and when a backoff ends.
var claimBody = `SELECT r.step_id, r.task_id, r.state, r.next_retry_at, st.name, st.attempts, st.lease_token, st.updated_at,
        ` + qualified("tk", taskColumns) + `
   FROM step_readiness r JOIN steps st ON st.id = r.step_id JOIN tasks tk ON tk.id = r.task_id
  WHERE r.ready_for_execution
  LIMIT (SELECT @limit)`

// withClaimTasks composes a claim statement: claimTasksCTE, the candidate
// steps (of runnable), the readiness CTEs, then the body.
func withClaimTasks(candidateSteps, body string) string {
	return "WITH RECURSIVE " + claimTasksCTE + ",\ncandidate_steps AS (" + candidateSteps + "),\n" +
		stripComments(readinessCTEs) + "\n" + body
}

// withContext composes a statement reading execution_context.
func withContext(candidateSteps, contextTasks, body string) string {
	return "WITH candidate_steps AS (" + candidateSteps + "),\n" +
		"context_tasks AS (" + contextTasks + "),\n" +
		stripComments(readinessCTEs) + ",\n" + stripComments(contextCTEs) + "\n" + body
}

// qualified prefixes each column of a column list (taskColumns,
// stepColumns) with alias, inside a coalesce(...) too.
func qualified(alias, columns string) string {
	var out []string
	for _, c := range strings.Split(columns, ",") {
		c = strings.TrimSpace(c)
		if rest, ok := strings.CutPrefix(c, "coalesce("); ok {
			out = append(out, "coalesce("+alias+"."+rest)
			continue
		}
		if strings.HasPrefix(c, "'") || strings.HasSuffix(c, ")") {
			out = append(out, c) // a literal, or the tail of a coalesce
			continue
		}
		out = append(out, alias+"."+c)
	}
	return strings.Join(out, ", ")
}

// stripComments drops whole-line "--" comments, which are for readers of the
// .sql files, and trims the text so fragments join cleanly.
func stripComments(sql string) string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimSpace(b.String())
}

const readinessColumns = `step_id, task_id, name, state, dependencies_satisfied, retry_eligible,
	ready_for_execution, last_failure_at, next_retry_at, total_parents, completed_parents,
	attempts, retry_limit, backoff_request_seconds, last_attempted_at`

const contextColumns = `task_id, total_steps, pending_steps, in_progress_steps, completed_steps,
	failed_steps, ready_steps, blocked_steps, waiting_steps, execution_status, recommended_action,
	health_status, completion_percentage`

var (
	// One task. The LEFT JOIN yields one all-NULL row for a task without
	// steps and no row for an unknown task, so one statement tells the two
	// apart.
	stepReadinessSQL = withReadiness(
		`SELECT * FROM steps WHERE task_id = @task_id`,
		`SELECT t.id AS known_task, r.step_id, r.task_id, r.name, r.state, r.dependencies_satisfied,
		        r.retry_eligible, r.ready_for_execution, r.last_failure_at, r.next_retry_at,
		        r.total_parents, r.completed_parents, r.attempts, r.retry_limit,
		        r.backoff_request_seconds, r.last_attempted_at
		   FROM tasks t LEFT JOIN step_readiness r ON r.task_id = t.id
		  WHERE t.id = @task_id
		  ORDER BY r.position`)

	// Many tasks, @ids a JSON array of task ids.
	stepReadinessBatchSQL = withReadiness(
		`SELECT * FROM steps WHERE task_id IN (SELECT value FROM json_each(@ids))`,
		`SELECT `+readinessColumns+` FROM step_readiness ORDER BY task_id, position`)

	taskContextSQL = withContext(
		`SELECT * FROM steps WHERE task_id = @task_id`,
		`SELECT id, state FROM tasks WHERE id = @task_id`,
		`SELECT `+contextColumns+` FROM execution_context`)

	// finalize's inputs in one statement: the task's execution context
	// (taskContextSQL's), its row (its state, and the row the caller
	// returns) and whether any of its steps is cancelled (backends.Decide).
	finalizeSQL = withContext(
		`SELECT * FROM steps WHERE task_id = @task_id`,
		`SELECT id, state FROM tasks WHERE id = @task_id`,
		`SELECT `+contextColumns+`, `+taskColumns+`,
		        EXISTS (SELECT 1 FROM steps WHERE task_id = t.id AND state = 'cancelled')
		   FROM execution_context JOIN tasks t ON t.id = execution_context.task_id`)

	taskContextsSQL = withContext(
		`SELECT * FROM steps WHERE task_id IN (SELECT value FROM json_each(@ids))`,
		`SELECT id, state FROM tasks WHERE id IN (SELECT value FROM json_each(@ids))`,
		`SELECT `+contextColumns+` FROM execution_context ORDER BY task_id`)

	// ClaimSteps picks in up to three statements, in claim order
	// (backends.Store's ClaimSteps): claimIdleHeadsSQL the ready heads of
	// the tasks with no step in_progress, oldest task first;
	// claimBusyHeadsSQL, for the places left, those of the other tasks;
	// claimRestSQL, for the places left, the other ready steps by task and
	// position. All walk the tasks through claimTasksCTE and leave out the
	// workflows of @excluded (JSON array of "namespace/name": at their
	// concurrency limit) and the steps of @picked (JSON array of ids this
	// claim already took).
	//
	// The candidates repeat the predicate of the partial index
	// steps_claimable word for word, which is what lets SQLite use it:
	// finished steps are never read, and neither are steps with a parent not
	// yet done (unsatisfied_parents, migration 0002). That counter is only a
	// pre-filter: a step it lets through is still judged by the full rule of
	// readiness.sql, dependencies included; it skips only steps whose
	// dependencies_satisfied is false (the counter is the number of parents
	// not complete or resolved_manually, kept exact by moveStep and
	// insertTask; TestUnsatisfiedParentsCounter checks it).
	//
	// No ORDER BY: the rows come in the order of the loops, which CROSS
	// JOIN fixes (claim_tasks outermost, in task id order; then a task's
	// steps through steps_claimable, in position order), and the LIMIT stops
	// them, and the recursion with them, once enough are ready; a sort
	// would read every task first. TestClaimQueriesWalkTasksInOrder checks
	// the plans.
	//
	// No FOR UPDATE SKIP LOCKED (PostgreSQL's answer to concurrent claimers):
	// SQLite has one writer, the claim runs in a BEGIN IMMEDIATE transaction
	// on the single writer connection, so nothing can claim the same rows
	// between these SELECTs and the UPDATEs that follow them.
	//
	// The limit is read through a scalar subquery, not as a bare @limit:
	// SQLite plans a LIMIT with the bound value and would recompile the
	// statement every time the limit changes (every claim, as free workers
	// come and go) — a tenth of the engine's CPU.
	claimIdleHeadsSQL = withClaimTasks(claimHeads("NOT r.busy"), claimBody)
	claimBusyHeadsSQL = withClaimTasks(claimHeads("r.busy"), claimBody)
	claimRestSQL      = withClaimTasks(
		`SELECT s.* FROM runnable r CROSS JOIN steps s
		  WHERE s.task_id = r.id AND s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
		    AND s.id NOT IN (SELECT value FROM json_each(@picked))`,
		claimBody)

	// NextWakeup: the earliest future next_retry_at of a step that only
	// waits on a backoff, or lease expiry of a running step, among pending or
	// in_progress tasks. Its candidates are the claim's, through the same
	// partial index: it reads only steps whose dependencies_satisfied holds,
	// so the pre-filter on unsatisfied_parents drops none it would read.
	nextWakeupSQL = withReadiness(
		`SELECT s.* FROM steps s JOIN tasks t ON t.id = s.task_id
		  WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
		    AND t.state IN ('pending', 'in_progress')`,
		`SELECT min(at) FROM (
		    SELECT next_retry_at AS at FROM step_readiness
		     WHERE dependencies_satisfied AND retry_eligible AND next_retry_at > @now
		    UNION ALL
		    SELECT s.lease_expires_at FROM steps s JOIN tasks t ON t.id = s.task_id
		     WHERE s.state = 'in_progress' AND s.lease_expires_at > @now
		       AND t.state IN ('pending', 'in_progress'))`)
)

// warmStatements are prepared on the writer when the store opens, for use
// inside write transactions (see stmtCache).
var warmStatements = []string{
	claimIdleHeadsSQL, claimBusyHeadsSQL, claimRestSQL, taskContextSQL, getTaskSQL, getStepSQL, finalizeSQL,
	insertTaskTransitionSQL, insertStepTransitionSQL,
	moveTaskSQL, moveStepSQL, satisfyChildrenSQL, moveStepWithSQL(claimSet), completeStepSQL,
	moveStepWithSQL(failSet), startStepSQL,
	parentResultsSQL, savepointSQL, rollbackToSavepointSQL,
	insertEventsSQL[1], insertEventsSQL[2], insertEventsSQL[3], insertEventsSQL[4], errorStepNamesSQL,
	readEventSeqSQL, writeEventSeqSQL,
}

// moveStepWithSQL is moveStepSQL that also writes the assignments in set
// and returns the step's row as written.
func moveStepWithSQL(set string) string {
	return `UPDATE steps SET state = ?, updated_at = ?, ` + set + `
		WHERE id = ? AND state = ? RETURNING ` + stepColumns
}

// Small statements run inside write transactions.
const (
	// Each operation of a grouped write transaction (Store.write).
	savepointSQL           = `SAVEPOINT op`
	rollbackToSavepointSQL = `ROLLBACK TO op`

	getTaskSQL = `SELECT ` + taskColumns + ` FROM tasks WHERE id = ?`
	getStepSQL = `SELECT ` + stepColumns + ` FROM steps WHERE id = ?`

	// A transition is numbered after its object's last (sort_key from 1),
	// found by a seek in transitions_task_sort_key or
	// transitions_step_sort_key (?1 is the task's id, ?2 the step's).
	insertTaskTransitionSQL = `INSERT INTO transitions
		(task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
		VALUES (?1, NULL, ?2, ?3, ?4, ?5,
			(SELECT coalesce(max(sort_key), 0) + 1 FROM transitions WHERE task_id = ?1 AND step_id IS NULL), ?6)`
	insertStepTransitionSQL = `INSERT INTO transitions
		(task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6,
			(SELECT coalesce(max(sort_key), 0) + 1 FROM transitions WHERE step_id = ?2), ?7)`

	moveTaskSQL = `UPDATE tasks SET state = ?, updated_at = ? WHERE id = ? AND state = ?`
	moveStepSQL = `UPDATE steps SET state = ?, updated_at = ? WHERE id = ? AND state = ?`

	// A step entered complete or resolved_manually (terminal, so once per
	// step): one fewer unsatisfied parent for each of its children.
	satisfyChildrenSQL = `UPDATE steps SET unsatisfied_parents = unsatisfied_parents - 1
		WHERE id IN (SELECT child_step_id FROM edges WHERE parent_step_id = ?)`

	// What a claim and a step result write to a step together with its
	// move (moveStepWith appends them to the UPDATE of moveStepWithSQL).
	claimSet = `attempts = attempts + 1, started_at = ?, backoff_request_seconds = NULL,
		cancel_requested = 0, lease_owner = ?, lease_expires_at = ?, lease_token = lease_token + 1`

	// completeStepSQL is CompleteStep's one write to the step, fenced by
	// its WHERE (?3 the step, ?4 the lease token): a stale token writes
	// nothing. A cancel requested while the step ran makes it cancelled
	// instead (SET reads the row as it was): its results and
	// last_attempted_at are still stored, but processed stays false, since
	// the results will never be used. ?1 is the instant, ?2 the results.
	completeStepSQL = `UPDATE steps SET
		state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'complete' END,
		updated_at = ?1, last_attempted_at = ?1, results = ?2,
		processed = NOT cancel_requested,
		processed_at = CASE WHEN cancel_requested THEN processed_at ELSE ?1 END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0
		WHERE id = ?3 AND state = 'in_progress' AND lease_token = ?4
		RETURNING ` + stepColumns
	failSet = `last_attempted_at = ?, error = ?,
		last_failure_at = CASE WHEN ? THEN ? ELSE last_failure_at END,
		backoff_request_seconds = ?,
		retryable = CASE WHEN ? AND NOT ? THEN 0 ELSE retryable END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0`

	// A claim undone before its handler started (RecoverExpiredLeases).
	releaseSet = `attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL`

	// StartStep: the fence is the WHERE; a cancel requested meanwhile
	// leaves StartedAt alone (the handler will not start).
	startStepSQL = `UPDATE steps SET lease_expires_at = ?1,
		started_at = CASE WHEN cancel_requested THEN started_at ELSE ?2 END
		WHERE id = ?3 AND state = 'in_progress' AND lease_owner = ?4 AND lease_token = ?5
		RETURNING cancel_requested`

	parentResultsSQL = `SELECT p.name, p.results, p.updated_at FROM edges e JOIN steps p ON p.id = e.parent_step_id
		WHERE e.child_step_id = ? ORDER BY p.position`
)
