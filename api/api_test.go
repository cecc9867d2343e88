package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

func path(format string, args ...any) string { return fmt.Sprintf(format, args...) }

var goodOrder = map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": "A-1", "qty": 2}}

func TestCreateTask(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true})

		r := c.do("POST", "/v1/tasks", goodOrder)
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		task := r.json(t)
		require.Equal(t, "shop/orders", task["workflow"])
		require.Equal(t, "1.0.0", task["version"])
		require.Equal(t, "pending", task["status"])
		require.Equal(t, path("/v1/tasks/%v", task["id"]), r.header.Get("Location"))
		require.NotEmpty(t, r.header.Get("X-Request-Id"))

		// Without a version the highest loaded one runs.
		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "shop/orders"})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.Equal(t, "2.0.0", r.json(t)["version"])

		// Idempotency: the same key and body replay (200, same task); the
		// same key with another body is a conflict.
		first := c.do("POST", "/v1/tasks", goodOrder, "Idempotency-Key", "k-1")
		require.Equal(t, http.StatusCreated, first.status)
		again := c.do("POST", "/v1/tasks", goodOrder, "Idempotency-Key", "k-1")
		require.Equal(t, http.StatusOK, again.status)
		require.Equal(t, first.json(t)["id"], again.json(t)["id"])
		other := map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": "B-2"}}
		r = c.do("POST", "/v1/tasks", other, "Idempotency-Key", "k-1")
		require.Equal(t, http.StatusConflict, r.status)
		require.Equal(t, "conflict", r.errorCode(t))

		// bypass_steps of a skippable step.
		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "shop/orders", "version": "1.0.0",
			"context": map[string]any{"order_id": "C"}, "bypass_steps": []string{"validate"}})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
	})
}

func TestCreateTaskErrors(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true, maxBody: 2048})
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"malformed JSON", `{"workflow": `, 400, "bad_request"},
			{"not an object", `[1, 2]`, 400, "bad_request"},
			{"trailing data", `{"workflow": "shop/orders"} {}`, 400, "bad_request"},
			{"unknown field", map[string]any{"workflow": "shop/orders", "priority": 1}, 400, "bad_request"},
			{"empty body", ``, 400, "bad_request"},
			{"no workflow", map[string]any{"context": map[string]any{}}, 400, "bad_request"},
			{"unknown workflow", map[string]any{"workflow": "shop/nope"}, 404, "not_found"},
			{"unknown version", map[string]any{"workflow": "shop/orders", "version": "9.9.9"}, 404, "not_found"},
			{"context violates the schema", map[string]any{"workflow": "shop/orders", "version": "1.0.0",
				"context": map[string]any{"qty": 0}}, 422, "unprocessable"},
			{"bypass of a step that is not skippable", map[string]any{"workflow": "shop/orders", "version": "1.0.0",
				"context": map[string]any{"order_id": "A"}, "bypass_steps": []string{"ship"}}, 422, "unprocessable"},
			{"body over max_body", map[string]any{"workflow": "shop/orders", "reason": strings.Repeat("x", 4096)}, 413, "payload_too_large"},
		} {
			r := c.do("POST", "/v1/tasks", tc.body)
			assert.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
			assert.Equal(t, tc.code, r.errorCode(t), tc.name)
		}

		// 422 lists each violation with its JSON pointer.
		r := c.do("POST", "/v1/tasks", map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"qty": 0}})
		details := r.json(t)["error"].(map[string]any)["details"].([]any)
		var pointers []string
		for _, d := range details {
			pointers = append(pointers, d.(map[string]any)["pointer"].(string))
		}
		require.ElementsMatch(t, []string{"", "/qty"}, pointers, "missing order_id at the root, qty below minimum: %s", r.body)

		tasks, err := c.store.ListTasks(context.Background(), &backends.ListTasksParams{})
		require.NoError(t, err)
		require.Empty(t, tasks, "no refused request created a task")
	})
}

func TestTaskLifecycleOverHTTP(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{})
		r := c.do("POST", "/v1/tasks", goodOrder)
		require.Equal(t, http.StatusCreated, r.status)
		id := r.json(t)["id"].(float64)
		task := c.waitStatus(id, "complete")

		ec := task["execution_context"].(map[string]any)
		require.Equal(t, "all_complete", ec["execution_status"])
		require.Equal(t, 100.0, ec["completion_percentage"])
		steps := task["steps"].([]any)
		require.Len(t, steps, 2)
		require.Equal(t, "validate", steps[0].(map[string]any)["name"])
		require.Equal(t, "complete", steps[1].(map[string]any)["status"])

		// The id may be sent as a string of digits (it is one in a path).
		r = c.do("GET", path("/v1/tasks/%v?include=graph", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		graph := r.json(t)["graph"].(map[string]any)
		require.Equal(t, []any{[]any{"validate"}, []any{"ship"}}, graph["levels"])

		r = c.do("GET", path("/v1/tasks/%v/steps/ship", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		ship := r.json(t)
		require.Equal(t, 1.0, ship["attempts"])
		require.NotNil(t, ship["readiness"])

		r = c.do("GET", path("/v1/tasks/%v/transitions", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		trs := r.json(t)["transitions"].([]any)
		first, last := trs[0].(map[string]any), trs[len(trs)-1].(map[string]any)
		require.Nil(t, first["from"])
		require.Equal(t, "pending", first["to"])
		require.Nil(t, first["step_id"])
		require.Equal(t, "complete", last["to"])
		require.Equal(t, true, last["most_recent"])

		r = c.do("GET", path("/v1/tasks/%v/graph", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Contains(t, r.header.Get("Content-Type"), "text/vnd.mermaid")
		require.Contains(t, string(r.body), "graph TD")
		require.Contains(t, string(r.body), ":::complete")
		r = c.do("GET", path("/v1/tasks/%v/graph?format=json", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Len(t, r.json(t)["nodes"], 2)
		r = c.do("GET", path("/v1/tasks/%v/graph?format=svg", id), nil)
		require.Equal(t, http.StatusBadRequest, r.status)

		// A finished task cannot be cancelled: 409 naming from and to.
		r = c.do("POST", path("/v1/tasks/%v/cancel", id), nil)
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		require.Equal(t, "invalid_transition", r.errorCode(t))
		details := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
		require.Equal(t, "complete", details["from"])
		require.Equal(t, "cancelled", details["to"])
	})
}

func TestFailedStepRetryAndResolve(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{})
		r := c.do("POST", "/v1/tasks", map[string]any{"workflow": "default/broken"})
		require.Equal(t, http.StatusCreated, r.status)
		id := r.json(t)["id"].(float64)
		task := c.waitStatus(id, "error")
		require.Equal(t, "blocked_by_failures", task["execution_context"].(map[string]any)["execution_status"])
		boom := task["steps"].([]any)[0].(map[string]any)
		require.Equal(t, true, boom["readiness"].(map[string]any)["permanently_blocked"])
		require.Contains(t, string(mustJSON(t, boom["error"])), "card declined")

		// Retry gives the step one more attempt; it fails again.
		r = c.do("POST", path("/v1/tasks/%v/steps/boom/retry", id), map[string]any{"reason": "card updated"})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Eventually(t, func() bool {
			s := c.do("GET", path("/v1/tasks/%v/steps/boom", id), nil).json(t)
			return s["attempts"] == 2.0 && s["status"] == "error"
		}, 10e9, 10e6)

		// results only go with resolve.
		r = c.do("POST", path("/v1/tasks/%v/steps/boom/cancel", id), map[string]any{"results": map[string]any{"a": 1}})
		require.Equal(t, http.StatusBadRequest, r.status)
		r = c.do("POST", path("/v1/tasks/%v/steps/boom/resolve", id), map[string]any{"results": map[string]any{"charged": false}})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		step := r.json(t)
		require.Equal(t, "resolved_manually", step["status"])
		require.Equal(t, map[string]any{"charged": false}, step["results"])

		r = c.do("GET", path("/v1/tasks/%v/steps/nope", id), nil)
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "not_found", r.errorCode(t))
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := jsonMarshal(v)
	require.NoError(t, err)
	return b
}

func TestListAndPatchTasks(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true})
		var ids []float64
		for i := range 5 {
			body := map[string]any{"workflow": "shop/orders", "version": "2.0.0", "tags": []string{fmt.Sprintf("batch-%d", i%2)}}
			if i == 4 {
				body = map[string]any{"workflow": "default/broken"}
			}
			r := c.do("POST", "/v1/tasks", body)
			require.Equal(t, http.StatusCreated, r.status)
			ids = append(ids, r.json(t)["id"].(float64))
		}
		listIDs := func(query string) ([]float64, any) {
			r := c.do("GET", "/v1/tasks"+query, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			m := r.json(t)
			var out []float64
			for _, task := range m["tasks"].([]any) {
				out = append(out, task.(map[string]any)["id"].(float64))
			}
			return out, m["next_cursor"]
		}
		all, next := listIDs("")
		require.Equal(t, []float64{ids[4], ids[3], ids[2], ids[1], ids[0]}, all)
		require.Nil(t, next)
		got, _ := listIDs("?namespace=shop&tag=batch-0")
		require.Equal(t, []float64{ids[2], ids[0]}, got)
		got, _ = listIDs("?workflow=broken")
		require.Equal(t, []float64{ids[4]}, got)
		got, _ = listIDs("?workflow=shop/orders&namespace=default")
		require.Empty(t, got)
		got, _ = listIDs("?status=pending,in_progress")
		require.Len(t, got, 5)

		page, next := listIDs("?limit=2")
		require.Equal(t, []float64{ids[4], ids[3]}, page)
		require.NotNil(t, next)
		page, next = listIDs("?limit=2&cursor=" + next.(string))
		require.Equal(t, []float64{ids[2], ids[1]}, page)
		page, next = listIDs("?limit=2&cursor=" + next.(string))
		require.Equal(t, []float64{ids[0]}, page)
		require.Nil(t, next)

		for _, q := range []string{"?limit=0", "?limit=501", "?limit=x", "?status=done", "?created_after=yesterday", "?cursor=abc"} {
			r := c.do("GET", "/v1/tasks"+q, nil)
			assert.Equal(t, http.StatusBadRequest, r.status, q)
		}

		r := c.do("PATCH", path("/v1/tasks/%v", ids[0]), map[string]any{"reason": "audit", "tags": []string{"x"}})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "audit", r.json(t)["reason"])
		require.Equal(t, []any{"x"}, r.json(t)["tags"])
		r = c.do("PATCH", path("/v1/tasks/%v", ids[0]), map[string]any{"status": "complete"})
		require.Equal(t, http.StatusBadRequest, r.status, "only reason and tags may change")
		r = c.do("PATCH", path("/v1/tasks/%v", ids[0]), map[string]any{})
		require.Equal(t, http.StatusBadRequest, r.status)
		r = c.do("PATCH", "/v1/tasks/99999", map[string]any{"reason": "x"})
		require.Equal(t, http.StatusNotFound, r.status)
		r = c.do("GET", "/v1/tasks/abc", nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		r = c.do("GET", "/v1/tasks/99999", nil)
		require.Equal(t, http.StatusNotFound, r.status)

		// Cancel a pending task, then retry it: 409 (nothing in error).
		r = c.do("POST", path("/v1/tasks/%v/cancel", ids[1]), map[string]any{"reason": "duplicate order"})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "cancelled", r.json(t)["status"])
		r = c.do("POST", path("/v1/tasks/%v/retry", ids[1]), nil)
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		r = c.do("POST", path("/v1/tasks/%v/resolve", ids[2]), nil)
		require.Equal(t, http.StatusConflict, r.status, "only a task in error can be resolved: %s", r.body)
	})
}

func TestWorkflowRoutes(t *testing.T) {
	t.Parallel()
	c := newClient(t, storetest.SQLite(t), options{noRun: true})
	r := c.do("GET", "/v1/workflows", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, r.json(t)["workflows"], 3)

	r = c.do("GET", "/v1/workflows/shop/orders", nil)
	require.Equal(t, http.StatusOK, r.status)
	versions := r.json(t)["versions"].([]any)
	require.Len(t, versions, 2)
	require.Equal(t, "2.0.0", versions[0].(map[string]any)["version"], "highest first")
	v1 := versions[1].(map[string]any)
	require.Equal(t, []any{[]any{"validate"}, []any{"ship"}}, v1["levels"])
	require.NotNil(t, v1["context_schema"])

	r = c.do("GET", "/v1/workflows/shop/orders/graph?version=1.0.0", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "validate")
	r = c.do("GET", "/v1/workflows/shop/orders/graph?format=json", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "shop/orders@2.0.0", r.json(t)["workflow"])
	r = c.do("GET", "/v1/workflows/shop/orders/graph?version=3.0.0", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r = c.do("GET", "/v1/workflows/shop/nope", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", r.errorCode(t))
}

func TestUnknownRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	c := newClient(t, storetest.SQLite(t), options{noRun: true})
	r := c.do("GET", "/v2/nothing", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", r.errorCode(t))
	r = c.do("DELETE", "/v1/tasks", nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "method_not_allowed", r.errorCode(t))
	require.Equal(t, "GET, POST", r.header.Get("Allow"))
}

func TestHealth(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{})
		require.Equal(t, http.StatusOK, c.do("GET", "/health/live", nil).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/health/ready", nil).status)
		r := c.do("POST", "/v1/tasks", map[string]any{"workflow": "default/broken"})
		c.waitStatus(r.json(t)["id"].(float64), "error")
		r = c.do("GET", "/health/status", nil)
		require.Equal(t, http.StatusOK, r.status)
		st := r.json(t)
		require.Equal(t, "healthy", st["status"])
		require.Equal(t, 1.0, st["tasks"].(map[string]any)["error"])
		require.Equal(t, 1.0, st["exhausted"])
		require.Equal(t, c.eng.NodeID(), st["node"].(map[string]any)["id"])

		// With the database gone, ready and status say so (503); live does
		// not depend on it.
		require.NoError(t, store.Close())
		r = c.do("GET", "/health/ready", nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		require.NotEmpty(t, r.json(t)["failed_check"])
		require.Equal(t, http.StatusServiceUnavailable, c.do("GET", "/health/status", nil).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/health/live", nil).status)
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	c := newClient(t, storetest.SQLite(t), options{})
	events, stop := c.eng.Subscribe(1024)
	defer stop()
	go c.server.Metrics().Consume(events)
	require.NoError(t, c.server.Metrics().Register(api.NewStoreCollector(c.store)))
	r := c.do("POST", "/v1/tasks", goodOrder)
	c.waitStatus(r.json(t)["id"].(float64), "complete")
	require.Eventually(t, func() bool {
		body := string(c.do("GET", "/metrics", nil).body)
		return strings.Contains(body, `taskerd_tasks_finished_total{outcome="completed",workflow="shop/orders"} 1`)
	}, 10e9, 10e6)
	body := string(c.do("GET", "/metrics", nil).body)
	for _, want := range []string{
		`taskerd_tasks_created_total{workflow="shop/orders"} 1`,
		`taskerd_steps_total{handler="builtin.echo",outcome="completed"} 1`,
		`taskerd_step_duration_seconds_count{handler="builtin.noop"} 1`,
		`taskerd_http_requests_total{code="201",route="POST /v1/tasks"} 1`,
		`taskerd_tasks{state="complete"} 1`,
		`taskerd_steps{state="complete"} 2`,
		`taskerd_ready_steps 0`,
		`taskerd_store_up 1`,
		`taskerd_step_ready_to_running_seconds_count 2`,
		`go_goroutines`,
	} {
		require.Contains(t, body, want)
	}
}

// Authentication and authorization fail closed.
type failingAuthn struct{}

func (failingAuthn) Authenticate(*http.Request) (*api.Subject, error) {
	return nil, errors.New("authenticator plugin crashed")
}

type fixedAuthz struct {
	allow bool
	err   error
	seen  chan *api.AuthzRequest
}

func (a fixedAuthz) Authorize(_ context.Context, req *api.AuthzRequest) (api.Decision, error) {
	if a.seen != nil {
		a.seen <- req
	}
	return api.Decision{Allow: a.allow, Reasons: []string{"test policy"}}, a.err
}

type panickingAuthz struct{}

func (panickingAuthz) Authorize(context.Context, *api.AuthzRequest) (api.Decision, error) {
	panic("policy engine bug")
}

func TestAuthFailsClosed(t *testing.T) {
	t.Parallel()
	store := storetest.SQLite(t)

	unauth := newClient(t, store, options{authn: failingAuthn{}, noRun: true})
	for _, rt := range unauth.server.Routes() {
		method, p, _ := strings.Cut(rt, " ")
		p = strings.NewReplacer("{id}", "1", "{name}", "x", "{namespace}", "shop").Replace(p)
		r := unauth.do(method, p, nil)
		if p == "/health/live" || p == "/health/ready" || p == "/v1/openapi.json" {
			require.Equal(t, http.StatusOK, r.status, rt, "public")
			continue
		}
		require.Equal(t, http.StatusUnauthorized, r.status, rt)
		require.Equal(t, "unauthorized", r.errorCode(t), rt)
		require.NotContains(t, string(r.body), "crashed", "the cause stays in the log")
	}

	seen := make(chan *api.AuthzRequest, 1)
	denied := newClient(t, store, options{authz: fixedAuthz{allow: false, seen: seen}, noRun: true})
	r := denied.do("POST", "/v1/tasks", goodOrder)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, "forbidden", r.errorCode(t))
	req := <-seen
	require.Equal(t, "task:create", req.Action)
	require.Equal(t, api.Resource{Type: "task", Namespace: "shop", Workflow: "shop/orders", Version: "1.0.0"}, req.Resource)
	require.Equal(t, "anonymous", req.Subject.ID)

	erroring := newClient(t, store, options{authz: fixedAuthz{allow: true, err: errors.New("rego eval error")}, noRun: true})
	require.Equal(t, http.StatusForbidden, erroring.do("GET", "/v1/tasks", nil).status, "an erroring policy denies even if it said allow")

	panicking := newClient(t, store, options{authz: panickingAuthz{}, noRun: true})
	r = panicking.do("GET", "/v1/workflows", nil)
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.Equal(t, "internal", r.errorCode(t))
	require.Contains(t, string(r.body), r.header.Get("X-Request-Id"))
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc, err := api.OpenAPI()
	require.NoError(t, err)
	var spec struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			PathItems map[string]map[string]any `json:"pathItems"`
		} `json:"components"`
	}
	require.NoError(t, jsonUnmarshal(doc, &spec))
	var documented []string
	for p, item := range spec.Paths {
		if ref, ok := item["$ref"].(string); ok {
			item = spec.Components.PathItems[strings.TrimPrefix(ref, "#/components/pathItems/")]
			require.NotNil(t, item, "%s refers to %s", p, ref)
		}
		for method := range item {
			if method == "parameters" || method == "summary" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+p)
		}
	}
	c := newClient(t, storetest.SQLite(t), options{noRun: true})
	routes := c.server.Routes()
	slices.Sort(documented)
	slices.Sort(routes)
	require.Equal(t, routes, documented, "api/openapi.yaml and the routes must list the same endpoints")

	r := c.do("GET", "/v1/openapi.json", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "3.1.0", r.json(t)["openapi"])
}

func TestInstrumentPlugins(t *testing.T) {
	t.Parallel()
	m := api.NewMetrics()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	require.NoError(t, reg.Register("payments.charge", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
		return nil, errors.New("declined")
	})))
	require.NoError(t, m.InstrumentPlugins(reg))
	h, ok := reg.Lookup("payments.charge")
	require.True(t, ok)
	_, err := h.Execute(context.Background(), &engine.StepRequest{})
	require.EqualError(t, err, "declined", "the handler's answer passes through")
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	var seen []string
	for _, f := range families {
		if f.GetName() != "taskerd_plugin_call_duration_seconds" {
			continue
		}
		for _, metric := range f.GetMetric() {
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			seen = append(seen, strings.Join(labels, ",")+fmt.Sprintf(" %d", metric.GetHistogram().GetSampleCount()))
		}
	}
	require.Equal(t, []string{"handler=payments.charge,outcome=error 1"}, seen, "built-in handlers are not plugins")
}

// Readiness includes the schema: a database migrated by a newer taskerd (or
// not yet migrated) is not ready.
func TestReadyChecksTheSchema(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{noRun: true})
		require.Equal(t, http.StatusOK, c.do("GET", "/health/ready", nil).status)
		sc, ok := store.(api.SchemaChecker)
		require.True(t, ok, "both stores check their schema")
		require.NoError(t, sc.CheckSchema(context.Background()))
		if !bumpSchema(t, store) {
			return
		}
		r := c.do("GET", "/health/ready", nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		require.Contains(t, r.json(t)["failed_check"], "schema")
	})
}

// namespaceAuthz allows everything in its namespaces and nothing else.
type namespaceAuthz struct{ namespaces []string }

func (a namespaceAuthz) Authorize(_ context.Context, req *api.AuthzRequest) (api.Decision, error) {
	return api.Decision{Allow: slices.Contains(a.namespaces, req.Resource.Namespace)}, nil
}

func (a namespaceAuthz) AllowedNamespaces(_ context.Context, _ *api.Subject, _ string, candidates []string) ([]string, error) {
	var out []string
	for _, c := range candidates {
		if slices.Contains(a.namespaces, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// A subject allowed some namespaces lists only their tasks, and is refused
// a listing of another namespace.
func TestListingIsFilteredByNamespace(t *testing.T) {
	t.Parallel()
	store := storetest.SQLite(t)
	admin := newClient(t, store, options{noRun: true})
	require.Equal(t, http.StatusCreated, admin.do("POST", "/v1/tasks", goodOrder).status)
	require.Equal(t, http.StatusCreated, admin.do("POST", "/v1/tasks", map[string]any{"workflow": "default/broken"}).status)

	shop := newClient(t, store, options{noRun: true, authz: namespaceAuthz{namespaces: []string{"shop"}}})
	r := shop.do("GET", "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	tasks := r.json(t)["tasks"].([]any)
	require.Len(t, tasks, 1)
	require.Equal(t, "shop", tasks[0].(map[string]any)["namespace"])
	require.Equal(t, http.StatusOK, shop.do("GET", "/v1/tasks?namespace=shop", nil).status)
	require.Equal(t, http.StatusForbidden, shop.do("GET", "/v1/tasks?namespace=default", nil).status)

	nobody := newClient(t, store, options{noRun: true, authz: namespaceAuthz{}})
	require.Equal(t, http.StatusForbidden, nobody.do("GET", "/v1/tasks", nil).status)

	// A namespace no loaded workflow names any more still lists its tasks
	// to whoever may see it, and only to them.
	old, _, err := store.CreateTask(context.Background(), &backends.CreateTaskParams{
		Namespace: "archive", WorkflowName: "retired", WorkflowVersion: "1.0.0",
		Steps: []backends.NewStep{{Name: "a", Handler: "builtin.noop", RetryLimit: 1}}, Now: time.Now(),
	})
	require.NoError(t, err)
	archivist := newClient(t, store, options{noRun: true, authz: namespaceAuthz{namespaces: []string{"archive"}}})
	r = archivist.do("GET", "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	tasks = r.json(t)["tasks"].([]any)
	require.Len(t, tasks, 1)
	require.EqualValues(t, old.ID, tasks[0].(map[string]any)["id"])
	r = shop.do("GET", "/v1/tasks", nil)
	require.Len(t, r.json(t)["tasks"].([]any), 1, "shop still sees only its own task")
}
