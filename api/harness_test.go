package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/api/graphql"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/policy"
)

func forEachStore(t *testing.T, fn func(t *testing.T, open func(t testing.TB) backends.Store)) {
	t.Helper()
	storetest.Each(t, fn)
}

// testWorkflows: a schema-checked two-step workflow with a skippable step,
// and one whose only step fails permanently.
const testWorkflows = `
workflow "orders" {
  namespace = "shop"
  version   = "1.0.0"
  context_schema = {
    type     = "object"
    required = ["order_id"]
    properties = {
      order_id = { type = "string", minLength = 1 }
      qty      = { type = "integer", minimum = 1 }
    }
  }
  step "validate" {
    handler   = "builtin.noop"
    skippable = true
  }
  step "ship" {
    handler    = "builtin.echo"
    depends_on = [step.validate]
  }
}

workflow "orders" {
  namespace = "shop"
  version   = "2.0.0"
  step "only" {
    handler = "builtin.noop"
  }
}

workflow "broken" {
  step "boom" {
    handler = "builtin.fail"
    config  = { retryable = false, message = "card declined" }
  }
}
`

type client struct {
	t      *testing.T
	srv    *httptest.Server
	eng    *engine.Engine
	store  backends.Store
	server *api.Server
}

type options struct {
	authn   api.Authenticator
	authz   api.Authorizer
	maxBody int64
	noRun   bool // do not start the engine's workers
	// storeTimeout is the server's StoreTimeout (0: the default).
	storeTimeout time.Duration
	// The event streams' settings (api.Config).
	hub        api.EventNotifier
	maxStreams int
	heartbeat  time.Duration
	recheck    time.Duration
	// httpServer adjusts the test HTTP server before it starts.
	httpServer func(*http.Server)
	// tracer traces the engine and the server (nil: off); logger is
	// theirs (nil: discarded).
	tracer trace.TracerProvider
	logger *slog.Logger
	// catalog replaces testWorkflows (nil: them); scheduler is the
	// server's (api.Config.Scheduler).
	catalog   *definition.Catalog
	scheduler interface{ Wake() }
	// graphqlLimits are /v1/graphql's (zero: the defaults).
	graphqlLimits graphql.Limits
}

func newClient(t *testing.T, store backends.Store, o options) *client {
	t.Helper()
	ws, diags := definition.NewParser().ParseSource("test.hcl", []byte(testWorkflows))
	require.False(t, diags.HasErrors(), diags.Error())
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	cat := definition.NewCatalog(ws)
	if o.catalog != nil {
		cat = o.catalog
	}
	eng, err := engine.New(engine.Config{Store: store, Catalog: cat, Registry: reg,
		Workers: 4, SafetyPoll: 50 * time.Millisecond, TracerProvider: o.tracer, Logger: o.logger})
	require.NoError(t, err)
	if o.authn == nil {
		o.authn = api.NoAuth{}
	}
	if o.authz == nil {
		o.authz = api.NoAuth{}
	}
	server, err := api.New(api.Config{Engine: eng, Authenticator: o.authn, Authorizer: o.authz, MaxBody: o.maxBody, StoreTimeout: o.storeTimeout,
		Hub: o.hub, MaxStreams: o.maxStreams, StreamHeartbeat: o.heartbeat, StreamRecheck: o.recheck,
		TracerProvider: o.tracer, Logger: o.logger, Scheduler: o.scheduler,
		GraphQL: func(rest api.InProcess) http.Handler { return graphql.New(rest, o.graphqlLimits) }})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(server.Handler())
	if o.httpServer != nil {
		o.httpServer(srv.Config)
	}
	srv.Config.RegisterOnShutdown(server.CloseStreams)
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(server.CloseStreams) // first: Close waits for open streams
	if !o.noRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = eng.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	return &client{t: t, srv: srv, eng: eng, store: store, server: server}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// errorCode returns the body's error.code, requiring the error shape.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	require.True(t, ok, "no error object in %s", r.body)
	require.NotEmpty(t, e["message"], "error without message: %s", r.body)
	return e["code"].(string)
}

func (c *client) do(method, path string, body any, header ...string) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, rd)
	require.NoError(c.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// waitStatus polls GET /v1/tasks/{id} until the task has status.
func (c *client) waitStatus(id float64, status string) map[string]any {
	c.t.Helper()
	var last map[string]any
	require.Eventually(c.t, func() bool {
		r := c.do("GET", path("/v1/tasks/%v", id), nil)
		if r.status != http.StatusOK {
			return false
		}
		last = r.json(c.t)
		return last["status"] == status
	}, 10*time.Second, 10*time.Millisecond, "task %v never became %s (last: %v)", id, status, last)
	return last
}

// bumpSchema records a migration this binary does not know, as a newer
// taskerd sharing the PostgreSQL database would have. SQLite has one
// process, which migrates at open: its CheckSchema is tested in its package.
func bumpSchema(t *testing.T, store backends.Store) bool {
	t.Helper()
	pg, ok := store.(interface{ Pool() *pgxpool.Pool })
	if !ok {
		return false
	}
	_, err := pg.Pool().Exec(context.Background(), `INSERT INTO taskerd_schema_migrations (version, name) VALUES (999, '0999_future.sql')`)
	require.NoError(t, err)
	return true
}

// defaultPolicy is the shipped OPA policy, as serve uses it.
func defaultPolicy(t *testing.T) api.Authorizer {
	t.Helper()
	p, err := policy.Default(policy.WithDecisionLog(io.Discard))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}
