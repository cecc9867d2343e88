package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	backendtest.Run(t, func(t *testing.T) backends.Store { return pgtest.Open(t) })
}

func TestConcurrentMigrators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	const migrators = 4
	applied := make(chan []string, migrators)
	var wg sync.WaitGroup
	for range migrators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := postgres.Migrate(ctx, dsn)
			assert.NoError(t, err)
			applied <- names
		}()
	}
	wg.Wait()
	close(applied)
	var all []string
	for names := range applied {
		all = append(all, names...)
	}
	require.ElementsMatch(t, []string{"0001_tables.sql", "0002_functions.sql", "0003_settings.sql", "0004_next_wakeup.sql", "0005_task_namespaces.sql", "0006_task_state_lookups.sql", "0007_context_waiting_cancelled.sql", "0008_api_keys.sql", "0009_events.sql", "0010_event_runs.sql", "0011_hot_leases.sql", "0012_nodes.sql", "0013_schedules.sql", "0014_schedule_firings_created.sql"}, all, "each migration applied once")
	s, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	require.NoError(t, err)
	s.Close()
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	_, err := s.Pool().Exec(ctx, `INSERT INTO taskerd_schema_migrations (version, name) VALUES (99, '0099_future.sql')`)
	require.NoError(t, err)
	dsn := s.Pool().Config().ConnString()
	for _, opts := range [][]postgres.Option{nil, {postgres.WithoutMigrate()}} {
		_, err = postgres.Open(ctx, dsn, opts...)
		require.ErrorContains(t, err, "database schema version 99 is newer than this taskerd knows (14): upgrade taskerd")
	}
}

func TestDSNs(t *testing.T) {
	t.Parallel()
	require.True(t, postgres.IsDSN("postgres://u@h/db"))
	require.True(t, postgres.IsDSN("postgresql://u@h/db"))
	require.False(t, postgres.IsDSN("sqlite:x.db"))
	require.Equal(t, "postgres://u:xxxxx@h:5432/db", postgres.Redact("postgres://u:p@ss@h:5432/db"))
	require.Equal(t, "postgresql://u@h/db", postgres.Redact("postgresql://u@h/db"))
	err := postgres.CheckDSN("postgres://u:secret@h:port/db")
	require.ErrorContains(t, err, "cannot be parsed")
	require.NotContains(t, err.Error(), "secret")
	require.ErrorContains(t, postgres.CheckDSN("mysql://x"), "want postgres://")
}

// The four functions are callable from plain SQL, now() by default, and
// agree with what the Store returns.
func TestFunctionsCallableFromSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0",
		Steps: []backends.NewStep{
			{Name: "a", Handler: "builtin.noop", Retryable: true, RetryLimit: 3, BackoffBase: time.Second, BackoffMax: time.Minute},
			{Name: "b", Handler: "builtin.noop", Retryable: true, RetryLimit: 3, BackoffBase: time.Second, BackoffMax: time.Minute, Parents: []string{"a"}},
		}, Now: now})
	require.NoError(t, err)
	var ready []string
	rows, err := s.Pool().Query(ctx, `SELECT name FROM taskerd_step_readiness($1) WHERE ready_for_execution`, task.ID)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		ready = append(ready, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"a"}, ready)
	var n int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM taskerd_step_readiness_batch(ARRAY[$1::bigint, 999])`, task.ID).Scan(&n))
	require.Equal(t, 2, n)
	var status string
	var pct float64
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT execution_status, completion_percentage FROM taskerd_task_execution_context($1)`, task.ID).Scan(&status, &pct))
	require.Equal(t, backends.StatusHasReadySteps, status)
	require.Equal(t, 0.0, pct)
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM taskerd_task_execution_contexts(ARRAY[$1::bigint, 999])`, task.ID).Scan(&n))
	require.Equal(t, 1, n)
}

// Steps of one task finishing at the same instant on different
// connections: finalize locks the task before it reads the context, so the
// last one to commit sees all the others and completes the task (without
// the lock each could see the others still running).
func TestConcurrentResultsFinalizeOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t, postgres.WithMaxConns(8))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for round := range 10 {
		var steps []backends.NewStep
		for i := range 6 {
			steps = append(steps, backends.NewStep{Name: fmt.Sprintf("s%d", i), Handler: "builtin.noop", Retryable: true,
				RetryLimit: 3, BackoffBase: time.Second, BackoffMax: time.Minute})
		}
		task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w",
			WorkflowVersion: "0.1.0", Steps: steps, Now: now})
		require.NoError(t, err)
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 10, LeaseDuration: time.Minute, Now: now})
		require.NoError(t, err)
		require.Len(t, cs, 6)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now})
				assert.NoError(t, err)
			}()
		}
		close(start)
		wg.Wait()
		got, err := s.GetTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateComplete, got.State, "round %d", round)
	}
}

// With a large finished history the claim reads only the partial index of
// steps that may run.
func TestClaimPlanUsesPartialIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	seedTasks(t, s, 20_000, 5, backends.StateComplete, backends.StateComplete)
	seedTasks(t, s, 10, 5, backends.StateInProgress, backends.StatePending)
	plan := explain(t, ctx, s, `EXPLAIN `+postgres.ClaimSQL, time.Now(), 4, []string{}, []int64{})
	require.Contains(t, plan, "steps_claimable", plan)
}

// explain runs an EXPLAIN statement and returns its plan's lines as one
// text.
func explain(t *testing.T, ctx context.Context, s *postgres.Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.Pool().Query(ctx, query, args...)
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	return strings.Join(plan, "\n")
}

// The store's connections run without JIT: a generic plan's estimates can
// pass jit_above_cost, and compiling on every execution cost the wake-up
// question 20 ms instead of 0.1 ms.
func TestConnectionsRunWithoutJIT(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	var jit string
	require.NoError(t, s.Pool().QueryRow(ctx, `SHOW jit`).Scan(&jit))
	assert.Equal(t, "off", jit)

	// A DSN that asks for it gets it.
	dsn := s.Pool().Config().ConnString()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	on, err := postgres.Open(ctx, dsn+sep+"jit=on", postgres.WithoutMigrate())
	require.NoError(t, err)
	defer on.Close()
	require.NoError(t, on.Pool().QueryRow(ctx, `SHOW jit`).Scan(&jit))
	assert.Equal(t, "on", jit)
}

// A server that answers with a refusal is not waited for.
func TestOpenDoesNotWaitForARefusal(t *testing.T) {
	t.Parallel()
	pgtest.NewEmptyDatabase(t) // skips (or fails) without a server
	start := time.Now()
	_, err := postgres.Open(context.Background(), pgtest.DatabaseDSN(t, "taskerd_no_such_database"), postgres.WithWait(time.Minute))
	require.ErrorContains(t, err, `database "taskerd_no_such_database" does not exist`)
	require.Less(t, time.Since(start), 20*time.Second)
}

// A batch holding two results of one task is written in rounds, so that
// the second result's finalize sees the first (SEMANTICS §5.5 per result);
// a step given twice in a batch is written once.
func TestBatchWithTwoResultsOfOneTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []backends.NewStep{
		{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Minute},
		{Name: "b", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Minute},
		{Name: "c", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Minute, Parents: []string{"a", "b"}},
	}
	join, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "join", WorkflowVersion: "1", Steps: steps, Now: now})
	require.NoError(t, err)
	single, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "one", WorkflowVersion: "1", Steps: steps[:1], Now: now})
	require.NoError(t, err)
	claims, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 10, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, claims, 3)
	params := func(c *backends.Claim) backends.CompleteStepParams {
		return backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now.Add(time.Second)}
	}
	// Claim order: the heads (join's a, single's a), then join's b.
	joinA, singleA, joinB := claims[0], claims[1], claims[2]
	require.Equal(t, []int64{join.ID, single.ID, join.ID}, []int64{joinA.Task.ID, singleA.Task.ID, joinB.Task.ID})
	require.Equal(t, "b", joinB.Step.Name)
	rrs, errs := postgres.RecordTogether(ctx, s, []backends.CompleteStepParams{
		params(joinA), params(joinB), params(singleA), params(joinA),
	})
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	require.ErrorIs(t, errs[3], backends.ErrLeaseLost)

	require.Equal(t, join.ID, rrs[0].Step.TaskID)
	require.Equal(t, 1, rrs[0].Context.CompletedSteps, "a's finalize sees a alone")
	require.Equal(t, backends.StatusProcessing, rrs[0].Context.ExecutionStatus, "b was still running")
	require.Equal(t, 2, rrs[1].Context.CompletedSteps, "b's finalize sees a too")
	require.Equal(t, backends.StatusHasReadySteps, rrs[1].Context.ExecutionStatus)
	require.Equal(t, backends.DecisionContinue, rrs[1].Decision)

	require.Equal(t, single.ID, rrs[2].Step.TaskID)
	require.Equal(t, backends.DecisionComplete, rrs[2].Decision)
	require.Equal(t, backends.StateComplete, rrs[2].Task.State)

	st, err := s.ListSteps(ctx, join.ID)
	require.NoError(t, err)
	require.Equal(t, []backends.State{backends.StateComplete, backends.StateComplete, backends.StatePending},
		[]backends.State{st[0].State, st[1].State, st[2].State})
	trs, err := s.ListTransitions(ctx, join.ID)
	require.NoError(t, err)
	completions := 0
	for _, tr := range trs {
		if tr.StepID == claims[0].Step.ID && tr.To == backends.StateComplete {
			completions++
		}
	}
	require.Equal(t, 1, completions, "a is completed once")
}

// Starts written together: each caller gets its own outcome (a stale token
// or a second start of one step is lease lost; a step whose cancel was
// requested is not started), as when each was written alone.
func TestStartsTogetherEachGetTheirOwnOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"one", "two", "three"} {
		_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: name, WorkflowVersion: "1",
			Steps: []backends.NewStep{{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Minute}}, Now: now})
		require.NoError(t, err)
	}
	// All three claimed into places that wait for a worker: not started.
	claims, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 3, Queued: 3, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, claims, 3)
	for _, c := range claims {
		require.Nil(t, c.Step.StartedAt)
	}
	_, err = s.CancelTask(ctx, &backends.CancelTaskParams{TaskID: claims[2].Step.TaskID, Reason: "test", Now: now})
	require.NoError(t, err)

	at := now.Add(time.Second)
	start := func(c *backends.Claim, token int64) backends.StartStepParams {
		return backends.StartStepParams{StepID: c.Step.ID, Owner: "n", LeaseToken: token, LeaseDuration: time.Minute, Now: at}
	}
	cancels, errs := postgres.StartTogether(ctx, s, []backends.StartStepParams{
		start(claims[0], claims[0].Step.LeaseToken),
		start(claims[1], claims[1].Step.LeaseToken-1), // stale
		start(claims[2], claims[2].Step.LeaseToken),
		start(claims[0], claims[0].Step.LeaseToken), // the same start again
	})
	require.NoError(t, errs[0])
	require.False(t, cancels[0])
	require.ErrorIs(t, errs[1], backends.ErrLeaseLost)
	require.NoError(t, errs[2])
	require.True(t, cancels[2], "its task was cancelled: the handler must not start")
	require.NoError(t, errs[3], "a second start under the same token is the same start")

	for i, want := range []*time.Time{&at, nil, nil} {
		st, err := s.GetStep(ctx, claims[i].Step.ID)
		require.NoError(t, err)
		if want == nil {
			require.Nil(t, st.StartedAt, "step %d", i)
			continue
		}
		require.NotNil(t, st.StartedAt, "step %d", i)
		require.True(t, want.Equal(*st.StartedAt), "step %d started at %s", i, st.StartedAt)
		require.True(t, at.Add(time.Minute).Equal(*st.LeaseExpiresAt))
	}
}

// A step's start and its heartbeats change only its lease (migration
// 0011): PostgreSQL writes them as HOT updates, with no new index entry.
func TestLeaseWritesAreHOTUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	dsn := s.Pool().Config().ConnString()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "1",
		Steps: []backends.NewStep{{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Minute}}, Now: now})
	require.NoError(t, err)
	claims, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1, Queued: 1, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, claims, 1)
	c := claims[0]
	_, err = s.StartStep(ctx, &backends.StartStepParams{StepID: c.Step.ID, Owner: "n", LeaseToken: c.Step.LeaseToken, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	const heartbeats = 3
	for i := range heartbeats {
		st, err := s.ExtendLeases(ctx, &backends.ExtendLeasesParams{Owner: "n", Leases: []backends.Lease{{StepID: c.Step.ID, Token: c.Step.LeaseToken}},
			LeaseDuration: time.Minute, Now: now.Add(time.Duration(i+1) * time.Second)})
		require.NoError(t, err)
		require.False(t, st[0].Lost)
	}
	// A backend reports its statistics when it exits at the latest.
	require.NoError(t, s.Close())
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	// The claim, the start and the heartbeats.
	const updates = 2 + heartbeats
	var n, hot int64
	require.Eventually(t, func() bool {
		require.NoError(t, conn.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relname = 'steps' AND schemaname = current_schema()`).Scan(&n, &hot))
		return n >= updates
	}, 15*time.Second, 50*time.Millisecond, "the statistics of the store's updates did not arrive")
	require.Equal(t, int64(updates), n)
	require.Equal(t, int64(updates-1), hot, "all but the claim (which changes state) are HOT updates")
}
