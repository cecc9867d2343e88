package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

// A loaded workflow naming a handler no plugin provides is listed as
// unavailable, with the reason; creating its tasks answers 409
// workflow_unavailable; /health/status lists it and stays healthy.
func TestUnavailableWorkflow(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true})
		ws, diags := definition.NewParser().ParseSource("test.hcl", []byte(testWorkflows+`
workflow "fulfil" {
  step "check" { handler = "builtin.noop" }
  step "reserve" {
    handler    = "orders.reserve"
    depends_on = [step.check]
  }
  step "charge" {
    handler    = "orders.charge"
    depends_on = [step.check]
  }
}
`))
		require.False(t, diags.HasErrors(), diags.Error())
		c.eng.SetCatalog(definition.NewCatalog(ws))

		r := c.do("GET", "/v1/workflows", nil)
		require.Equal(t, http.StatusOK, r.status)
		byName := map[string]map[string]any{}
		for _, w := range r.json(t)["workflows"].([]any) {
			m := w.(map[string]any)
			byName[m["name"].(string)+"@"+m["version"].(string)] = m
		}
		require.Equal(t, true, byName["orders@1.0.0"]["available"])
		require.NotContains(t, byName["orders@1.0.0"], "missing_handlers")
		fulfil := byName["fulfil@0.1.0"]
		require.Equal(t, false, fulfil["available"])
		require.Equal(t, []any{"orders.charge", "orders.reserve"}, fulfil["missing_handlers"])
		require.Contains(t, fulfil["unavailable_reason"], `configure plugin "orders"`)

		r = c.do("GET", "/v1/workflows/default/fulfil", nil)
		require.Equal(t, http.StatusOK, r.status)
		v := r.json(t)["versions"].([]any)[0].(map[string]any)
		require.Equal(t, false, v["available"])
		require.Len(t, v["steps"], 3, "an unavailable workflow is shown in full")

		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "fulfil"})
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		require.Equal(t, "workflow_unavailable", r.errorCode(t))
		e := r.json(t)["error"].(map[string]any)
		require.Contains(t, e["message"], "orders.charge, orders.reserve")
		require.Equal(t, map[string]any{"workflow": "default/fulfil@0.1.0", "missing_handlers": []any{"orders.charge", "orders.reserve"}}, e["details"])
		// Nothing was written.
		r = c.do("GET", "/v1/tasks", nil)
		require.Empty(t, r.json(t)["tasks"])

		// Before the context is looked at: no context makes it run here.
		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "fulfil", "bypass_steps": []string{"nope"}})
		require.Equal(t, http.StatusConflict, r.status, string(r.body))

		r = c.do("GET", "/health/status", nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		st := r.json(t)
		require.Equal(t, "healthy", st["status"])
		require.Equal(t, []any{map[string]any{
			"workflow": "default/fulfil@0.1.0", "missing_handlers": []any{"orders.charge", "orders.reserve"},
			"reason": e["message"].(string)[len("workflow default/fulfil@0.1.0 is unavailable: "):],
		}}, st["unavailable_workflows"])
	})
}
