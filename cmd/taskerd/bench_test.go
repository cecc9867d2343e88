package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/internal/bench"
)

// benchTasks is --tasks in the tests: enough for percentiles, few enough
// for a few seconds per backend.
const benchTasks = 6

var benchSteps = map[string]int{"noop-1": 1, "noop-1-live": 1, "linear-10": 10, "fanout-50": 50, "plugin-1": 1, "retry": 1, "api-create": 1}

// Every scenario with a few tasks, on a throwaway SQLite file and in a
// PostgreSQL database of its own: everything completes, the counts add
// up, the percentiles are ordered. plugin-1 runs the built binary, which
// starts itself as the plugin (a test binary is not taskerd).
func TestBenchScenarios(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, bench.Scenarios(), keys(benchSteps), "a scenario without a test")
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dsn := ""
			if backend == "postgres" {
				dsn = pgtest.NewDatabase(t)
			}
			for _, sc := range bench.Scenarios() {
				args := []string{"bench", "--scenario", sc, "--tasks", strconv.Itoa(benchTasks), "--json"}
				if dsn != "" {
					args = append(args, "--db", dsn)
				}
				var out string
				if sc == "plugin-1" {
					b, err := exec.Command(buildTaskerd(t), args...).Output()
					require.NoError(t, err, "%s: %s", sc, exitStderr(err))
					out = string(b)
				} else {
					r := runCLI(t, args...)
					require.Equal(t, 0, r.code, "%s: %s", sc, r.stderr)
					out = r.stdout
				}
				res := decodeBench(t, out)
				checkBench(t, res, sc, benchTasks)
				assert.Equal(t, backend, res.Database, sc)
			}
			if dsn != "" {
				require.Empty(t, benchSchemas(t, dsn), "every run dropped its schema")
			}
		})
	}
}

func keys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func decodeBench(t *testing.T, out string) *bench.Result {
	t.Helper()
	var res bench.Result
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&res), out)
	require.False(t, dec.More(), "one JSON object: %s", out)
	return &res
}

func checkBench(t *testing.T, res *bench.Result, sc string, tasks int) {
	t.Helper()
	steps := benchSteps[sc]
	assert.Equal(t, sc, res.Scenario)
	if tasks > 0 {
		assert.Equal(t, tasks, res.Tasks, sc)
	}
	assert.Equal(t, steps, res.StepsPerTask, sc)
	assert.Equal(t, res.Tasks*steps, res.Steps, sc)
	assert.Equal(t, res.Tasks, res.AnalyzedTasks, sc)
	assert.Equal(t, res.Steps, res.CompleteSteps, "%s: every step complete", sc)
	attempts := res.Steps
	if sc == "retry" {
		attempts = 2 * res.Steps // every step fails once
	}
	assert.Equal(t, attempts, res.Attempts, sc)
	assert.Positive(t, res.ElapsedS, sc)
	assert.Positive(t, res.StepsPerS, sc)
	// Rates are rounded to 0.1, the elapsed time to 1 ms: tasks/s times
	// 50 steps (fanout-50) may be off by 50 times half of 0.1.
	assert.InDelta(t, res.StepsPerS, res.TasksPerS*float64(steps), 0.05*res.StepsPerS+0.05*float64(steps), sc)
	// ElapsedS is rounded to 1 ms and StepsPerS to 0.1 (from the unrounded
	// time): the rate lies between the steps over the longest and the
	// shortest time that rounds to ElapsedS.
	lo, hi := float64(res.Steps)/(res.ElapsedS+0.0005), float64(res.Steps)/max(res.ElapsedS-0.0005, 1e-9)
	assert.True(t, res.StepsPerS >= lo-0.05 && res.StepsPerS <= hi+0.05,
		"%s: %.1f steps/s is not %d steps in %.3f s (%.1f to %.1f)", sc, res.StepsPerS, res.Steps, res.ElapsedS, lo, hi)

	ordered := func(what string, p *bench.Percentiles, n int) {
		if !assert.NotNil(t, p, "%s: %s", sc, what) {
			return
		}
		if n > 0 {
			assert.Equal(t, n, p.N, "%s: %s", sc, what)
		}
		assert.Positive(t, p.N, "%s: %s", sc, what)
		assert.GreaterOrEqual(t, p.P50, 0.0, "%s: %s", sc, what)
		assert.LessOrEqual(t, p.P50, p.P95, "%s: %s", sc, what)
		assert.LessOrEqual(t, p.P95, p.P99, "%s: %s", sc, what)
		assert.LessOrEqual(t, p.P99, p.Max, "%s: %s", sc, what)
	}
	// A retry counts twice: ready for its first attempt, and after its
	// backoff.
	ordered("ready->running", res.ReadyToRunning, attempts)
	ordered("step overhead", res.StepOverhead, res.Steps)
	ordered("step overhead to commit", res.StepOverheadCommitted, res.Steps)
	ordered("exec-context query", res.ExecContext, 0)
	if sc == "fanout-50" {
		ordered("fanout spread", res.FanoutSpread, res.Tasks)
	} else {
		assert.Nil(t, res.FanoutSpread, sc)
	}
	if sc == "api-create" {
		if assert.NotNil(t, res.HTTP) {
			assert.Equal(t, res.Tasks, res.HTTP.Requests)
			assert.Equal(t, res.Tasks, res.HTTP.OK)
			assert.Zero(t, res.HTTP.Errors, res.HTTP.FirstError)
			assert.Positive(t, res.HTTP.AchievedRate)
			ordered("HTTP latency", res.HTTP.Latency, res.Tasks)
		}
	} else {
		assert.Nil(t, res.HTTP, sc)
	}
	if assert.NotNil(t, res.PeakRSSMiB, "Linux has VmHWM") {
		assert.Positive(t, *res.PeakRSSMiB)
	}
}

// benchSchemas are the bench's own schemas left in a database.
func benchSchemas(t *testing.T, dsn string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'taskerd_bench_%'`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// --duration runs for about that long, creating tasks as it goes, and
// waits for them.
func TestBenchDuration(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "bench", "--scenario", "linear-10", "--duration", "300ms", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	res := decodeBench(t, r.stdout)
	checkBench(t, res, "linear-10", 0)
	assert.Positive(t, res.Tasks)
	assert.GreaterOrEqual(t, res.ElapsedS, 0.3)
}

// --cpuprofile writes a CPU profile of the run that go tool pprof reads:
// gzip-compressed protocol buffers of CPU samples naming taskerd's
// functions.
func TestBenchCPUProfile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cpu.prof")
	r := runCLI(t, "bench", "--scenario", "noop-1", "--tasks", "2000", "--json", "--cpuprofile", path)
	require.Equal(t, 0, r.code, r.stderr)
	checkBench(t, decodeBench(t, r.stdout), "noop-1", 2000)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(raw), 2)
	require.Equal(t, []byte{0x1f, 0x8b}, raw[:2], "not a gzip stream")
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	require.NoError(t, err)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	for _, want := range []string{"samples", "cpu", "nanoseconds", "github.com/taskerd/taskerd/"} {
		require.Contains(t, string(body), want, "not a CPU profile of taskerd")
	}

	r = runCLI(t, "bench", "--tasks", "10", "--cpuprofile", filepath.Join(t.TempDir(), "missing", "cpu.prof"))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--cpuprofile")
}

// A database that already holds tasks is refused (exit 2, one line naming
// --force); --force runs there. The table is the default output.
func TestBenchRefusesADatabaseWithTasks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.db")
	r := runCLI(t, "bench", "--db", "sqlite:"+path, "--tasks", "3")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "taskerd bench noop-1: SQLite file "+path)
	require.Regexp(t, `(?m)^steps/s\s+\d`, r.stdout)
	require.Regexp(t, `(?m)^ready->running\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d{3}\s+3$`, r.stdout)

	r = runCLI(t, "bench", "--db", "sqlite:"+path, "--tasks", "3")
	require.Equal(t, 2, r.code, r.stderr)
	require.Equal(t, "taskerd: --db sqlite:"+path+" already holds 3 tasks: taskerd bench runs on a database of its own; name another file, or add --force\n", r.stderr)
	require.Empty(t, r.stdout)

	r = runCLI(t, "bench", "--db", "sqlite:"+path, "--tasks", "3", "--force", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	checkBench(t, decodeBench(t, r.stdout), "noop-1", 3)

	// Someone else's SQLite file.
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", other)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE notes (body TEXT)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	r = runCLI(t, "bench", "--db", "sqlite:"+other, "--tasks", "3")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "holds 1 tables and is not a taskerd database")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"))

	// PostgreSQL: tasks in the database's own schema.
	dsn := pgtest.NewDatabase(t)
	r = runCLI(t, "run", "../../workflows/diamond.hcl", "--workflow", "default/diamond", "--db", dsn, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	r = runCLI(t, "bench", "--db", dsn, "--tasks", "3")
	require.Equal(t, 2, r.code, r.stderr)
	require.Equal(t, "taskerd: --db "+dsn+" already holds 1 task (schema public): taskerd bench runs on a database of its own; name another database, or add --force\n", r.stderr)
	r = runCLI(t, "bench", "--db", dsn, "--tasks", "3", "--force", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	checkBench(t, decodeBench(t, r.stdout), "noop-1", 3)
	require.Empty(t, benchSchemas(t, dsn))
	// The database's own task is where it was, alone.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM public.tasks`).Scan(&n))
	require.Equal(t, 1, n)

	// A schema the DSN names is used and kept.
	named := dsn + "&search_path=mine"
	if !strings.Contains(dsn, "?") {
		named = dsn + "?search_path=mine"
	}
	r = runCLI(t, "bench", "--db", named, "--tasks", "3", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	res := decodeBench(t, r.stdout)
	require.Equal(t, "PostgreSQL schema mine (kept)", res.Where)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM mine.tasks`).Scan(&n))
	require.Equal(t, 3, n)
}

// --nodes runs several engines on one PostgreSQL database: every task
// completes once, and every node started handlers.
func TestBenchNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	const tasks = 400
	r := runCLI(t, "bench", "--db", dsn, "--nodes", "3", "--workers", "4", "--tasks", strconv.Itoa(tasks), "--json")
	require.Equal(t, 0, r.code, r.stderr)
	res := decodeBench(t, r.stdout)
	checkBench(t, res, "noop-1", tasks)
	require.Equal(t, 3, res.Nodes)
	require.Len(t, res.NodeStarts, 3)
	var sum int64
	for i, n := range res.NodeStarts {
		require.Positive(t, n, "node %d started no handler: %v", i+1, res.NodeStarts)
		sum += n
	}
	require.Equal(t, int64(res.Attempts), sum, "each handler start counted once, on the node that made it")

	r = runCLI(t, "bench", "--db", dsn, "--nodes", "2", "--tasks", "20")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "2 nodes of 16 workers")
	require.Regexp(t, `handler starts per node +\d+ / \d+\n`, r.stdout)
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "bench", "--scenario", "nope")
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: --scenario \"nope\": want one of noop-1, noop-1-live, linear-10, fanout-50, plugin-1, retry, api-create\n", r.stderr)
	require.Empty(t, r.stdout)
	for _, args := range [][]string{
		{"--tasks", "0"},
		{"--tasks", "5", "--duration", "1s"},
		{"--workers", "0"},
		{"--duration", "-1s"},
		{"--scenario", "api-create", "--rate", "0"},
		{"--rate", "10"}, // not api-create
		{"--db", "mysql://x"},
		{"--nodes", "0"},
		{"--nodes", "9"},
		{"--nodes", "2"}, // SQLite has one node
	} {
		r := runCLI(t, append([]string{"bench"}, args...)...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "%v: one line: %q", args, r.stderr)
		require.Empty(t, r.stdout, args)
	}
	// The plugin subcommand is not for people.
	r = runCLI(t, "--help")
	require.NotContains(t, r.stdout, benchPluginCmd)
	require.Contains(t, r.stdout, "bench")
}
