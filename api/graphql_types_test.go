package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

// camelKeys is v (decoded JSON) with its object keys in camelCase, the
// way the GraphQL types name the REST views' fields; below a key of keep
// (an open-ended value, such as a JSON Schema) nothing is renamed.
func camelKeys(v any, keep ...string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			parts := strings.Split(k, "_")
			for i := 1; i < len(parts); i++ {
				parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
			}
			name := strings.Join(parts, "")
			if slices.Contains(keep, k) {
				out[name] = x
			} else {
				out[name] = camelKeys(x, keep...)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = camelKeys(x, keep...)
		}
		return out
	}
	return v
}

// availableDefaults fills in what a REST availability leaves out when
// the workflow is available (omitempty): GraphQL has [] and null.
func availableDefaults(m map[string]any) map[string]any {
	if _, ok := m["missingHandlers"]; !ok {
		m["missingHandlers"] = []any{}
	}
	if _, ok := m["unavailableReason"]; !ok {
		m["unavailableReason"] = nil
	}
	return m
}

// restJSON is GET path's answer, decoded.
func restJSON(t *testing.T, c *client, path string) any {
	t.Helper()
	r := c.do("GET", path, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var v any
	require.NoError(t, json.Unmarshal(r.body, &v))
	return v
}

// gqlJSON is data.field of query, decoded; the query must not fail.
func gqlJSON(t *testing.T, c *client, query string, vars map[string]any, field string) any {
	t.Helper()
	a := c.gql(query, vars)
	require.Empty(t, a.Errors, "%+v", a)
	var v any
	a.field(t, field, &v)
	return v
}

const workflowVersionFields = `fragment V on WorkflowVersion {
	namespace name version description contextSchema
	steps { name description handler dependsOn level skippable retryable retryLimit timeoutMs }
	levels edges { from to } available missingHandlers unavailableReason }`

// workflows, workflow and health are typed objects holding exactly what
// their REST routes answer: every field of the REST view, renamed to
// camelCase, with the same values, for every workflow loaded (one of which
// this node cannot run) and for every state count.
func TestGraphQLWorkflowsAndHealthMirrorREST(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		ws, diags := definition.NewParser().ParseSource("test.hcl", []byte(testWorkflows+`
workflow "fulfil" {
  description = "needs the orders plugin"
  step "check" {
    handler = "builtin.noop"
    timeout = "90s"
    retry { limit = 5 }
  }
  step "charge" {
    handler    = "orders.charge"
    depends_on = [step.check]
  }
}
`))
		require.False(t, diags.HasErrors(), diags.Error())
		store := open(t)
		c := newClient(t, store, options{catalog: definition.NewCatalog(ws)})
		done := createTask(t, c, goodOrder)
		failed := createTask(t, c, map[string]any{"workflow": "default/broken", "context": map[string]any{}})
		c.waitStatus(float64(done), "complete")
		c.waitStatus(float64(failed), "error")

		// Every workflow listed, field for field.
		rest := restJSON(t, c, "/v1/workflows").(map[string]any)["workflows"].([]any)
		require.Len(t, rest, 4)
		want := camelKeys(rest).([]any)
		for _, w := range want {
			availableDefaults(w.(map[string]any))
		}
		got := gqlJSON(t, c, `{ workflows { namespace name version description steps file available missingHandlers unavailableReason } }`, nil, "workflows")
		require.Equal(t, want, got)

		// Each one in full; the context schema is the REST JSON as it is.
		seen := 0
		for _, w := range want {
			w := w.(map[string]any)
			ns, name := w["namespace"].(string), w["name"].(string)
			if w["version"] != "1.0.0" && name == "orders" {
				continue // the other version of shop/orders
			}
			seen++
			one := camelKeys(restJSON(t, c, "/v1/workflows/"+ns+"/"+name), "context_schema").(map[string]any)
			for _, v := range one["versions"].([]any) {
				availableDefaults(v.(map[string]any))
			}
			got := gqlJSON(t, c, `query($ns: String!, $name: String!) { workflow(namespace: $ns, name: $name) { namespace name versions { ...V } } } `+workflowVersionFields,
				map[string]any{"ns": ns, "name": name}, "workflow")
			require.Equal(t, one, got, "%s/%s", ns, name)

			// With a version, that one alone.
			for _, v := range one["versions"].([]any) {
				v := v.(map[string]any)
				got := gqlJSON(t, c, `query($ns: String!, $name: String!, $v: String) { workflow(namespace: $ns, name: $name, version: $v) { namespace name versions { ...V } } } `+workflowVersionFields,
					map[string]any{"ns": ns, "name": name, "v": v["version"]}, "workflow")
				require.Equal(t, map[string]any{"namespace": ns, "name": name, "versions": []any{v}}, got)
			}
		}
		require.Equal(t, 3, seen)

		// Spot checks of what the comparison covered.
		a := c.gql(`{ workflow(namespace: "default", name: "fulfil") { versions { ...V } } } `+workflowVersionFields, nil)
		require.Empty(t, a.Errors)
		var fulfil struct {
			Versions []struct {
				Description       string
				Available         bool
				MissingHandlers   []string
				UnavailableReason string
				Steps             []struct {
					Name       string
					DependsOn  []string
					RetryLimit int
					TimeoutMs  int64
				}
				Levels [][]string
				Edges  []struct{ From, To string }
			}
		}
		a.field(t, "workflow", &fulfil)
		require.Len(t, fulfil.Versions, 1)
		f := fulfil.Versions[0]
		require.Equal(t, "needs the orders plugin", f.Description)
		require.False(t, f.Available)
		require.Equal(t, []string{"orders.charge"}, f.MissingHandlers)
		require.Contains(t, f.UnavailableReason, `"orders"`)
		require.Equal(t, 5, f.Steps[0].RetryLimit)
		require.Equal(t, int64(90_000), f.Steps[0].TimeoutMs)
		require.Equal(t, []string{"check"}, f.Steps[1].DependsOn)
		require.Equal(t, [][]string{{"check"}, {"charge"}}, f.Levels)
		require.Equal(t, []struct{ From, To string }{{"check", "charge"}}, f.Edges)
		var orders struct {
			Versions []struct{ ContextSchema map[string]any }
		}
		a = c.gql(`{ workflow(namespace: "shop", name: "orders", version: "1.0.0") { versions { contextSchema } } }`, nil)
		require.Empty(t, a.Errors)
		a.field(t, "workflow", &orders)
		require.Equal(t, []any{"order_id"}, orders.Versions[0].ContextSchema["required"])

		// A version or a workflow that is not loaded: NOT_FOUND.
		a = c.gql(`{ v: workflow(namespace: "shop", name: "orders", version: "3.0.0") { name } w: workflow(namespace: "shop", name: "nope") { name } }`, nil)
		require.Equal(t, "NOT_FOUND", a.codeAt("v"))
		require.Equal(t, "NOT_FOUND", a.codeAt("w"))

		// Health: every count, the unavailable workflow, the node. The
		// uptime and the goroutines move between the two calls.
		health := `{ health { status tasks { ...C } steps { ...C } retryableErrors inBackoff exhausted
			unavailableWorkflows { workflow missingHandlers reason }
			node { id hostname pid startedAt uptimeSeconds goVersion goroutines workflows } } }
			fragment C on StateCounts { pending inProgress complete error cancelled resolvedManually }`
		wantHealth := camelKeys(restJSON(t, c, "/health/status")).(map[string]any)
		gotHealth := gqlJSON(t, c, health, nil, "health").(map[string]any)
		for _, h := range []map[string]any{wantHealth, gotHealth} {
			node := h["node"].(map[string]any)
			require.Greater(t, node["uptimeSeconds"], 0.0)
			require.Greater(t, node["goroutines"], 0.0)
			delete(node, "uptimeSeconds")
			delete(node, "goroutines")
		}
		require.Equal(t, wantHealth, gotHealth)
		require.Len(t, wantHealth["tasks"], len(backends.AllStates), "every state is counted")
		require.Equal(t, map[string]any{"pending": 0.0, "inProgress": 0.0, "complete": 1.0, "error": 1.0, "cancelled": 0.0, "resolvedManually": 0.0}, gotHealth["tasks"])
		require.Equal(t, 1.0, gotHealth["exhausted"])
		require.Equal(t, c.eng.NodeID(), gotHealth["node"].(map[string]any)["id"])
		require.Len(t, gotHealth["unavailableWorkflows"], 1)

		// Unhealthy (REST's 503): UNAVAILABLE, with REST's reason.
		require.NoError(t, store.Close())
		a = c.gql(`{ health { status } }`, nil)
		require.Equal(t, "UNAVAILABLE", a.codeAt("health"), "%+v", a)
		require.Contains(t, a.Errors[0].Message, "database: ")
	})
}
