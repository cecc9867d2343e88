package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestREADMEQuickStart walks the README's quick start with the real
// binary, as a newcomer does it: init a directory, serve it with
// authentication on (no flag, no file edited), make an operator key of
// one's own with keys create, create a task over the API with it (curl's
// request, then the CLI's through TASKERD_SERVER and TASKERD_TOKEN), and
// watch it complete. If the README's commands change, change this test
// with them.
func TestREADMEQuickStart(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	work := t.TempDir()

	// taskerd init hello && cd hello
	r := runBin(t, bin, nil, "init", filepath.Join(work, "hello"))
	require.Equal(t, 0, r.code, r.stderr)
	dir := filepath.Join(work, "hello")
	inDir := binIn(t, bin, dir)

	// taskerd serve (the test asks for a free port instead of 8080)
	s := startServeAuth(t, inDir)
	info, err := os.Stat(filepath.Join(dir, "taskerd-admin.key"))
	require.NoError(t, err, "the bootstrap admin key is written beside the database")
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	for _, line := range s.lines() {
		require.NotContains(t, line, "tkd_", "no key in the log")
	}

	// taskerd keys create --subject me --role operator --namespace default
	r = runBin(t, inDir, nil, "keys", "create", "--subject", "me", "--role", "operator", "--namespace", "default")
	require.Equal(t, 0, r.code, r.stderr)
	m := keyLine.FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	key := m[1]

	// curl -H "Authorization: Bearer $TASKERD_TOKEN" localhost:8080/v1/tasks \
	//   -d '{"workflow": "hello", "context": {"name": "Ada"}}'
	req, err := http.NewRequest("POST", s.url+"/v1/tasks", bytes.NewReader([]byte(`{"workflow": "hello", "context": {"name": "Ada"}}`)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode, string(body))
	var created struct{ ID int64 }
	require.NoError(t, json.Unmarshal(body, &created))

	// taskerd task show 1 (and task create, through the environment)
	client := []string{"TASKERD_SERVER=" + s.url, "TASKERD_TOKEN=" + key}
	id := strconv.FormatInt(created.ID, 10)
	require.Eventually(t, func() bool {
		r = runBin(t, bin, client, "task", "show", id)
		return r.code == 0 && containsLine(r.stdout, "status", "complete")
	}, 20*time.Second, 50*time.Millisecond, "the task completes: %s %s", r.stdout, r.stderr)
	require.True(t, containsLine(r.stdout, "merge", "builtin.echo", "complete"), r.stdout)
	r = runBin(t, bin, client, "task", "create", "hello", "--context", `{"name": "Bo"}`)
	require.Equal(t, 0, r.code, r.stderr)

	// Without a key the CLI says how to pass one.
	r = runBin(t, bin, []string{"TASKERD_SERVER=" + s.url}, "task", "list")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "TASKERD_TOKEN")

	// The server said what it did, one JSON line at a time (all read once
	// it has stopped).
	require.NoError(t, s.stop(t, syscall.SIGTERM))
	recs := jsonLines(t, s.lines())
	require.NotEmpty(t, withMsg(recs, "task created", created.ID))
	require.NotEmpty(t, withMsg(recs, "task finished", created.ID))
	require.False(t, strings.Contains(strings.Join(s.lines(), "\n"), key), "the operator key is not logged")
}

// keys reads ./taskerd.hcl as serve does: with a database set there, a key
// made in that directory is one the server accepts.
func TestKeysReadTheConfigServeReads(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	r := runBin(t, bin, nil, "init", dir)
	require.Equal(t, 0, r.code, r.stderr)
	db := filepath.Join(t.TempDir(), "elsewhere.db")
	cfg := filepath.Join(dir, "taskerd.hcl")
	raw, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, append(raw, []byte("\ndatabase = \"sqlite:"+db+"\"\n")...), 0o644))
	inDir := binIn(t, bin, dir)

	s := startServeAuth(t, inDir)
	r = runBin(t, inDir, nil, "keys", "create", "--subject", "me", "--role", "viewer")
	require.Equal(t, 0, r.code, r.stderr)
	m := keyLine.FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	r = runBin(t, bin, []string{"TASKERD_SERVER=" + s.url, "TASKERD_TOKEN=" + m[1]}, "task", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoFileExists(t, filepath.Join(dir, "taskerd.db"), "nothing wrote the default database")
}
