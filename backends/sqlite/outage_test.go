package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

const oneStepHCL = `workflow "one" {
  step "a" { handler = "builtin.noop" }
}
`

// apiServer is the API over a new SQLite store, its clock skew.Load()
// ahead of the real time; the engine does not run.
func apiServer(t *testing.T, timeout time.Duration, skew *atomic.Int64) (*sqlite.Store, string, func(method, path, body string) (int, http.Header, map[string]any)) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "taskerd.db")
	store, err := sqlite.Open(ctx, "sqlite:"+path+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	ws, diags := definition.NewParser().ParseSource("one.hcl", []byte(oneStepHCL))
	require.False(t, diags.HasErrors(), diags.Error())
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry()})
	require.NoError(t, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}, StoreTimeout: timeout,
		Now: func() time.Time { return time.Now().UTC().Add(time.Duration(skew.Load())) }})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	do := func(method, path, body string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		res, err := hs.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m), string(raw))
		return res.StatusCode, res.Header, m
	}
	return store, path, do
}

// The disk is full (the writer may not grow the file): creating a task
// answers 503 unavailable with Retry-After, and /health/ready, though reads
// still work, answers 503 naming the write check. Once there is room again
// creates succeed, and readiness comes back 30 s after the last failure
// (the server's clock is moved, not waited for).
func TestAPIWhileDiskFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var skew atomic.Int64
	store, _, do := apiServer(t, api.DefaultStoreTimeout, &skew)
	// A context that needs pages of its own.
	create := `{"workflow": "default/one", "context": {"blob": "` + strings.Repeat("x", 64<<10) + `"}}`

	status, _, _ := do("POST", "/v1/tasks", create)
	require.Equal(t, http.StatusCreated, status)
	status, _, _ = do("GET", "/health/ready", "")
	require.Equal(t, http.StatusOK, status)

	require.NoError(t, sqlite.SetMaxPageCount(ctx, store, 1))
	status, header, body := do("POST", "/v1/tasks", create)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.Equal(t, api.CodeUnavailable, body["error"].(map[string]any)["code"])
	require.Equal(t, "2", header.Get("Retry-After"))
	status, _, _ = do("GET", "/v1/tasks", "")
	require.Equal(t, http.StatusOK, status, "reads still work")
	status, _, body = do("GET", "/health/ready", "")
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.Equal(t, "write", body["check"])
	require.Contains(t, body["failed_check"], "full")
	status, _, _ = do("GET", "/health/live", "")
	require.Equal(t, http.StatusOK, status)

	require.NoError(t, sqlite.SetMaxPageCount(ctx, store, 4294967294))
	status, _, _ = do("POST", "/v1/tasks", create)
	require.Equal(t, http.StatusCreated, status)
	status, _, _ = do("GET", "/health/ready", "")
	require.Equal(t, http.StatusServiceUnavailable, status, "the failure counts for 30 s")
	skew.Store(int64(31 * time.Second))
	status, _, body = do("GET", "/health/ready", "")
	require.Equal(t, http.StatusOK, status, body)
}

// Another process holds the database's write lock: the writer waits for
// it (busy_timeout, 10 s), but a create answers 503 unavailable at the
// request's deadline; reads go on (WAL); once the lock is released,
// creates succeed again.
func TestAPIWhileDatabaseLocked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const deadline = 300 * time.Millisecond
	var skew atomic.Int64
	_, path, do := apiServer(t, deadline, &skew)
	const create = `{"workflow": "default/one"}`
	status, _, _ := do("POST", "/v1/tasks", create)
	require.Equal(t, http.StatusCreated, status)

	other, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	lock, err := other.Conn(ctx)
	require.NoError(t, err)
	_, err = lock.ExecContext(ctx, `BEGIN IMMEDIATE`)
	require.NoError(t, err)
	unlock := func() { _, _ = lock.ExecContext(ctx, `ROLLBACK`); _ = lock.Close() }
	t.Cleanup(unlock)

	begun := time.Now()
	status, header, body := do("POST", "/v1/tasks", create)
	took := time.Since(begun)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.Equal(t, api.CodeUnavailable, body["error"].(map[string]any)["code"])
	require.Equal(t, "2", header.Get("Retry-After"))
	require.GreaterOrEqual(t, took, deadline)
	require.Less(t, took, deadline+5*time.Second, "answered at the deadline, not after the busy timeout")
	status, _, _ = do("GET", "/v1/tasks", "")
	require.Equal(t, http.StatusOK, status, "reads do not wait for the write lock")

	unlock()
	require.Eventually(t, func() bool {
		status, _, _ := do("POST", "/v1/tasks", create)
		return status == http.StatusCreated
	}, 15*time.Second, 20*time.Millisecond)
	status, _, body = do("GET", "/v1/tasks", "")
	require.Equal(t, http.StatusOK, status)
	require.Len(t, body["tasks"], 2, "the create that answered 503 was not applied")
}
