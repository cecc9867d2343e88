package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/policy"
	"github.com/taskerd/taskerd/ui"
)

// testWorkflows: shop/orders sleeps briefly then succeeds (schema-checked
// context); shop/flaky fails its first attempt permanently and succeeds
// when retried; other/secret is a namespace an operator of shop must not
// see.
const testWorkflows = `
workflow "orders" {
  namespace = "shop"
  version   = "1.0.0"
  description = "Validate, then pack and bill, then ship."
  context_schema = {
    type     = "object"
    required = ["order_id"]
    properties = {
      order_id = { type = "string", minLength = 1 }
    }
  }
  step "validate" {
    handler = "builtin.sleep"
    config  = { duration = "300ms" }
  }
  step "pack" {
    handler    = "builtin.sleep"
    config     = { duration = "300ms" }
    depends_on = [step.validate]
  }
  step "bill" {
    handler    = "builtin.echo"
    depends_on = [step.validate]
  }
  step "ship" {
    handler    = "builtin.noop"
    depends_on = [step.pack, step.bill]
  }
}

workflow "flaky" {
  namespace = "shop"
  version   = "1.0.0"
  step "charge" {
    handler = "builtin.fail"
    config  = { times = 1, retryable = false, message = "card declined by the bank" }
  }
  step "notify" {
    handler    = "builtin.noop"
    depends_on = [step.charge]
  }
}

workflow "secret" {
  namespace = "other"
  version   = "1.0.0"
  step "only" {
    handler = "builtin.noop"
  }
}

schedule "shop-hourly" {
  workflow = "shop/orders"
  cron     = "0 * * * *"
  context  = { order_id = "hourly" }
}

schedule "other-daily" {
  workflow = "other/secret"
  cron     = "0 3 * * *"
}
`

// keyAuth authenticates X-API-Key (or a bearer token) from a table that a
// test can change: deleting a key revokes it.
type keyAuth struct {
	mu   sync.Mutex
	keys map[string]*api.Subject
}

func (a *keyAuth) Authenticate(r *http.Request) (*api.Subject, error) {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		key = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if key == "" {
		return nil, api.ErrNoCredentials
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.keys[key]
	if !ok {
		return nil, io.ErrUnexpectedEOF // any error: refused
	}
	cp := *s
	return &cp, nil
}

func (a *keyAuth) revoke(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.keys, key)
}

const (
	adminKey  = "admin-key-0123456789"
	viewerKey = "viewer-key-0123456789"
	shopKey   = "shop-operator-key-0123456789"
	// shopViewerKey is a viewer of namespace shop only, under
	// scopedViewerPolicy.
	shopViewerKey = "shop-viewer-key-0123456789"
)

func newKeyAuth() *keyAuth {
	return &keyAuth{keys: map[string]*api.Subject{
		adminKey:      {ID: "alice", Roles: []string{"admin"}},
		viewerKey:     {ID: "victor", Roles: []string{"viewer"}},
		shopKey:       {ID: "olga", Roles: []string{"operator"}, Claims: json.RawMessage(`{"namespaces":["shop"]}`)},
		shopViewerKey: {ID: "sam", Roles: []string{"viewer"}, Claims: json.RawMessage(`{"namespaces":["shop"]}`)},
	}}
}

type env struct {
	t       testing.TB
	srv     *httptest.Server
	handler http.Handler // what srv serves
	eng     *engine.Engine
	store   backends.Store
	auth    *keyAuth
}

type envOptions struct {
	noRun bool
	tls   bool
	// rego replaces the default policy (one file's source).
	rego string
	// now is the UI's clock (nil: the real one).
	now func() time.Time
	// dbKeys authenticates the database's API keys first (api.KeyChain,
	// as serve does), then the test's table.
	dbKeys bool
}

func newEnv(t testing.TB, store backends.Store, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.hcl"), []byte(testWorkflows), 0o600))
	p := definition.NewParser()
	ws, diags := p.Load(dir)
	require.False(t, diags.HasErrors(), diags.Error())
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws).WithSchedules(p.Schedules()), Registry: reg,
		Workers: 4, SafetyPoll: 50 * time.Millisecond})
	require.NoError(t, err)
	authz, err := policy.Default(policy.WithDecisionLog(io.Discard))
	if o.rego != "" {
		pdir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(o.rego), 0o600))
		authz, err = policy.Load(pdir, policy.WithDecisionLog(io.Discard))
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = authz.Close() })
	auth := newKeyAuth()
	var authn api.Authenticator = auth
	if o.dbKeys {
		authn = &api.KeyChain{Store: store, Next: auth}
	}
	server, err := api.New(api.Config{Engine: eng, Authenticator: authn, Authorizer: authz})
	require.NoError(t, err)
	h, err := ui.New(ui.Config{API: server.Handler(), Store: store, Authenticator: authn, Authorizer: authz, Now: o.now})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ui/", h)
	mux.Handle("/", server.Handler())
	var srv *httptest.Server
	if o.tls {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(srv.Close)
	if !o.noRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = eng.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	return &env{t: t, srv: srv, handler: mux, eng: eng, store: store, auth: auth}
}

func (e *env) createTask(workflow string, ctx string) int64 {
	e.t.Helper()
	task, _, err := e.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: workflow, Context: json.RawMessage(ctx)})
	require.NoError(e.t, err)
	return task.ID
}

// waitTask polls the store until task id has state.
func (e *env) waitTask(id int64, state backends.State) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		task, err := e.store.GetTask(context.Background(), id)
		require.NoError(e.t, err)
		if task.State == state {
			return
		}
		require.True(e.t, time.Now().Before(deadline), "task %d is %s, not %s", id, task.State, state)
		time.Sleep(20 * time.Millisecond)
	}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so that tests see them.
type browser struct {
	t      testing.TB
	env    *env
	client *http.Client
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	c := &http.Client{Transport: e.srv.Client().Transport, Jar: jar}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: e.t, env: e, client: c}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) get(path string, header ...string) page {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.env.srv.URL+path, nil)
	require.NoError(b.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, header ...string) page {
	b.t.Helper()
	req, err := http.NewRequest("POST", b.env.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.client.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	return page{status: res.StatusCode, header: res.Header, body: string(raw)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (p page) csrf(t testing.TB) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	require.NotNil(t, m, "no CSRF token in the page: %s", p.body)
	return m[1]
}

// login logs in with an API key and returns the response to the POST.
func (b *browser) login(key string) page {
	b.t.Helper()
	form := b.get("/ui/login")
	require.Equal(b.t, http.StatusOK, form.status)
	return b.post("/ui/login", url.Values{"csrf": {form.csrf(b.t)}, "kind": {"api_key"}, "credential": {key}})
}

func (b *browser) mustLogin(key string) {
	b.t.Helper()
	res := b.login(key)
	require.Equal(b.t, http.StatusSeeOther, res.status, res.body)
	require.Equal(b.t, "/ui/tasks", res.header.Get("Location"))
}

func forEachStore(t *testing.T, fn func(t *testing.T, open func(t testing.TB) backends.Store)) {
	t.Helper()
	storetest.Each(t, fn)
}

func openSQLite(t testing.TB) backends.Store { return storetest.SQLite(t) }
