package postgres_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// Tests of the plans the hot statements get: each counts the buffers a
// store call reads from tasks and steps, on a store of one connection
// (every call runs on it, and it keeps its plans) whose tables autovacuum
// leaves alone.

type planProbe struct {
	t   *testing.T
	ctx context.Context
	s   *postgres.Store
}

func newPlanProbe(t *testing.T) *planProbe {
	p := &planProbe{t: t, ctx: context.Background(), s: pgtest.Open(t, postgres.WithMaxConns(1))}
	p.exec(`ALTER TABLE tasks SET (autovacuum_enabled = false)`)
	p.exec(`ALTER TABLE steps SET (autovacuum_enabled = false)`)
	return p
}

func (p *planProbe) exec(sql string, args ...any) {
	p.t.Helper()
	_, err := p.s.Pool().Exec(p.ctx, sql, args...)
	require.NoError(p.t, err)
}

// genericPlans makes the connection use generic plans at once, rather than
// after five calls.
func (p *planProbe) genericPlans() { p.exec(`SET plan_cache_mode = force_generic_plan`) }

// finishedHistory writes n tasks that ran and finished, as an UPDATE from
// in_progress leaves them: a dead entry each in tasks_unfinished. Their
// steps are written complete: the dead entries steps that ran leave in
// steps_claimable are marked dead by the claim's first index scan, but only
// once no transaction anywhere may still see them, which a test run among
// other tests cannot count on.
func (p *planProbe) finishedHistory(n int) {
	insertTasks(p.t, p.s, n, 1, backends.StateInProgress, backends.StateComplete, false)
	p.exec(`UPDATE tasks SET state = 'complete' WHERE state = 'in_progress'`)
}

// workLeft writes what is left to do: 5 tasks of 2 independent steps, one
// of those steps running, its lease ending a minute after benchNow.
func (p *planProbe) workLeft() {
	insertTasks(p.t, p.s, 5, 2, backends.StateInProgress, backends.StatePending, false)
	p.exec(`UPDATE steps SET state = 'in_progress', lease_owner = 'test',
			lease_expires_at = $1::timestamptz + interval '1 minute'
		WHERE id = (SELECT max(id) FROM steps)`, benchNow)
}

// buffers returns the buffers read from tasks and steps (heap and indexes)
// while fn runs, as this connection's statistics count them.
func (p *planProbe) buffers(fn func()) int64 {
	p.t.Helper()
	var before, after int64
	for _, n := range []*int64{&before, &after} {
		p.exec(`SELECT pg_stat_force_next_flush()`) // flushed as this statement ends
		require.NoError(p.t, p.s.Pool().QueryRow(p.ctx, `SELECT sum(heap_blks_hit + heap_blks_read
				+ coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0))::bigint
			FROM pg_statio_user_tables WHERE relname IN ('tasks', 'steps')`).Scan(n))
		if n == &before {
			fn()
		}
	}
	return after - before
}

func (p *planProbe) claim(limit int) []*backends.Claim {
	p.t.Helper()
	claims, err := p.s.ClaimSteps(p.ctx, &backends.ClaimStepsParams{Owner: "test", Limit: limit, LeaseDuration: time.Minute, Now: benchNow})
	require.NoError(p.t, err)
	return claims
}

func (p *planProbe) complete(claims []*backends.Claim) {
	p.t.Helper()
	for _, c := range claims {
		_, err := p.s.CompleteStep(p.ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: benchNow})
		require.NoError(p.t, err)
	}
}

// wakeup asks NextWakeup and checks the answer: workLeft's lease.
func (p *planProbe) wakeup() {
	p.t.Helper()
	at, err := p.s.NextWakeup(p.ctx, benchNow)
	require.NoError(p.t, err)
	require.NotNil(p.t, at)
	assert.Equal(p.t, benchNow.Add(time.Minute), at.UTC())
}

// assertHotPathCheap holds NextWakeup, a claim of workLeft's 9 pending
// steps and their 9 results to a few hundred buffers (most of it the
// steps' own writes).
func (p *planProbe) assertHotPathCheap() {
	t := p.t
	t.Helper()
	assert.Less(t, p.buffers(p.wakeup), int64(100), "buffers read by NextWakeup")
	var claims []*backends.Claim
	assert.Less(t, p.buffers(func() { claims = p.claim(20) }), int64(700), "buffers read by a claim of 9 steps")
	require.Len(t, claims, 9, "every pending step of the unfinished tasks")
	assert.Less(t, p.buffers(func() { p.complete(claims) }), int64(900), "buffers read by 9 results")
}

// The wake-up question, a claim and results read a few buffers however many
// tasks finished since the last VACUUM. Each finished task leaves a dead
// entry in the partial index tasks_unfinished until VACUUM removes it; with
// statistics that say few tasks are unfinished (true of any database that
// has run a while), the planner once answered "is this step's task
// unfinished?" with a bitmap scan of that whole index, which never marks
// entries dead, so every call read every such task's row again
// (migration 0006). The plans here are made as a pooled connection makes
// them: generic, after an ANALYZE of that history, then kept.
func TestLookupsIgnoreUnvacuumedHistory(t *testing.T) {
	t.Parallel()
	p := newPlanProbe(t)
	p.finishedHistory(40_000) // ANALYZE came, VACUUM did not
	p.exec(`ANALYZE`)
	p.genericPlans()
	p.workLeft()

	// Measured before the fix: 802 and 1,329; after: 11 and 315, most of it
	// the 9 steps' writes. The results read 437 either way.
	p.assertHotPathCheap()
}

// The engine's hot statements keep to key lookups even with plans made
// while the tables were small. A pooled connection makes its plans once
// and keeps them until the next ANALYZE (autovacuum's, within a minute or
// so on a busy database; never here, where it is off); the planner, told
// that a table holds two rows, once answered a join by reading the whole
// table for each row (the tasks of a result batch, the picks of a claim),
// and kept that plan as the table grew.
func TestPlansMadeYoungStayCheap(t *testing.T) {
	t.Parallel()
	p := newPlanProbe(t)
	seedTasks(t, p.s, 2, 1, backends.StateInProgress, backends.StatePending) // a young database, ANALYZEd
	p.genericPlans()
	// The plans are made here, and kept.
	p.complete(p.claim(1))
	_, err := p.s.NextWakeup(p.ctx, benchNow)
	require.NoError(t, err)

	p.finishedHistory(20_000) // and no ANALYZE came
	p.workLeft()

	// Measured with the joins: 40,466 buffers for the claim (with no steps
	// among the 20,000 tasks; 305,067 with them) and 273,282 for the 9
	// results; now 9, 326 and 448, most of it the 9 steps' writes.
	p.assertHotPathCheap()
}

// A reader of the log finds its first row by the primary key and reads on
// in seq order without a sort, whichever filters it sets: the plans a
// pooled connection keeps (generic ones) over a log of 50,000 runs.
func TestEventListPlansUseTheKeys(t *testing.T) {
	t.Parallel()
	p := newPlanProbe(t)
	p.exec(`INSERT INTO tasks (namespace, workflow_name, workflow_version, context, requested_at, created_at, updated_at)
		SELECT 'ns' || (g % 5), 'wf', '1', '{}', $1, $1, $1 FROM generate_series(1, 2000) g`, benchNow)
	p.exec(`INSERT INTO events (seq, last_seq, task_id, namespace, created_at, body)
		SELECT g * 3 + 1, g * 3 + 3, t.first + g % 2000, 'ns' || (g % 5), $1, '[]'
		  FROM generate_series(0, 49999) g, (SELECT min(id) AS first FROM tasks) t`, benchNow)
	p.exec(`ANALYZE events`)
	p.genericPlans()
	// EXPLAIN of the statement itself would plan it for the values given
	// (a custom plan); EXPLAIN EXECUTE of a prepared one shows the generic
	// plan the pool keeps (the values, constants here, do not change it).
	for i, c := range []struct {
		name, execute string
		q             backends.EventQuery
		index         string
	}{
		{"everything", `(100, 100)`, backends.EventQuery{After: 100}, "events_pkey"},
		{"a task's", `(100, 100, 5)`, backends.EventQuery{After: 100, TaskID: 5}, "events_task"},
		{"namespaces'", `(100, 100, '{ns1}')`, backends.EventQuery{After: 100, Namespaces: []string{"ns1"}}, "events_pkey"},
	} {
		sql, _ := postgres.ListEventsSQL(&c.q)
		name := pgx.Identifier{"list_events_" + strconv.Itoa(i)}.Sanitize()
		p.exec(`PREPARE ` + name + ` AS ` + sql)
		text := explain(t, p.ctx, p.s, `EXPLAIN EXECUTE `+name+c.execute)
		assert.Contains(t, text, "Index Only Scan Backward using events_pkey", "%s: the row holding After, by the key\n%s", c.name, text)
		assert.Contains(t, text, "Index Scan using "+c.index+" on events ", "%s\n%s", c.name, text)
		assert.NotContains(t, text, "Sort", "%s: rows read in seq order\n%s", c.name, text)
	}
}
