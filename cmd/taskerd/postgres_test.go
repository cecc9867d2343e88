package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// The acceptance command, on a PostgreSQL database of its own.
func TestRunDiamondOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	r := runCLI(t, "run", "../../workflows/diamond.hcl", "--workflow", "default/diamond", "--db", dsn, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "complete", rep.Status)
	require.Equal(t, "all_complete", rep.ExecutionStatus)
	require.Len(t, rep.Steps, 7)
	for _, s := range rep.Steps {
		require.Equal(t, "complete", s.Status, s.Name)
	}
}

// TASKERD_DATABASE is read when there is no --db, and the postgresql://
// form works as well as postgres://. --no-migrate accepts a database that
// is up to date.
func TestDatabaseFromEnvironment(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dsn := "postgresql://" + strings.TrimPrefix(pgtest.NewDatabase(t), "postgres://")
	cmd := exec.Command(bin, "run", "../../workflows/diamond.hcl", "--workflow", "default/diamond", "--json", "--no-migrate")
	cmd.Env = append(os.Environ(), "TASKERD_DATABASE="+dsn)
	out, err := cmd.Output()
	require.NoError(t, err)
	require.Equal(t, "complete", decodeReport(t, string(out)).Status)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewEmptyDatabase(t)

	// An empty database is refused under --no-migrate, with what to do.
	r := runCLI(t, "run", "../../workflows/diamond.hcl", "--db", dsn, "--no-migrate")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "database schema version 0 is older than this taskerd's (14) and migrations are disabled: run taskerd migrate")

	r = runCLI(t, "migrate", "--db", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "applied 0001_tables.sql\napplied 0002_functions.sql\napplied 0003_settings.sql\napplied 0004_next_wakeup.sql\napplied 0005_task_namespaces.sql\napplied 0006_task_state_lookups.sql\napplied 0007_context_waiting_cancelled.sql\napplied 0008_api_keys.sql\napplied 0009_events.sql\napplied 0010_event_runs.sql\napplied 0011_hot_leases.sql\napplied 0012_nodes.sql\napplied 0013_schedules.sql\napplied 0014_schedule_firings_created.sql\n"+dsn+": schema version 14, up to date\n", r.stdout)

	// Nothing twice.
	r = runCLI(t, "migrate", "--db", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, dsn+": schema version 14, up to date\n", r.stdout)

	r = runCLI(t, "run", "../../workflows/diamond.hcl", "--db", dsn, "--no-migrate", "--json")
	require.Equal(t, 0, r.code, r.stderr)

	// A database a newer taskerd migrated is refused, by migrate and by run.
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), `INSERT INTO taskerd_schema_migrations (version, name) VALUES (99, '0099_future.sql')`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(context.Background()))
	for _, args := range [][]string{{"migrate", "--db", dsn}, {"run", "../../workflows/diamond.hcl", "--db", dsn}} {
		r = runCLI(t, args...)
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "database schema version 99 is newer than this taskerd knows (14): upgrade taskerd")
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	}
	require.Equal(t, 14, postgres.LatestSchemaVersion(), "update this test with the migrations")
}

// A server that does not answer: retry for --db-wait, then exit 1 with one
// readable line, password redacted.
func TestDBWaitGivesUp(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	for _, args := range [][]string{
		{"run", "../../workflows/diamond.hcl", "--db", "postgres://root:secret@" + addr + "/test", "--db-wait", "1500ms"},
		{"migrate", "--db", "postgres://root:secret@" + addr + "/test", "--db-wait", "1500ms"},
	} {
		start := time.Now()
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		elapsed := time.Since(start)
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, args[0])
		require.Equal(t, 1, exit.ExitCode(), stderr.String())
		require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
		require.Contains(t, stderr.String(), "database not reachable after 1.5s")
		require.Contains(t, stderr.String(), "postgres://root:xxxxx@"+addr+"/test")
		require.NotContains(t, stderr.String(), "secret")
		require.GreaterOrEqual(t, elapsed, time.Second, "it retried")
		require.Less(t, elapsed, 15*time.Second)
	}
}

// Two nodes on one PostgreSQL database: one bootstrap key, written by the
// node that created it only; a key made with taskerd keys works on both
// nodes, and its revocation holds on both from the next request.
func TestKeysOnPostgresNodes(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dsn := pgtest.NewDatabase(t)
	wf := keysTestWorkflows(t)
	fileA, fileB := filepath.Join(t.TempDir(), "a.key"), filepath.Join(t.TempDir(), "b.key")
	a := startServeAuth(t, bin, "--db", dsn, "--workflows", wf, "--bootstrap-key-file", fileA)
	b := startServeAuth(t, bin, "--db", dsn, "--workflows", wf, "--bootstrap-key-file", fileB)
	raw, err := os.ReadFile(fileA)
	require.NoError(t, err)
	adminKey := strings.TrimSpace(string(raw))
	_, err = os.Stat(fileB)
	require.ErrorIs(t, err, os.ErrNotExist, "the second node created no key and wrote no file")

	status := func(s *served, key string) int {
		req, err := http.NewRequest("GET", s.url+"/v1/tasks", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusOK, status(a, adminKey))
	require.Equal(t, http.StatusOK, status(b, adminKey))

	r := runCLI(t, "keys", "create", "--db", dsn, "--subject", "dash", "--role", "viewer", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var k struct{ ID, Key string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &k))
	require.Equal(t, http.StatusOK, status(a, k.Key))
	require.Equal(t, http.StatusOK, status(b, k.Key))
	r = runCLI(t, "keys", "revoke", "--db", dsn, k.ID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, http.StatusUnauthorized, status(a, k.Key))
	require.Equal(t, http.StatusUnauthorized, status(b, k.Key))
	r = runCLI(t, "keys", "list", "--db", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^`+k.ID+`\s+dash\s+viewer\s+-\s+\S+\s+never\s+\S+Z$`, r.stdout, "listed as revoked")
}
