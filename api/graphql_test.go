package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/api/graphql"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
)

// gqlAnswer is a GraphQL response.
type gqlAnswer struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (c *client) gql(query string, vars map[string]any, header ...string) gqlAnswer {
	c.t.Helper()
	r := c.do("POST", "/v1/graphql", map[string]any{"query": query, "variables": vars}, header...)
	require.Equal(c.t, http.StatusOK, r.status, string(r.body))
	var a gqlAnswer
	require.NoError(c.t, json.Unmarshal(r.body, &a), string(r.body))
	return a
}

// field decodes data.name into out.
func (a gqlAnswer) field(t *testing.T, name string, out any) {
	t.Helper()
	raw, ok := a.Data[name]
	require.True(t, ok, "no data.%s in %+v", name, a)
	require.NoError(t, json.Unmarshal(raw, out))
}

// codeAt is extensions.code of the error whose path starts with path
// ("" when none).
func (a gqlAnswer) codeAt(path ...any) string {
	for _, e := range a.Errors {
		if len(e.Path) >= len(path) && fmt.Sprint(e.Path[:len(path)]...) == fmt.Sprint(path...) {
			code, _ := e.Extensions["code"].(string)
			return code
		}
	}
	return ""
}

func createTask(t *testing.T, c *client, body map[string]any, header ...string) int64 {
	t.Helper()
	r := c.do("POST", "/v1/tasks", body, header...)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	return int64(r.json(t)["id"].(float64))
}

func TestGraphQLQueries(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{})
		first := createTask(t, c, goodOrder)
		second := createTask(t, c, goodOrder)
		c.waitStatus(float64(first), "complete")

		a := c.gql(`query($id: ID!) { task(id: $id) { id workflow version status context tags
			steps { name status attempts results } transitions { to stepName } } }`, map[string]any{"id": first})
		require.Empty(t, a.Errors)
		var task struct {
			ID          int64 `json:"id,string"`
			Status      string
			Workflow    string
			Context     map[string]any
			Steps       []struct{ Name, Status string }
			Transitions []struct{ To string }
		}
		a.field(t, "task", &task)
		require.Equal(t, first, task.ID)
		require.Equal(t, "complete", task.Status)
		require.Equal(t, "shop/orders", task.Workflow)
		require.Equal(t, "A-1", task.Context["order_id"])
		require.Len(t, task.Steps, 2)
		require.Equal(t, "validate", task.Steps[0].Name)
		require.Equal(t, "complete", task.Steps[1].Status)
		require.NotEmpty(t, task.Transitions)
		require.Equal(t, "complete", task.Transitions[len(task.Transitions)-1].To)

		// The connection pages like GET /v1/tasks, newest first.
		q := `query($after: String) { tasks(first: 1, after: $after, filter: {workflow: "shop/orders"}) {
			edges { cursor node { id steps { name } } } pageInfo { hasNextPage endCursor } } }`
		var conn struct {
			Edges []struct {
				Cursor string
				Node   struct {
					ID int64 `json:"id,string"`
				}
			}
			PageInfo struct {
				HasNextPage bool
				EndCursor   string
			}
		}
		a = c.gql(q, nil)
		require.Empty(t, a.Errors)
		a.field(t, "tasks", &conn)
		require.Len(t, conn.Edges, 1)
		require.Equal(t, second, conn.Edges[0].Node.ID)
		require.True(t, conn.PageInfo.HasNextPage)
		a = c.gql(q, map[string]any{"after": conn.PageInfo.EndCursor})
		require.Empty(t, a.Errors)
		a.field(t, "tasks", &conn)
		require.Len(t, conn.Edges, 1)
		require.Equal(t, first, conn.Edges[0].Node.ID)
		require.False(t, conn.PageInfo.HasNextPage)

		a = c.gql(`{ tasks(filter: {status: ["bogus"]}) { edges { cursor } } }`, nil)
		require.Equal(t, "BAD_USER_INPUT", a.codeAt("tasks"), "REST's 400 for a bad status")

		a = c.gql(`query($id: ID!) { step(taskId: $id, name: "ship") { name handler status taskId } }`, map[string]any{"id": first})
		require.Empty(t, a.Errors)
		var step struct {
			Name, Handler, Status string
			TaskID                int64 `json:"taskId,string"`
		}
		a.field(t, "step", &step)
		require.Equal(t, "ship", step.Name)
		require.Equal(t, "builtin.echo", step.Handler)
		require.Equal(t, first, step.TaskID)

		a = c.gql(`{ missing: task(id: "999999") { id } health { status tasks { complete } }
			workflows { namespace name version available }
			workflow(namespace: "shop", name: "orders") { name versions { version steps { name dependsOn } } } }`, nil)
		require.Equal(t, "NOT_FOUND", a.codeAt("missing"))
		require.Equal(t, "null", string(a.Data["missing"]))
		require.Len(t, a.Errors, 1, "%+v", a)
		var health struct {
			Status string
			Tasks  struct{ Complete int }
		}
		a.field(t, "health", &health)
		require.Equal(t, "healthy", health.Status)
		require.GreaterOrEqual(t, health.Tasks.Complete, 1, "the first task at least")
		var wfs []struct {
			Namespace, Name, Version string
			Available                bool
		}
		a.field(t, "workflows", &wfs)
		require.NotEmpty(t, wfs)
		require.Contains(t, wfs, struct {
			Namespace, Name, Version string
			Available                bool
		}{"shop", "orders", "2.0.0", true})
		type version struct {
			Version string
			Steps   []struct {
				Name      string
				DependsOn []string
			}
		}
		var wf struct {
			Name     string
			Versions []version
		}
		a.field(t, "workflow", &wf)
		require.Equal(t, "orders", wf.Name)
		require.Len(t, wf.Versions, 2)
		require.Equal(t, "2.0.0", wf.Versions[0].Version, "highest first")
		require.Equal(t, "ship", wf.Versions[1].Steps[1].Name)
		require.Equal(t, []string{"validate"}, wf.Versions[1].Steps[1].DependsOn)
		a = c.gql(`{ one: workflow(namespace: "shop", name: "orders", version: "1.0.0") { name versions { version } }
			none: workflow(namespace: "shop", name: "orders", version: "9.9.9") { name } }`, nil)
		a.field(t, "one", &wf)
		require.Len(t, wf.Versions, 1)
		require.Equal(t, "1.0.0", wf.Versions[0].Version)
		require.Equal(t, "NOT_FOUND", a.codeAt("none"))
		require.Equal(t, "null", string(a.Data["none"]))

		// GET serves queries, not mutations.
		r := c.do("GET", "/v1/graphql?query="+url.QueryEscape(`{ task(id: "`+fmt.Sprint(first)+`") { status } }`), nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Contains(t, string(r.body), `"status":"complete"`)
		r = c.do("GET", "/v1/graphql?query="+url.QueryEscape(`mutation { cancelTask(id: "1") { id } }`), nil)
		require.NotEqual(t, http.StatusOK, r.status, string(r.body))
	})
}

func TestGraphQLMutations(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true})

		create := `mutation($in: CreateTaskInput!) { createTask(input: $in) { id status workflow reason tags idempotencyKey steps { name } } }`
		in := map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": "G1"}, "reason": "gql", "tags": []string{"a"}, "idempotencyKey": "k-1"}
		var t1, t2 struct {
			ID             int64 `json:"id,string"`
			Status         string
			Reason         string
			Tags           []string
			IdempotencyKey string
			Steps          []struct{ Name string }
		}
		a := c.gql(create, map[string]any{"in": in})
		require.Empty(t, a.Errors)
		a.field(t, "createTask", &t1)
		require.Equal(t, "pending", t1.Status)
		require.Equal(t, "k-1", t1.IdempotencyKey)
		require.Len(t, t1.Steps, 2)
		a = c.gql(create, map[string]any{"in": in})
		require.Empty(t, a.Errors)
		a.field(t, "createTask", &t2)
		require.Equal(t, t1.ID, t2.ID, "the idempotency key replays the first task")

		in["context"] = map[string]any{}
		delete(in, "idempotencyKey")
		a = c.gql(create, map[string]any{"in": in})
		require.Equal(t, "BAD_USER_INPUT", a.codeAt("createTask"), "%+v", a)

		a = c.gql(`mutation($id: ID!) { updateTask(id: $id, input: {reason: "new", tags: ["x", "y"]}) { reason tags } }`, map[string]any{"id": t1.ID})
		require.Empty(t, a.Errors)
		a.field(t, "updateTask", &t2)
		require.Equal(t, "new", t2.Reason)
		require.Equal(t, []string{"x", "y"}, t2.Tags)

		var step struct{ Name, Status string }
		a = c.gql(`mutation($id: ID!) { resolveStep(taskId: $id, name: "validate", reason: "done by hand", results: {ok: true}) { name status results } }`, map[string]any{"id": t1.ID})
		require.Empty(t, a.Errors)
		a.field(t, "resolveStep", &step)
		require.Equal(t, "resolved_manually", step.Status)

		a = c.gql(`mutation($id: ID!) { cancelStep(taskId: $id, name: "ship") { status } }`, map[string]any{"id": t1.ID})
		require.Empty(t, a.Errors, "%+v", a)
		a.field(t, "cancelStep", &step)
		require.Equal(t, "cancelled", step.Status)

		// REST's refusals carry through: a cancelled step is not retried (409).
		a = c.gql(`mutation($id: ID!) { retryStep(taskId: $id, name: "ship") { status } }`, map[string]any{"id": t1.ID})
		require.Equal(t, "CONFLICT", a.codeAt("retryStep"), "%+v", a)

		// Each task action on a fresh task through GraphQL and on another
		// through REST: the same outcome.
		for _, verb := range []string{"cancel", "retry", "resolve"} {
			viaGQL, viaREST := createTask(t, c, goodOrder), createTask(t, c, goodOrder)
			field := verb + "Task"
			a = c.gql(fmt.Sprintf(`mutation($id: ID!) { %s(id: $id, reason: "by hand") { id status } }`, field), map[string]any{"id": viaGQL})
			r := c.do("POST", fmt.Sprintf("/v1/tasks/%d/%s", viaREST, verb), map[string]any{"reason": "by hand"})
			if r.status == http.StatusOK {
				require.Empty(t, a.Errors, "%s: %+v", verb, a)
				var got struct{ Status string }
				a.field(t, field, &got)
				require.Equal(t, r.json(t)["status"], got.Status, verb)
			} else {
				require.Equal(t, graphqlCodeFor(r.status), a.codeAt(field), "%s: REST %d %s, GraphQL %+v", verb, r.status, r.body, a)
			}
		}
		a = c.gql(`mutation { cancelTask(id: "424242") { id } }`, nil)
		require.Equal(t, "NOT_FOUND", a.codeAt("cancelTask"))
	})
}

// graphqlCodeFor is the extensions.code a REST status becomes.
func graphqlCodeFor(status int) string {
	switch status {
	case 400, 422:
		return "BAD_USER_INPUT"
	case 403:
		return "FORBIDDEN"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "CONFLICT"
	}
	return "?"
}

// keyAuthn takes the subject from X-Api-Key: "id role [ns,ns]".
type keyAuthn struct{}

func (keyAuthn) Authenticate(r *http.Request) (*api.Subject, error) {
	return headerAuthn{}.Authenticate(&http.Request{Header: http.Header{"X-Test-Subject": {r.Header.Get("X-Api-Key")}}})
}

// The same subjects and objects through REST and GraphQL, under the
// shipped policy: every decision is the same, and a refused field is
// FORBIDDEN on its path while the others resolve.
func TestGraphQLAuthorizationMatchesREST(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{authn: keyAuthn{}, authz: defaultPolicy(t), noRun: true})
		admin := []string{"X-Api-Key", "root admin"}
		shop := createTask(t, c, goodOrder, admin...)
		other := createTask(t, c, map[string]any{"workflow": "default/broken", "context": map[string]any{}}, admin...)

		subjects := []string{"root admin", "vera viewer", "oscar operator shop", "olga operator elsewhere", "mia metrics"}
		type op struct {
			name     string
			method   string
			path     string
			body     any
			query    string
			field    string
			mutation bool
		}
		ops := func(id int64) []op {
			return []op{
				{"show task", "GET", fmt.Sprintf("/v1/tasks/%d", id), nil, fmt.Sprintf(`{ task(id: "%d") { id } }`, id), "task", false},
				{"show step", "GET", fmt.Sprintf("/v1/tasks/%d/steps/%s", id, firstStep(id, shop)), nil,
					fmt.Sprintf(`{ step(taskId: "%d", name: "%s") { name } }`, id, firstStep(id, shop)), "step", false},
				{"list tasks", "GET", "/v1/tasks", nil, `{ tasks { edges { cursor } } }`, "tasks", false},
				{"workflows", "GET", "/v1/workflows", nil, `{ workflows { name } }`, "workflows", false},
				{"health", "GET", "/health/status", nil, `{ health { status } }`, "health", false},
				{"update task", "PATCH", fmt.Sprintf("/v1/tasks/%d", id), map[string]any{"reason": "r"},
					fmt.Sprintf(`mutation { updateTask(id: "%d", input: {reason: "r"}) { id } }`, id), "updateTask", true},
				{"cancel step", "POST", fmt.Sprintf("/v1/tasks/%d/steps/%s/cancel", id, firstStep(id, shop)), map[string]any{},
					fmt.Sprintf(`mutation { cancelStep(taskId: "%d", name: "%s") { name } }`, id, firstStep(id, shop)), "cancelStep", true},
				{"create task", "POST", "/v1/tasks", goodOrder,
					`mutation { createTask(input: {workflow: "shop/orders", version: "1.0.0", context: {order_id: "M1"}}) { id } }`, "createTask", true},
			}
		}
		// The task and step actions, and the reads behind nested fields.
		more := func(id int64) []op {
			step := firstStep(id, shop)
			out := []op{
				{"transitions", "GET", fmt.Sprintf("/v1/tasks/%d/transitions", id), nil, fmt.Sprintf(`{ task(id: "%d") { transitions { id } } }`, id), "task", false},
				{"events", "GET", fmt.Sprintf("/v1/tasks/%d/events", id), nil, fmt.Sprintf(`{ task(id: "%d") { events { seq } } }`, id), "task", false},
				{"workflow", "GET", "/v1/workflows/shop/orders", nil, `{ workflow(namespace: "shop", name: "orders") { name versions { version } } }`, "workflow", false},
			}
			for _, verb := range []string{"retry", "resolve", "cancel"} {
				out = append(out,
					op{verb + " step", "POST", fmt.Sprintf("/v1/tasks/%d/steps/%s/%s", id, step, verb), map[string]any{},
						fmt.Sprintf(`mutation { %sStep(taskId: "%d", name: "%s") { name } }`, verb, id, step), verb + "Step", true},
					op{verb + " task", "POST", fmt.Sprintf("/v1/tasks/%d/%s", id, verb), map[string]any{},
						fmt.Sprintf(`mutation { %sTask(id: "%d") { id } }`, verb, id), verb + "Task", true})
			}
			return out
		}
		decisions := map[bool]int{}
		for _, subject := range subjects {
			for _, id := range []int64{shop, other} {
				for _, o := range append(ops(id), more(id)...) {
					who := []string{"X-Api-Key", subject}
					// GraphQL first: a mutation REST allowed would change
					// what the second call finds.
					a := c.gql(o.query, nil, who...)
					r := c.do(o.method, o.path, o.body, who...)
					name := fmt.Sprintf("%s on task %d as %q", o.name, id, subject)
					restForbidden := r.status == http.StatusForbidden
					decisions[restForbidden]++
					require.Equal(t, restForbidden, a.codeAt(o.field) == "FORBIDDEN", "%s: REST %d %s, GraphQL %+v", name, r.status, r.body, a)
					if !restForbidden && r.status < 400 && !o.mutation {
						require.Empty(t, a.Errors, name)
					}
				}
			}
		}

		require.Greater(t, decisions[true], 20, "the matrix has refusals")
		require.Greater(t, decisions[false], 20, "and grants")

		// One query, two tasks: the one the operator may not see is
		// FORBIDDEN on its path, the other resolves.
		a := c.gql(fmt.Sprintf(`{ mine: task(id: "%d") { id } theirs: task(id: "%d") { id } }`, shop, other), nil, "X-Api-Key", "oscar operator shop")
		require.Equal(t, "FORBIDDEN", a.codeAt("theirs"))
		require.Equal(t, "", a.codeAt("mine"))
		require.Equal(t, "null", string(a.Data["theirs"]))
		require.Contains(t, string(a.Data["mine"]), fmt.Sprint(shop))

		// No credential, no GraphQL, and no introspection.
		r := c.do("POST", "/v1/graphql", map[string]any{"query": `{ __schema { types { name } } }`})
		require.Equal(t, http.StatusUnauthorized, r.status)
		a = c.gql(`{ __schema { queryType { name } } }`, nil, "X-Api-Key", "vera viewer")
		require.Empty(t, a.Errors)
	})
}

// firstStep is the name of the first step of the task: shop's tasks run
// shop/orders, the others default/broken.
func firstStep(id, shop int64) string {
	if id == shop {
		return "validate"
	}
	return "boom"
}

func TestGraphQLLimits(t *testing.T) {
	t.Parallel()
	c := newClient(t, storetest.SQLite(t), options{noRun: true, graphqlLimits: graphql.Limits{MaxDepth: 4, MaxComplexity: 50}})
	a := c.gql(`{ tasks(first: 1) { edges { node { steps { name } } } } }`, nil)
	require.Len(t, a.Errors, 1)
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", a.Errors[0].Extensions["code"], "%+v", a)
	require.Empty(t, a.Data)

	a = c.gql(`fragment F on Task { steps { name } } { tasks(first: 1) { edges { node { ...F } } } }`, nil)
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", a.Errors[0].Extensions["code"], "fragments count where they are spread")

	var b strings.Builder
	b.WriteString("{")
	for i := range 60 {
		fmt.Fprintf(&b, " h%d: health { status }", i)
	}
	b.WriteString(" }")
	a = c.gql(b.String(), nil)
	require.Len(t, a.Errors, 1)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", a.Errors[0].Extensions["code"], "%+v", a)

	// A page counts its items: 20 tasks of 4 fields each is over 50,
	// 2 of them is not.
	a = c.gql(`{ tasks(first: 20) { edges { node { id status } } } }`, nil)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", a.Errors[0].Extensions["code"], "%+v", a)
	a = c.gql(`{ tasks(first: 2) { edges { node { id status } } } }`, nil)
	require.Empty(t, a.Errors)

	a = c.gql(`{ health { status } }`, nil)
	require.Empty(t, a.Errors)
}

// A policy that errors is a deny through GraphQL as through REST, and an
// authenticator that fails lets no operation, introspection included, run.
func TestGraphQLFailsClosed(t *testing.T) {
	t.Parallel()
	store := storetest.SQLite(t)
	admin := newClient(t, store, options{noRun: true})
	id := createTask(t, admin, goodOrder)

	erroring := newClient(t, store, options{authz: fixedAuthz{allow: true, err: errors.New("rego eval error")}, noRun: true})
	a := erroring.gql(fmt.Sprintf(`{ task(id: "%d") { id } tasks { edges { cursor } } }`, id), nil)
	require.Equal(t, "FORBIDDEN", a.codeAt("task"))
	require.Equal(t, "FORBIDDEN", a.codeAt("tasks"))
	a = erroring.gql(`mutation { createTask(input: {workflow: "shop/orders", context: {order_id: "X"}}) { id } }`, nil)
	require.Equal(t, "FORBIDDEN", a.codeAt("createTask"))

	unauth := newClient(t, store, options{authn: failingAuthn{}, noRun: true})
	for _, q := range []string{`{ __schema { types { name } } }`, `{ health { status } }`} {
		r := unauth.do("POST", "/v1/graphql", map[string]any{"query": q})
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Equal(t, "unauthorized", r.errorCode(t))
		r = unauth.do("GET", "/v1/graphql?query="+url.QueryEscape(q), nil)
		require.Equal(t, http.StatusUnauthorized, r.status)
	}
}

// A POST whose body is not declared JSON (curl -d sends a form type) is
// told what to change, not "transport not supported".
func TestGraphQLPostNeedsJSON(t *testing.T) {
	t.Parallel()
	admin := newClient(t, storetest.SQLite(t), options{noRun: true})
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
		r := admin.do("POST", "/v1/graphql", `{"query":"{ health { status } }"}`, "Content-Type", ct)
		require.Equal(t, http.StatusUnsupportedMediaType, r.status, ct)
		var a struct {
			Errors []struct {
				Message    string         `json:"message"`
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		require.NoError(t, json.Unmarshal(r.body, &a), string(r.body))
		require.Len(t, a.Errors, 1)
		require.Contains(t, a.Errors[0].Message, "needs Content-Type: application/json")
		require.Equal(t, "BAD_REQUEST", a.Errors[0].Extensions["code"])
	}
	r := admin.do("POST", "/v1/graphql", `{"query":"{ health { status } }"}`, "Content-Type", "application/json; charset=utf-8")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}

// Nested fields: a task's steps with their parents, children and
// transitions, and the task's events, as the REST routes show them.
func TestGraphQLNestedFields(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{})
		id := createTask(t, c, goodOrder)
		c.waitStatus(float64(id), "complete")

		a := c.gql(`query($id: ID!) { task(id: $id) {
			transitions { id }
			steps { name parents children transitions { to } events(first: 1000) { seq type stepName } }
			events(first: 1000) { seq type stepName } } }`, map[string]any{"id": id})
		require.Empty(t, a.Errors)
		var task struct {
			Transitions []struct{ ID string }
			Steps       []struct {
				Name              string
				Parents, Children []string
				Transitions       []struct{ To string }
				Events            []struct{ Seq, Type, StepName string }
			}
			Events []struct{ Seq, Type, StepName string }
		}
		a.field(t, "task", &task)
		require.Len(t, task.Steps, 2)
		require.Equal(t, "validate", task.Steps[0].Name)
		require.Empty(t, task.Steps[0].Parents)
		require.Equal(t, []string{"ship"}, task.Steps[0].Children)
		require.Equal(t, []string{"validate"}, task.Steps[1].Parents)
		require.Empty(t, task.Steps[1].Children)
		require.NotEmpty(t, task.Steps[1].Transitions)
		require.Equal(t, "complete", task.Steps[1].Transitions[len(task.Steps[1].Transitions)-1].To)

		// A step's events: the task's, of that step (REST's ?step=).
		for _, st := range task.Steps {
			r := c.do("GET", fmt.Sprintf("/v1/tasks/%d/events?limit=1000&step=%s", id, st.Name), nil)
			require.Equal(t, http.StatusOK, r.status)
			rest := r.json(t)["events"].([]any)
			require.NotEmpty(t, rest)
			require.Len(t, st.Events, len(rest))
			for i, e := range rest {
				require.Equal(t, st.Name, e.(map[string]any)["step_name"], "REST keeps the step's events")
				require.Equal(t, fmt.Sprint(e.(map[string]any)["seq"]), st.Events[i].Seq)
				require.Equal(t, st.Name, st.Events[i].StepName)
			}
		}

		r := c.do("GET", fmt.Sprintf("/v1/tasks/%d/events?limit=1000", id), nil)
		require.Equal(t, http.StatusOK, r.status)
		rest := r.json(t)["events"].([]any)
		require.Len(t, task.Events, len(rest))
		for i, e := range rest {
			ev := e.(map[string]any)
			require.Equal(t, ev["type"], task.Events[i].Type)
			require.Equal(t, fmt.Sprint(ev["seq"]), task.Events[i].Seq)
		}
	})
}

// countingAuthn counts authentications.
type countingAuthn struct{ n atomic.Int64 }

func (a *countingAuthn) Authenticate(*http.Request) (*api.Subject, error) {
	a.n.Add(1)
	return &api.Subject{ID: "anonymous", Roles: []string{"admin"}}, nil
}

// A POST /v1/graphql authenticates its credentials once, however many
// REST routes its fields call in process; a GET (which may be a
// WebSocket living for hours) authenticates every call again, so a key
// revoked meanwhile stops working.
func TestGraphQLAuthenticatesAPostOnce(t *testing.T) {
	t.Parallel()
	authn := &countingAuthn{}
	c := newClient(t, storetest.SQLite(t), options{noRun: true, authn: authn})
	id := createTask(t, c, map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": "A-1"}})
	query := fmt.Sprintf(`{ task(id: "%d") { status } step(taskId: "%d", name: "ship") { name }
		workflows { name } health { status } }`, id, id)

	authn.n.Store(0)
	a := c.gql(query, nil)
	require.Empty(t, a.Errors)
	require.EqualValues(t, 1, authn.n.Load(), "POST: one authentication for four REST calls")

	authn.n.Store(0)
	a = c.gql(fmt.Sprintf(`mutation { cancelTask(id: "%d") { status } }`, id), nil)
	require.Empty(t, a.Errors)
	require.EqualValues(t, 1, authn.n.Load(), "a mutation too")

	authn.n.Store(0)
	r := c.do("GET", "/v1/graphql?query="+url.QueryEscape(query), nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.EqualValues(t, 5, authn.n.Load(), "GET: the request and each of its four REST calls")
}
