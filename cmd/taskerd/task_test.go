package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// apiServer runs the API (and the engine's workers) on the shipped
// workflows, for the client commands.
func apiServer(t *testing.T) string {
	t.Helper()
	catalog, err := loadWorkflows(&testWriter{t}, []string{"../../workflows"}, definition.DefaultMaxFileSize)
	require.NoError(t, err)
	store, err := sqlite.Open(context.Background(), tempDB(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	eng, err := engine.New(engine.Config{Store: store, Catalog: catalog, Registry: builtin.NewRegistry()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestTaskClientCommands(t *testing.T) {
	t.Parallel()
	server := apiServer(t)

	r := runCLI(t, "task", "create", "default/diamond", "--server", server, "--tag", "smoke", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var created struct {
		ID     int64    `json:"id"`
		Status string   `json:"status"`
		Tags   []string `json:"tags"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &created), r.stdout)
	require.Equal(t, []string{"smoke"}, created.Tags)
	id := strconv.FormatInt(created.ID, 10)

	// show: a table for people.
	require.Eventually(t, func() bool {
		r = runCLI(t, "task", "show", id, "--server", server)
		return r.code == 0 && containsLine(r.stdout, "status", "complete")
	}, 10e9, 20e6, "diamond completes")
	require.Contains(t, r.stdout, "all_complete, health healthy, 100% complete")
	require.Regexp(t, `merge\s+builtin.echo\s+complete\s+1/3`, r.stdout)

	r = runCLI(t, "task", "list", "--server", server, "--tag", "smoke")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^`+id+`\s+default/diamond\s+0.1.0\s+complete`, r.stdout)

	// Errors: one line, exit 1 for a refused state change, 2 for a bad
	// request, 1 when the server is unreachable.
	r = runCLI(t, "task", "cancel", id, "--server", server)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "409 invalid_transition")
	r = runCLI(t, "task", "create", "default/nope", "--server", server)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "404 not_found")
	r = runCLI(t, "task", "show", "abc", "--server", server)
	require.Equal(t, 2, r.code)
	r = runCLI(t, "task", "list", "--server", "http://127.0.0.1:1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "cannot reach taskerd at http://127.0.0.1:1")
	r = runCLI(t, "task", "retry", id, "--results", "{}", "--server", server)
	require.Equal(t, 2, r.code, "--results only exists on resolve")
}

// containsLine: some line of out has these words separated by spaces.
func containsLine(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(words) {
			ok := true
			for i, w := range words {
				ok = ok && f[i] == w
			}
			if ok {
				return true
			}
		}
	}
	return false
}
