package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

const scheduledWorkflow = `
workflow "report" {
  namespace = "ops"
  step "a" { handler = "builtin.noop" }
}

schedule "nightly-report" {
  workflow = "ops/report"
  cron     = "30 1 * * *"
  timezone = "Europe/Berlin"
  overlap  = "skip"
  catch_up = "none"
}
`

// scheduleServer runs the API on a workflow file with a schedule (no
// workers: the triggered tasks stay pending).
func scheduleServer(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(writeFile(t, "report.hcl", scheduledWorkflow))
	catalog, err := loadWorkflows(&testWriter{t}, []string{dir}, definition.DefaultMaxFileSize)
	require.NoError(t, err)
	require.Len(t, catalog.Schedules(), 1, "loadWorkflows keeps the schedules")
	store, err := sqlite.Open(context.Background(), tempDB(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	eng, err := engine.New(engine.Config{Store: store, Catalog: catalog, Registry: builtin.NewRegistry()})
	require.NoError(t, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestSchedulesClientCommands(t *testing.T) {
	t.Parallel()
	server := scheduleServer(t)

	r := runCLI(t, "schedules", "list", "--server", server)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^NAME\s+WORKFLOW\s+CRON\s+TIMEZONE\s+STATE\s+NEXT\s+LAST$`, r.stdout)
	require.Regexp(t, `(?m)^nightly-report\s+ops/report\s+30 1 \* \* \*\s+Europe/Berlin\s+active\s+\d{4}-\d\d-\d\dT\d\d:30:00Z\s+-$`, r.stdout)

	r = runCLI(t, "schedules", "show", "nightly-report", "--server", server)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, containsLine(r.stdout, "overlap", "skip"), r.stdout)
	require.True(t, containsLine(r.stdout, "catch_up", "none"), r.stdout)
	require.Regexp(t, `schedule nightly-report\s+\S+report\.hcl:7`, r.stdout)

	r = runCLI(t, "schedules", "pause", "nightly-report", "--server", server)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, containsLine(r.stdout, "state", "paused", "by", "anonymous"), r.stdout)
	require.True(t, containsLine(r.stdout, "next", "firing", "-"), r.stdout)

	r = runCLI(t, "schedules", "trigger", "nightly-report", "--server", server, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var triggered struct {
		Firing struct {
			Kind   string `json:"kind"`
			TaskID int64  `json:"task_id"`
		} `json:"firing"`
		Task struct {
			ID       int64    `json:"id"`
			Workflow string   `json:"workflow"`
			Tags     []string `json:"tags"`
		} `json:"task"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &triggered), r.stdout)
	require.Equal(t, "manual", triggered.Firing.Kind)
	require.Equal(t, triggered.Task.ID, triggered.Firing.TaskID)
	require.Equal(t, "ops/report", triggered.Task.Workflow)
	require.Equal(t, []string{"schedule:nightly-report"}, triggered.Task.Tags)

	r = runCLI(t, "schedules", "resume", "nightly-report", "--server", server)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, containsLine(r.stdout, "state", "active"), r.stdout)
	require.Regexp(t, `last firing\s+\S+ manual created task `, r.stdout)

	r = runCLI(t, "schedules", "list", "--server", server, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var list struct {
		Schedules []struct {
			Name   string `json:"name"`
			Paused bool   `json:"paused"`
		} `json:"schedules"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	require.Len(t, list.Schedules, 1)
	require.False(t, list.Schedules[0].Paused)

	// An unknown schedule: one line, exit 2.
	r = runCLI(t, "schedules", "pause", "nope", "--server", server)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "404 not_found")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(r.stderr), "\n")+1, "one line: %q", r.stderr)
	r = runCLI(t, "schedules", "show", "--server", server)
	require.Equal(t, 2, r.code, "NAME is required")
}
