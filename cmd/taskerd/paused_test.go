package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

const pausedHCL = `workflow "pair" {
  retry {
    base = "10ms"
    max  = "10ms"
  }
  step "one" {
    handler = "builtin.sleep"
    config  = { duration = "2s" }
  }
  step "two" {
    handler = "builtin.sleep"
    config  = { duration = "2s" }
  }
}
`

// handlerStarts lists the steps whose handlers a served node started (its
// debug lines "step handler starting").
func (s *served) handlerStarts(t *testing.T) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var steps []string
	for _, l := range s.log {
		if !strings.Contains(l, `"step handler starting"`) {
			continue
		}
		var line struct {
			Step string `json:"step"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &line), l)
		steps = append(steps, line.Step)
	}
	return steps
}

type stepRow struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
}

func (s *served) taskSteps(t *testing.T, taskID int64) map[string]stepRow {
	t.Helper()
	var page struct {
		Steps []stepRow `json:"steps"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, fmt.Sprintf("/v1/tasks/%d/steps", taskID), &page))
	out := map[string]stepRow{}
	for _, st := range page.Steps {
		out[st.Name] = st
	}
	return out
}

// Two nodes on one PostgreSQL database. Node B (one worker) claims both
// steps of a task, runs one and holds the other for its worker; B is paused
// (SIGSTOP) past its lease; node A recovers both and completes them; B is
// resumed (SIGCONT). B must not start the handler of the step it held: A
// ran it already, and running it again would do its side effect twice.
func TestPausedNodeDoesNotStartAStepTakenOver(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dsn := pgtest.NewDatabase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pair.hcl"), []byte(pausedHCL), 0o644))
	common := []string{"--db", dsn, "--workflows", dir, "--lease", "1s", "--log-level", "debug"}

	b := startServe(t, bin, append(common, "--node-id", "node-b", "--workers", "1")...)
	res, err := http.Post(b.url+"/v1/tasks", "application/json", bytes.NewBufferString(`{"workflow": "default/pair"}`))
	require.NoError(t, err)
	var task struct{ ID int64 }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&task))
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)

	// B runs one handler and holds the other step's claim for its worker.
	require.Eventually(t, func() bool {
		steps := b.taskSteps(t, task.ID)
		return len(b.handlerStarts(t)) == 1 && steps["one"].Status == "in_progress" && steps["two"].Status == "in_progress"
	}, 10*time.Second, 5*time.Millisecond, "node B claims both steps and starts one")
	first := b.handlerStarts(t)[0]
	held := map[string]string{"one": "two", "two": "one"}[first]
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGSTOP))
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
		}
	})

	// A recovers B's steps once their leases expire, and completes them.
	a := startServe(t, bin, append(common, "--node-id", "node-a", "--workers", "4")...)
	require.Eventually(t, func() bool {
		var got struct{ Status string }
		return a.getJSON(t, fmt.Sprintf("/v1/tasks/%d", task.ID), &got) == http.StatusOK && got.Status == "complete"
	}, 30*time.Second, 20*time.Millisecond, "node A completes the task")
	require.ElementsMatch(t, []string{"one", "two"}, a.handlerStarts(t))

	// B resumes: its running handler ends (its result is dropped), its
	// worker frees up, and the step it held is found lost, not started.
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGCONT))
	resumed = true
	b.waitLog(t, `"step":"`+held+`"`) // B says what became of the step it held
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, l := range b.log {
			if strings.Contains(l, `"step":"`+held+`"`) && strings.Contains(l, "lease") {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "node B to drop the step it held (lease lost)")
	require.Equal(t, []string{first}, b.handlerStarts(t), "node B started no handler of a step node A had taken over")

	steps := a.taskSteps(t, task.ID)
	require.Equal(t, 2, steps[first].Attempts, "B's started attempt counts")
	require.Equal(t, 1, steps[held].Attempts, "B's claim that never started does not")
	require.NoError(t, b.stop(t, syscall.SIGTERM))
	require.NoError(t, a.stop(t, syscall.SIGTERM))
}
