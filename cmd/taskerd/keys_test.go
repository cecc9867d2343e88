package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
)

// runBin runs the built binary with only env of the TASKERD_ variables.
func runBin(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKERD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

var keyLine = regexp.MustCompile(`(?m)^key\s+(tkd_\S+)$`)
var idLine = regexp.MustCompile(`(?m)^id\s+(k[0-9a-f]{10})$`)

// The walk-through, with the real binary: serve on a fresh SQLite
// database writes the bootstrap key file; keys create makes an operator
// key without the server's help; the task commands use it through
// TASKERD_SERVER and TASKERD_TOKEN until keys revoke, after which the
// server answers 401 and the CLI says how to pass a key.
func TestKeysEndToEnd(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	wf := filepath.Join(dir, "workflows")
	require.NoError(t, os.Mkdir(wf, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(wf, "w.hcl"), []byte(`
workflow "orders" {
  namespace = "shop"
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.echo"
    depends_on = [step.a]
  }
}
workflow "other" {
  namespace = "billing"
  step "a" { handler = "builtin.noop" }
}
`), 0o644))
	db := "sqlite:" + filepath.Join(dir, "taskerd.db")
	s := startServeAuth(t, bin, "--db", db, "--workflows", wf)

	// The bootstrap key is in taskerd-admin.key beside the database.
	keyFile := filepath.Join(dir, "taskerd-admin.key")
	info, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	raw, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	adminKey := strings.TrimSpace(string(raw))

	dbEnv := []string{"TASKERD_DATABASE=" + db}
	r := runBin(t, bin, dbEnv, "keys", "create", "--subject", "ci-bot", "--role", "operator", "--namespace", "shop", "--expires", "30d")
	require.Equal(t, 0, r.code, r.stderr)
	m := keyLine.FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	opKey := m[1]
	m = idLine.FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	opID := m[1]
	require.Contains(t, r.stderr, "the key is shown only now")
	require.Regexp(t, `(?m)^roles\s+operator$`, r.stdout)
	require.Regexp(t, `(?m)^namespaces\s+shop$`, r.stdout)

	client := []string{"TASKERD_SERVER=" + s.url, "TASKERD_TOKEN=" + opKey}
	r = runBin(t, bin, client, "task", "create", "shop/orders", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var task struct{ ID int64 }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &task))
	id := strconv.FormatInt(task.ID, 10)
	require.Eventually(t, func() bool {
		r = runBin(t, bin, client, "task", "show", id)
		return r.code == 0 && containsLine(r.stdout, "status", "complete")
	}, 20*time.Second, 50*time.Millisecond, "the task completes: %s %s", r.stdout, r.stderr)

	// Outside its namespace: 403, exit 1.
	r = runBin(t, bin, client, "task", "create", "billing/other")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "403 forbidden")

	// A metrics key scrapes /metrics and nothing else.
	r = runBin(t, bin, dbEnv, "keys", "create", "--subject", "prometheus", "--role", "metrics", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var scraper struct{ ID, Key string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &scraper))
	get := func(path, key string) int {
		req, err := http.NewRequest("GET", s.url+path, nil)
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusOK, get("/metrics", scraper.Key))
	require.Equal(t, http.StatusForbidden, get("/v1/tasks", scraper.Key))
	require.Equal(t, http.StatusUnauthorized, get("/metrics", ""))
	require.Equal(t, http.StatusOK, get("/v1/openapi.json", ""), "public")

	// list: every key, never a key or a hash.
	r = runBin(t, bin, dbEnv, "keys", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^ID\s+SUBJECT\s+ROLES\s+NAMESPACES\s+CREATED\s+EXPIRES\s+REVOKED\n`, r.stdout)
	require.Regexp(t, `(?m)^`+opID+`\s+ci-bot\s+operator\s+shop\s+\S+\s+\S+\s+-$`, r.stdout)
	require.Regexp(t, `(?m)^`+scraper.ID+`\s+prometheus\s+metrics\s+-\s+\S+\s+never\s+-$`, r.stdout)
	for _, k := range []string{opKey, scraper.Key} {
		require.NotContains(t, r.stdout, k)
		require.NotContains(t, r.stdout, api.HashKey(k))
	}

	// Revoke: the next request is refused, and the CLI says how to pass a key.
	r = runBin(t, bin, dbEnv, "keys", "revoke", opID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "revoked API key "+opID+" (ci-bot)\n", r.stdout)
	r = runBin(t, bin, client, "task", "list")
	require.Equal(t, 1, r.code)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	require.Contains(t, r.stderr, "taskerd: GET /v1/tasks?: 401 unauthorized: authentication required — the server refused the API key")
	require.Contains(t, r.stderr, "--token KEY or TASKERD_TOKEN=KEY")
	r = runBin(t, bin, []string{"TASKERD_SERVER=" + s.url}, "task", "list")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no API key was sent: pass one with --token KEY or TASKERD_TOKEN=KEY (the bootstrap admin key is in taskerd-admin.key")
	// --token wins over TASKERD_TOKEN: the bootstrap key still works.
	r = runBin(t, bin, client, "task", "list", "--token", adminKey)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "shop/orders")

	r = runBin(t, bin, dbEnv, "keys", "revoke", opID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "API key "+opID+" (ci-bot) was already revoked at ")
	r = runBin(t, bin, dbEnv, "keys", "revoke", "k0000000000")
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: no API key \"k0000000000\" (taskerd keys list shows them)\n", r.stderr)

	r = runBin(t, bin, dbEnv, "keys", "list", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var listed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &listed))
	require.Len(t, listed, 2)
	require.Equal(t, opID, listed[0]["id"])
	require.NotNil(t, listed[0]["revoked_at"])
	require.NotContains(t, listed[0], "key")

	// audit: who created and revoked the key, once each (the second
	// revoke wrote nothing), and never a key or a hash.
	r = runBin(t, bin, dbEnv, "keys", "audit", opID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^AT\s+KEY\s+ACTION\s+ACTOR\s+DETAIL\n\S+\s+`+opID+`\s+created\s+cli:\S+\s+.*ci-bot.*\n\S+\s+`+opID+`\s+revoked\s+cli:\S+\s+-\n$`, r.stdout)
	r = runBin(t, bin, dbEnv, "keys", "audit", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	type auditRow struct {
		KeyID  string `json:"key_id"`
		Action string `json:"action"`
	}
	var audit []auditRow
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &audit))
	require.Equal(t, []auditRow{{opID, "created"}, {scraper.ID, "created"}, {opID, "revoked"}}, audit)
	for _, k := range []string{opKey, scraper.Key} {
		require.NotContains(t, r.stdout, k)
		require.NotContains(t, r.stdout, api.HashKey(k))
	}
	r = runBin(t, bin, dbEnv, "keys", "audit", "k0000000000")
	require.Equal(t, 2, r.code)
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	// No log line holds a key.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.log {
		for _, k := range []string{adminKey, opKey, scraper.Key} {
			require.NotContains(t, l, k[4:])
		}
	}
}

func TestKeysCreateRefusesBadFlags(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "viewer"}, "--subject is required"},
		{[]string{"--subject", "x"}, "--role is required (admin, operator, viewer, metrics)"},
		{[]string{"--subject", "x", "--role", "root"}, `--role "root": the default policy knows admin, operator, viewer, metrics`},
		{[]string{"--subject", "x", "--role", "Admin"}, `--role "Admin": a role is lower case`},
		{[]string{"--subject", "x", "--role", "viewer", "--role", "viewer"}, `--role "viewer" is given twice`},
		{[]string{"--subject", "x", "--role", "operator"}, "--role operator needs at least one --namespace"},
		{[]string{"--subject", "x", "--role", "operator", "--namespace", "a/b"}, `--namespace "a/b": a namespace is letters`},
		{[]string{"--subject", "x\ty", "--role", "viewer"}, "must be printable UTF-8 text"},
		{[]string{"--subject", "x", "--role", "viewer", "--expires", "0s"}, "the duration must be positive"},
		{[]string{"--subject", "x", "--role", "viewer", "--expires", "0d"}, "want between 1d and 36500d"},
		{[]string{"--subject", "x", "--role", "viewer", "--expires", "2001-01-01T00:00:00Z"}, "is in the past"},
		{[]string{"--subject", "x", "--role", "viewer", "--expires", "soon"}, `--expires "soon": want a duration`},
	} {
		r := runCLI(t, append([]string{"keys", "create", "--db", db}, tt.args...)...)
		require.Equal(t, 2, r.code, "%v: %s", tt.args, r.stderr)
		require.Contains(t, r.stderr, tt.want, tt.args)
		require.Empty(t, r.stdout)
	}
	r := runCLI(t, "keys", "list", "--db", db, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout, "nothing was created")

	// A custom policy (a config with policy { dir }) may name its own roles.
	cfg := writeFile(t, "taskerd.hcl", "database = \""+db+"\"\npolicy {\n  dir = \"policy\"\n}\n")
	r = runCLI(t, "keys", "create", "--config", cfg, "--subject", "x", "--role", "auditor", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var k struct {
		Roles     []string
		ExpiresAt *time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &k))
	require.Equal(t, []string{"auditor"}, k.Roles)
	require.Nil(t, k.ExpiresAt)

	r = runCLI(t, "keys", "create", "--db", db, "--subject", "x", "--role", "viewer", "--expires", "30d", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &k))
	require.WithinDuration(t, time.Now().Add(30*24*time.Hour), *k.ExpiresAt, time.Minute)
}

func TestParseExpires(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"720h":                 now.Add(720 * time.Hour),
		"90m":                  now.Add(90 * time.Minute),
		"30d":                  now.Add(30 * 24 * time.Hour),
		"2031-06-01T12:00:00Z": time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC),
	} {
		got, err := parseExpires(in, now)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

func TestDefaultKeyFile(t *testing.T) {
	t.Parallel()
	require.Equal(t, filepath.Join("/var/lib/taskerd", "taskerd-admin.key"), defaultKeyFile("sqlite:/var/lib/taskerd/taskerd.db?synchronous=normal"))
	require.Equal(t, "taskerd-admin.key", defaultKeyFile("sqlite:taskerd.db"))
	require.Equal(t, "taskerd-admin.key", defaultKeyFile("sqlite::memory:"))
	require.Equal(t, "taskerd-admin.key", defaultKeyFile("postgres://taskerd@db/taskerd"))
}

// keysTestWorkflows is a workflow directory of builtin handlers only.
func keysTestWorkflows(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	return dir
}

// A bootstrap key that cannot be written is not stored either: serve
// exits 1, and the next start, with a writable file, creates the key.
func TestServeBootstrapKeyFileUnwritable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "taskerd.db")
	missing := filepath.Join(dir, "no-such-dir", "admin.key")
	r := runCLI(t, "serve", "--listen", "127.0.0.1:0", "--db", db, "--workflows", keysTestWorkflows(t), "--bootstrap-key-file", missing)
	require.Equal(t, 1, r.code, r.stderr)
	require.Equal(t, "writing the bootstrap admin key to "+missing+": no such file or directory", exitMessage(t, r.stderr))

	bin := buildTaskerd(t)
	s := startServeAuth(t, bin, "--db", db, "--workflows", keysTestWorkflows(t))
	s.waitLog(t, "created the bootstrap admin API key")
	raw, err := os.ReadFile(filepath.Join(dir, "taskerd-admin.key"))
	require.NoError(t, err)
	key := strings.TrimSpace(string(raw))
	req, err := http.NewRequest("GET", s.url+"/v1/workflows", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "the key of the file is the stored one")
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}

// auth { bootstrap = false }: no key is created, none is accepted; the
// database's keys still are.
func TestServeBootstrapOff(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "taskerd.db")
	cfg := filepath.Join(dir, "taskerd.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte("auth {\n  bootstrap = false\n}\n"), 0o644))
	r := runCLI(t, "keys", "create", "--db", db, "--subject", "dash", "--role", "viewer", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var k struct{ Key string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &k))

	s := startServeAuth(t, bin, "--config", cfg, "--db", db, "--workflows", keysTestWorkflows(t))
	s.waitLog(t, "the bootstrap admin API key is off")
	_, err := os.Stat(filepath.Join(dir, "taskerd-admin.key"))
	require.ErrorIs(t, err, os.ErrNotExist, "no key file")
	r = runBin(t, bin, []string{"TASKERD_SERVER=" + s.url, "TASKERD_TOKEN=" + k.Key}, "task", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
