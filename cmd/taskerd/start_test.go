package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startServeIn starts the binary in dir (its working directory) with
// --auth none.
func startServeIn(t *testing.T, bin, dir string, args ...string) *served {
	t.Helper()
	return startServe(t, binIn(t, bin, dir), args...)
}

// binIn is bin run in the working directory dir: startServe has no
// working directory to set, so this is a script that changes to dir first.
func binIn(t *testing.T, bin, dir string) string {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "taskerd-in-dir")
	script := fmt.Sprintf("#!/bin/sh\ncd %q || exit 99\nexec %q \"$@\"\n", dir, bin)
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
	return wrapper
}

// post sends a JSON body and returns the status and the decoded answer.
func (s *served) post(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	res, err := http.Post(s.url+path, "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m), string(out))
	return res.StatusCode, m
}

// waitTaskStatus polls a task until it has status.
func (s *served) waitTaskStatus(t *testing.T, id any, status string) {
	t.Helper()
	var last map[string]any
	require.Eventually(t, func() bool {
		last = nil
		if s.getJSON(t, "/v1/tasks/"+jsonNumber(id), &last) != http.StatusOK {
			return false
		}
		return last["status"] == status
	}, 30*time.Second, 20*time.Millisecond, "task %v never became %s (last %v)", id, status, last)
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// `taskerd serve` with no flags in an empty directory starts: it creates
// taskerd.db, serves no workflows, and logs where to put them.
func TestServeInAnEmptyDirectory(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	s := startServeIn(t, bin, dir)
	require.Empty(t, s.workflowNames(t))
	hint := s.logged(t, "no workflow directory: serving no workflows")
	require.Len(t, hint, 1)
	require.Contains(t, hint[0]["hint"], "taskerd init")
	require.FileExists(t, filepath.Join(dir, "taskerd.db"))

	// The directory appears, with a workflow: SIGHUP serves it.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows", "w.hcl"), []byte(serveHCL), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return len(s.workflowNames(t)) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	// An empty workflow directory starts too; an explicit one that does
	// not exist is a mistake, refused.
	empty := t.TempDir()
	s = startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", empty)
	require.Len(t, s.logged(t, "no workflow files: serving no workflows"), 1)
	require.NoError(t, s.stop(t, syscall.SIGTERM))
	r := runBinary(t, bin, "serve", "--auth", "none", "--db", "sqlite::memory:", "--workflows", filepath.Join(empty, "nope"))
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "no such file or directory")
}

// In this repository's root serve starts with the shipped workflows:
// order_fulfillment, whose handlers come from the orders example plugin
// not configured here, is listed as unavailable and logged; its tasks are
// refused with 409 workflow_unavailable; the others run.
func TestServeRepositoryRootMarksPluginWorkflowsUnavailable(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	// The repository's own layout, without writing into it: ./workflows is
	// the default directory.
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(dir, "workflows"), os.DirFS(filepath.Join(root, "workflows"))))
	s := startServeIn(t, bin, dir)

	var list struct {
		Workflows []struct {
			Name            string   `json:"name"`
			Available       bool     `json:"available"`
			MissingHandlers []string `json:"missing_handlers"`
			Reason          string   `json:"unavailable_reason"`
		} `json:"workflows"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/workflows", &list))
	files, err := filepath.Glob(filepath.Join(root, "workflows", "*.hcl"))
	require.NoError(t, err)
	require.Len(t, list.Workflows, len(files))
	for _, w := range list.Workflows {
		if w.Name == "order_fulfillment" {
			require.False(t, w.Available)
			require.Contains(t, w.MissingHandlers, "orders.charge_payment")
			require.Contains(t, w.Reason, `configure plugin "orders"`)
		} else {
			require.True(t, w.Available, w.Name)
		}
	}
	logged := s.logged(t, "workflow unavailable: a handler it names is not registered; its tasks are refused")
	require.Len(t, logged, 1)
	require.Equal(t, "ecommerce/order_fulfillment@1.0.0", logged[0]["workflow"])

	code, body := s.post(t, "/v1/tasks", map[string]any{"workflow": "ecommerce/order_fulfillment"})
	require.Equal(t, http.StatusConflict, code, body)
	require.Equal(t, "workflow_unavailable", body["error"].(map[string]any)["code"])

	var status struct {
		Status      string `json:"status"`
		Unavailable []struct {
			Workflow string `json:"workflow"`
		} `json:"unavailable_workflows"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/health/status", &status))
	require.Equal(t, "healthy", status.Status)
	require.Len(t, status.Unavailable, 1)
	require.Equal(t, "ecommerce/order_fulfillment@1.0.0", status.Unavailable[0].Workflow)
	require.Equal(t, http.StatusOK, s.getJSON(t, "/health/ready", nil))

	code, body = s.post(t, "/v1/tasks", map[string]any{"workflow": "diamond"})
	require.Equal(t, http.StatusCreated, code, body)
	s.waitTaskStatus(t, body["id"], "complete")

	// A reload applies the same rule: a new workflow for a missing plugin
	// is loaded as unavailable, not refused.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows", "pay.hcl"), []byte(`workflow "pay" {
  step "charge" { handler = "payments.charge" }
}`), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return len(s.workflowNames(t)) == len(files)+1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		for _, rec := range s.logged(t, "workflow unavailable: a handler it names is not registered; its tasks are refused") {
			if rec["workflow"] == "default/pay@0.1.0" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
