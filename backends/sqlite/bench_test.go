package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
)

// Benchmarks. Run them with, for example:
//
//	go test ./backends/sqlite -run '^$' -bench . -benchtime 2000x
//
// BenchmarkClaim/finished_1M seeds a million finished steps (a few seconds)
// and is skipped under -short.

var benchNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db")+"?synchronous=normal")
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s
}

// seedTasks bulk-inserts n tasks in the given state, each with stepsPer
// steps in stepState and no edges, in transactions of at most 250,000 steps,
// with recursive CTEs rather than one statement per row.
func seedTasks(b *testing.B, s *Store, n, stepsPer int, taskState, stepState backends.State) {
	b.Helper()
	ctx := context.Background()
	perTx := max(1, 250_000/max(1, stepsPer))
	for done := 0; done < n; done += perTx {
		batch := min(perTx, n-done)
		tx, err := s.writer.BeginTx(ctx, nil)
		require.NoError(b, err)
		var first int64
		require.NoError(b, tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) + 1 FROM tasks`).Scan(&first))
		_, err = tx.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO tasks (namespace, workflow_name, workflow_version, context, requested_at, request_hash, state, created_at, updated_at)
			SELECT 'bench', 'seed', '0.1.0', '{}', 0, '', ?, 0, 0 FROM n`, batch, string(taskState))
		require.NoError(b, err)
		if stepsPer > 0 {
			_, err = tx.ExecContext(ctx, `WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < ? - 1)
				INSERT INTO steps (task_id, name, position, handler, retryable, retry_limit, backoff_base_us,
					backoff_max_us, timeout_us, skippable, state, attempts, created_at, updated_at)
				SELECT t.id, 's' || k.j, k.j, 'builtin.noop', 1, 3, 1000000, 30000000, 30000000, 0, ?,
					CASE WHEN ? = 'pending' THEN 0 ELSE 1 END, 0, 0
				FROM tasks t, k WHERE t.id BETWEEN ? AND ?`,
				stepsPer, string(stepState), string(stepState), first, first+int64(batch)-1)
			require.NoError(b, err)
		}
		require.NoError(b, tx.Commit())
	}
	_, err := s.writer.ExecContext(ctx, `ANALYZE`)
	require.NoError(b, err)
}

// One 50-step task among 5,000 other unfinished tasks (10 steps each).
func BenchmarkReadinessAndContext50Steps(b *testing.B) {
	s := benchStore(b)
	task := backendtest.CreateTask(b, s, backendtest.RandomDAG(50, 1), benchNow)
	backendtest.Progress(b, s, 20, benchNow) // the bench task is the oldest: these are its steps
	seedTasks(b, s, 5000, 10, backends.StateInProgress, backends.StatePending)
	ctx := context.Background()
	b.Run("readiness", func(b *testing.B) {
		for b.Loop() {
			rows, err := s.StepReadiness(ctx, task.ID, benchNow)
			if err != nil || len(rows) != 50 {
				b.Fatal(err, len(rows))
			}
		}
	})
	b.Run("context", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.TaskExecutionContext(ctx, task.ID, benchNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The target is on the median: report it beside the mean (ns/op).
	b.Run("readiness+context", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := s.StepReadiness(ctx, task.ID, benchNow); err != nil {
				b.Fatal(err)
			}
			if _, err := s.TaskExecutionContext(ctx, task.ID, benchNow); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	})
}

func BenchmarkContext1000Steps(b *testing.B) {
	s := benchStore(b)
	task := backendtest.CreateTask(b, s, backendtest.RandomDAG(1000, 2), benchNow)
	backendtest.Progress(b, s, 100, benchNow)
	ctx := context.Background()
	for b.Loop() {
		ec, err := s.TaskExecutionContext(ctx, task.ID, benchNow)
		if err != nil || ec.TotalSteps != 1000 {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchContext1000Tasks(b *testing.B) {
	s := benchStore(b)
	seedTasks(b, s, 1000, 10, backends.StateInProgress, backends.StatePending)
	ids := make([]int64, 1000)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	ctx := context.Background()
	for b.Loop() {
		ecs, err := s.TaskExecutionContexts(ctx, ids, benchNow)
		if err != nil || len(ecs) != 1000 {
			b.Fatal(err, len(ecs))
		}
	}
}

// BenchmarkClaim measures one ClaimSteps (limit 1) that finds one ready
// step, with an empty history and with 1,000,000 finished steps (100,000
// complete tasks of 10 steps). Only the claim is timed. The stores are
// seeded once, here, not per sub-benchmark run.
func BenchmarkClaim(b *testing.B) {
	empty := benchStore(b)
	var history *Store
	if !testing.Short() {
		history = benchStore(b)
		start := time.Now()
		seedTasks(b, history, 100_000, 10, backends.StateComplete, backends.StateComplete)
		b.Logf("seeded 1,000,000 finished steps in %s", time.Since(start).Round(time.Millisecond))
		// With a million finished steps (and ANALYZE statistics) the claim
		// still walks only the partial index.
		plan := queryPlan(b, history, claimRestSQL, sql.Named("now", 0), sql.Named("limit", 1), sql.Named("excluded", "[]"), sql.Named("picked", "[]"))
		require.Contains(b, plan, "SCAN s USING INDEX steps_claimable")
		require.NotContains(b, plan, "TEMP B-TREE")
	}
	for _, bc := range []struct {
		name  string
		store *Store
	}{{"finished_0", empty}, {"finished_1M", history}} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.store
			if s == nil {
				b.Skip("seeding a million steps is skipped under -short")
			}
			ctx := context.Background()
			steps := []backends.NewStep{{Name: "a", Handler: "builtin.noop", Retryable: true, RetryLimit: 3,
				BackoffBase: time.Second, BackoffMax: 30 * time.Second}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				backendtest.CreateTask(b, s, steps, benchNow)
				b.StartTimer()
				cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "bench", Limit: 1, LeaseDuration: time.Minute, Now: benchNow})
				b.StopTimer()
				if err != nil || len(cs) != 1 {
					b.Fatal(err, len(cs))
				}
				if _, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: benchNow}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCreateTask10Steps creates 10-step chains one after another: the
// writer's time per creation (task, transition, 10 steps, 9 edges).
func BenchmarkCreateTask10Steps(b *testing.B) {
	s := benchStore(b)
	steps := backendtest.Chain(10)
	for b.Loop() {
		backendtest.CreateTask(b, s, steps, benchNow)
	}
}

// BenchmarkStepCycle is the writer's work per step on the engine's hot
// path, one step after another: claim the one ready step of a 10-step
// chain, then complete it (which readies the next). Task creation is not
// timed.
func BenchmarkStepCycle(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	steps := backendtest.Chain(10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%10 == 0 {
			b.StopTimer()
			backendtest.CreateTask(b, s, steps, benchNow)
			b.StartTimer()
		}
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "bench", Limit: 1, LeaseDuration: time.Minute, Now: benchNow})
		if err != nil || len(cs) != 1 {
			b.Fatal(err, len(cs))
		}
		if _, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: benchNow}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWALCommit is SQLite's own commit rate here, a yardstick for the
// store's figures: one-row INSERT transactions, one after another, on a
// file opened as the store opens it (WAL), with each synchronous setting.
// With full, each commit waits for the disk's flush.
func BenchmarkWALCommit(b *testing.B) {
	for _, sync := range []string{"normal", "full"} {
		b.Run("synchronous="+sync, func(b *testing.B) {
			s, err := Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "commit.db")+"?synchronous="+sync)
			require.NoError(b, err)
			b.Cleanup(func() { s.Close() })
			_, err = s.writer.Exec(`CREATE TABLE yardstick (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`)
			require.NoError(b, err)
			ins, err := s.writer.Prepare(`INSERT INTO yardstick (v) VALUES (?)`)
			require.NoError(b, err)
			defer ins.Close()
			start := time.Now()
			for b.Loop() {
				if _, err := ins.Exec("x"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
