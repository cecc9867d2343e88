package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// taskerd serve runs the schedules of its workflow directory, picks up a new
// one on SIGHUP, pauses one for the API, and stops cleanly.
func TestServeRunsSchedules(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tick.hcl"), []byte(`
workflow "work" {
  step "a" { handler = "builtin.noop" }
}
schedule "tick" {
  workflow = "default/work"
  cron     = "@every 1s"
  catch_up = "none"
}
`), 0o644))
	db := "sqlite:" + filepath.Join(t.TempDir(), "taskerd.db")
	s := startServe(t, bin, "--db", db, "--workflows", dir, "--workers", "2")

	tagged := func(tag string) int {
		var page struct {
			Tasks []struct{ ID int64 } `json:"tasks"`
		}
		require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/tasks?status=complete&tag="+tag, &page))
		return len(page.Tasks)
	}
	require.Eventually(t, func() bool { return tagged("schedule:tick") >= 2 }, 30*time.Second, 50*time.Millisecond,
		"the schedule fires and its tasks run")

	// A schedule added to the files runs after SIGHUP.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tock.hcl"), []byte(`
schedule "tock" {
  workflow = "default/work"
  cron     = "@every 1s"
}
`), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return tagged("schedule:tock") >= 1 }, 30*time.Second, 50*time.Millisecond,
		"the reloaded schedule fires")

	r := runCLI(t, "schedules", "pause", "tick", "--server", s.url, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var sched struct {
		Paused     bool       `json:"paused"`
		NextFiring *time.Time `json:"next_firing"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/schedules/tick", &sched))
	require.True(t, sched.Paused)
	require.Nil(t, sched.NextFiring)

	require.NoError(t, s.stop(t, syscall.SIGTERM), "the scheduler stops with serve")
}

func TestValidateSchedules(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "validate", writeFile(t, "report.hcl", scheduledWorkflow))
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^schedule nightly-report\s+ops/report\s+30 1 \* \* \* \(Europe/Berlin\)$`, r.stdout)

	bad := strings.Replace(scheduledWorkflow, `"Europe/Berlin"`, `"Europe/Atlantis"`, 1)
	path := writeFile(t, "bad.hcl", bad)
	r = runCLI(t, "validate", path)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "Unknown timezone")
	require.Contains(t, r.stderr, path+":10:")
}
