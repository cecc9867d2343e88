package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// Benchmarks, each on a database of its own. Run them with, for example:
//
//	go test ./backends/postgres -run '^$' -bench . -benchtime 2000x
//
// Latency benchmarks also report the median of their iterations
// (p50-ms). BenchmarkClaim/finished_1M seeds a million finished steps and is
// skipped under -short.

var benchNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// seedTasks bulk-inserts n tasks in the given state, each with stepsPer
// steps in stepState and no edges, with generate_series rather than one
// statement per row, then ANALYZEs.
func seedTasks(tb testing.TB, s *postgres.Store, n, stepsPer int, taskState, stepState backends.State) {
	tb.Helper()
	insertTasks(tb, s, n, stepsPer, taskState, stepState, true)
}

// insertTasks is seedTasks, with the ANALYZE optional.
func insertTasks(tb testing.TB, s *postgres.Store, n, stepsPer int, taskState, stepState backends.State, analyze bool) {
	tb.Helper()
	ctx := context.Background()
	perTx := max(1, 200_000/max(1, stepsPer))
	for done := 0; done < n; done += perTx {
		batch := min(perTx, n-done)
		_, err := s.Pool().Exec(ctx, `WITH t AS (
				INSERT INTO tasks (namespace, workflow_name, workflow_version, context, requested_at, state, created_at, updated_at)
				SELECT 'bench', 'seed', '0.1.0', '{}', $3, $1, $3, $3 FROM generate_series(1, $2::int)
				RETURNING id)
			INSERT INTO steps (task_id, name, position, handler, retryable, retry_limit, backoff_base_us,
				backoff_max_us, timeout_us, skippable, state, attempts, created_at, updated_at)
			SELECT t.id, 's' || k, k, 'builtin.noop', true, 3, 1000000, 30000000, 30000000, false, $4::text,
				CASE WHEN $4::text = 'pending' THEN 0 ELSE 1 END, $3, $3
			FROM t, generate_series(0, $5::int - 1) k`,
			string(taskState), batch, benchNow, string(stepState), stepsPer)
		require.NoError(tb, err)
	}
	if analyze {
		_, err := s.Pool().Exec(ctx, `ANALYZE`)
		require.NoError(tb, err)
	}
}

// timed runs fn b.N times and reports the median duration as p50-ms.
func timed(b *testing.B, fn func()) {
	b.Helper()
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		fn()
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e6, "p50-ms")
}

// One 50-step task among 5,000 other unfinished tasks (10 steps each).
func BenchmarkReadinessAndContext50Steps(b *testing.B) {
	s := pgtest.Open(b)
	task := backendtest.CreateTask(b, s, backendtest.RandomDAG(50, 1), benchNow)
	backendtest.Progress(b, s, 20, benchNow) // the bench task is the oldest: these are its steps
	seedTasks(b, s, 5000, 10, backends.StateInProgress, backends.StatePending)
	ctx := context.Background()
	b.Run("readiness", func(b *testing.B) {
		timed(b, func() {
			rows, err := s.StepReadiness(ctx, task.ID, benchNow)
			if err != nil || len(rows) != 50 {
				b.Fatal(err, len(rows))
			}
		})
	})
	b.Run("context", func(b *testing.B) {
		timed(b, func() {
			if _, err := s.TaskExecutionContext(ctx, task.ID, benchNow); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkBatchContext1000Tasks(b *testing.B) {
	s := pgtest.Open(b)
	seedTasks(b, s, 1000, 10, backends.StateInProgress, backends.StatePending)
	ids := make([]int64, 1000)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	ctx := context.Background()
	timed(b, func() {
		ecs, err := s.TaskExecutionContexts(ctx, ids, benchNow)
		if err != nil || len(ecs) != 1000 {
			b.Fatal(err, len(ecs))
		}
	})
}

// BenchmarkClaim measures one ClaimSteps (limit 1) that finds one ready
// step, with an empty history and with 1,000,000 finished steps (100,000
// complete tasks of 10 steps). Only the claim is timed.
func BenchmarkClaim(b *testing.B) {
	empty := pgtest.Open(b)
	var history *postgres.Store
	if !testing.Short() {
		history = pgtest.Open(b)
		start := time.Now()
		seedTasks(b, history, 100_000, 10, backends.StateComplete, backends.StateComplete)
		b.Logf("seeded 1,000,000 finished steps in %s", time.Since(start).Round(time.Millisecond))
	}
	for _, bc := range []struct {
		name  string
		store *postgres.Store
	}{{"finished_0", empty}, {"finished_1M", history}} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.store
			if s == nil {
				b.Skip("seeding a million steps is skipped under -short")
			}
			ctx := context.Background()
			steps := []backends.NewStep{{Name: "a", Handler: "builtin.noop", Retryable: true, RetryLimit: 3,
				BackoffBase: time.Second, BackoffMax: 30 * time.Second}}
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				backendtest.CreateTask(b, s, steps, benchNow)
				b.StartTimer()
				start := time.Now()
				cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "bench", Limit: 1, LeaseDuration: time.Minute, Now: benchNow})
				ds = append(ds, time.Since(start))
				b.StopTimer()
				if err != nil || len(cs) != 1 {
					b.Fatal(err, len(cs))
				}
				if _, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: benchNow}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e6, "p50-ms")
		})
	}
}

// BenchmarkNextWakeup asks for the next wake-up instant, as an engine
// with nothing to claim does many times a second, among 5,000 running
// 10-step chains: each one's first step is running (leased), every other
// step waits for its parent.
func BenchmarkNextWakeup(b *testing.B) {
	s := pgtest.Open(b)
	seedTasks(b, s, 5000, 10, backends.StateInProgress, backends.StatePending)
	ctx := context.Background()
	_, err := s.Pool().Exec(ctx, `UPDATE steps SET
			state = CASE WHEN position = 0 THEN 'in_progress' ELSE state END,
			lease_owner = CASE WHEN position = 0 THEN 'bench' END,
			lease_expires_at = CASE WHEN position = 0 THEN $1::timestamptz + interval '5 minutes' END,
			unsatisfied_parents = CASE WHEN position = 0 THEN 0 ELSE 1 END`, benchNow)
	require.NoError(b, err)
	// As autovacuum would have: the update left 45,000 dead entries in
	// steps_claimable.
	_, err = s.Pool().Exec(ctx, `VACUUM ANALYZE`)
	require.NoError(b, err)
	timed(b, func() {
		if _, err := s.NextWakeup(ctx, benchNow); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkCreateTask10Steps creates 10-step chains, one after another.
func BenchmarkCreateTask10Steps(b *testing.B) {
	s := pgtest.Open(b)
	steps := backendtest.Chain(10)
	timed(b, func() { backendtest.CreateTask(b, s, steps, benchNow) })
}

// BenchmarkCreateTaskConcurrent creates 1-step tasks from 4 clients at
// once (the engine throughput benchmark's "single" shape, without the
// engine) and reports tasks/s.
func BenchmarkCreateTaskConcurrent(b *testing.B) {
	s := pgtest.Open(b)
	steps := backendtest.Chain(1)
	const clients = 4
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				backendtest.CreateTask(b, s, steps, benchNow)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
