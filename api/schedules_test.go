package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
)

// scheduleFiles: a workflow in each of two namespaces, each with a
// schedule.
const scheduleFiles = `
workflow "report" {
  namespace = "shop"
  step "a" { handler = "builtin.noop" }
}
workflow "payroll" {
  namespace = "hr"
  step "a" { handler = "builtin.noop" }
}
schedule "shop-nightly" {
  workflow = "shop/report"
  cron     = "0 2 * * *"
  timezone = "Europe/Berlin"
  overlap  = "skip"
  context  = { full = true }
}
schedule "hr-monthly" {
  workflow = "hr/payroll"
  cron     = "@monthly"
}
`

func scheduleCatalog(t *testing.T) *definition.Catalog {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "s.hcl"), []byte(scheduleFiles), 0o600))
	p := definition.NewParser()
	ws, diags := p.Load(dir)
	require.False(t, diags.HasErrors(), diags.Error())
	return definition.NewCatalog(ws).WithSchedules(p.Schedules())
}

// headerAuthn takes the subject from X-Test-Subject: "id role [ns,ns]".
type headerAuthn struct{}

func (headerAuthn) Authenticate(r *http.Request) (*api.Subject, error) {
	f := strings.Fields(r.Header.Get("X-Test-Subject"))
	if len(f) < 2 {
		return nil, api.ErrNoCredentials
	}
	claims := map[string]any{}
	if len(f) > 2 {
		claims["namespaces"] = strings.Split(f[2], ",")
	}
	raw, _ := json.Marshal(claims)
	return &api.Subject{ID: f[0], Roles: []string{f[1]}, Claims: raw}, nil
}

type wakeCounter struct{ n atomic.Int32 }

func (w *wakeCounter) Wake() { w.n.Add(1) }

func as(subject string) []string { return []string{"X-Test-Subject", subject} }

func scheduleNames(t *testing.T, r response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var names []string
	for _, s := range r.json(t)["schedules"].([]any) {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	return names
}

func TestScheduleRoutes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		wake := &wakeCounter{}
		c := newClient(t, open(t), options{authn: headerAuthn{}, authz: defaultPolicy(t), noRun: true,
			catalog: scheduleCatalog(t), scheduler: wake})
		admin, viewer, shopOp, hrOp := as("alice admin"), as("vera viewer"), as("sam operator shop"), as("hank operator hr")

		// Listing: everyone allowed sees what their namespaces hold.
		require.Equal(t, []string{"hr-monthly", "shop-nightly"}, scheduleNames(t, c.do("GET", "/v1/schedules", nil, admin...)))
		require.Equal(t, []string{"hr-monthly", "shop-nightly"}, scheduleNames(t, c.do("GET", "/v1/schedules", nil, viewer...)))
		require.Equal(t, []string{"shop-nightly"}, scheduleNames(t, c.do("GET", "/v1/schedules", nil, shopOp...)))
		require.Equal(t, []string{"hr-monthly"}, scheduleNames(t, c.do("GET", "/v1/schedules", nil, hrOp...)))
		r := c.do("GET", "/v1/schedules", nil, as("ned operator nowhere")...)
		require.Equal(t, http.StatusForbidden, r.status)
		require.Equal(t, "forbidden", r.errorCode(t))

		r = c.do("GET", "/v1/schedules/shop-nightly", nil, viewer...)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		v := r.json(t)
		require.Equal(t, "shop/report", v["workflow"])
		require.Equal(t, "shop", v["namespace"])
		require.Equal(t, "0 2 * * *", v["cron"])
		require.Equal(t, "Europe/Berlin", v["timezone"])
		require.Equal(t, "skip", v["overlap"])
		require.Equal(t, "one", v["catch_up"])
		require.Equal(t, false, v["paused"])
		require.NotNil(t, v["next_firing"])
		require.Nil(t, v["last_firing"])
		require.Equal(t, map[string]any{"full": true}, v["context"])

		// Unknown: 404 to whom may act everywhere, 403 to others.
		r = c.do("GET", "/v1/schedules/nope", nil, admin...)
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "not_found", r.errorCode(t))
		require.Equal(t, http.StatusForbidden, c.do("POST", "/v1/schedules/nope/pause", nil, shopOp...).status)

		// A viewer may not pause, trigger or resume.
		for _, verb := range []string{"pause", "resume", "trigger"} {
			r = c.do("POST", "/v1/schedules/shop-nightly/"+verb, nil, viewer...)
			require.Equal(t, http.StatusForbidden, r.status, verb)
			require.Equal(t, "forbidden", r.errorCode(t))
		}
		// An operator of hr may not touch shop's schedule.
		for _, verb := range []string{"pause", "resume", "trigger"} {
			require.Equal(t, http.StatusForbidden, c.do("POST", "/v1/schedules/shop-nightly/"+verb, nil, hrOp...).status, verb)
		}
		require.Equal(t, http.StatusForbidden, c.do("GET", "/v1/schedules/shop-nightly", nil, hrOp...).status)
		require.Zero(t, wake.n.Load())

		// shop's operator pauses it: persisted, shown, the scheduler woken.
		r = c.do("POST", "/v1/schedules/shop-nightly/pause", nil, shopOp...)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		v = r.json(t)
		require.Equal(t, true, v["paused"])
		require.Equal(t, "sam", v["paused_by"])
		require.Nil(t, v["next_firing"], "a paused schedule has no next firing")
		require.Equal(t, int32(1), wake.n.Load())
		states, err := c.store.ScheduleStates(context.Background())
		require.NoError(t, err)
		require.Len(t, states, 1)
		require.True(t, states[0].Paused)
		require.Equal(t, true, c.do("GET", "/v1/schedules/shop-nightly", nil, admin...).json(t)["paused"])

		// Trigger: a task now, paused or not.
		r = c.do("POST", "/v1/schedules/shop-nightly/trigger", nil, shopOp...)
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		body := r.json(t)
		task := body["task"].(map[string]any)
		require.Equal(t, "shop/report", task["workflow"])
		require.Equal(t, "sam", task["initiator"])
		require.Equal(t, []any{"schedule:shop-nightly"}, task["tags"])
		require.Equal(t, map[string]any{"full": true}, task["context"])
		firing := body["firing"].(map[string]any)
		require.Equal(t, "manual", firing["kind"])
		require.Equal(t, "created", firing["outcome"])
		require.Equal(t, task["id"], firing["task_id"])
		require.Equal(t, path("/v1/tasks/%v", task["id"]), r.header.Get("Location"))
		// A second trigger creates another task: skip is for cron firings.
		r = c.do("POST", "/v1/schedules/shop-nightly/trigger", "{}", shopOp...)
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.NotEqual(t, task["id"], r.json(t)["task"].(map[string]any)["id"])

		last := c.do("GET", "/v1/schedules/shop-nightly", nil, viewer...).json(t)["last_firing"].(map[string]any)
		require.Equal(t, "manual", last["kind"])
		require.Equal(t, "sam", last["actor"])

		r = c.do("POST", "/v1/schedules/shop-nightly/resume", nil, shopOp...)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, false, r.json(t)["paused"])
		require.NotNil(t, r.json(t)["next_firing"])

		r = c.do("POST", "/v1/schedules/shop-nightly/pause", `{"bogus": 1}`, shopOp...)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "bad_request", r.errorCode(t))
	})
}

// A policy that fails denies: the filtered listing too.
func TestScheduleListingFailsClosed(t *testing.T) {
	t.Parallel()
	c := newClient(t, storetest.SQLite(t), options{authz: fixedAuthz{allow: true, err: errors.New("rego eval error")}, noRun: true,
		catalog: scheduleCatalog(t)})
	require.Equal(t, http.StatusForbidden, c.do("GET", "/v1/schedules", nil).status)
	require.Equal(t, http.StatusForbidden, c.do("POST", "/v1/schedules/shop-nightly/trigger", nil).status)
	tasks, err := c.store.ListTasks(context.Background(), &backends.ListTasksParams{})
	require.NoError(t, err)
	require.Empty(t, tasks)
}
