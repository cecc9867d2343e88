package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// paddedHCL is a valid one-step workflow padded with a comment to size
// bytes.
func paddedHCL(size int) string {
	src := "workflow \"padded\" {\n  step \"a\" { handler = \"builtin.noop\" }\n}\n# "
	return src + strings.Repeat("x", size-len(src)-1) + "\n"
}

// --max-workflow-size bounds a workflow file on every command that loads
// workflows; TASKERD_MAX_WORKFLOW_SIZE sets it when the flag is not given,
// and max_workflow_size in the daemon config when neither is (issue 14,
// item 4). Not parallel: it sets the environment.
func TestMaxWorkflowSizeFlagEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "padded.hcl")
	require.NoError(t, os.WriteFile(path, []byte(paddedHCL(3000)), 0o644))
	tooLarge := func(r result) {
		t.Helper()
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "Error: "+path+":1:1: Workflow file too large\n")
		require.Contains(t, r.stderr, path+" is 3000 bytes (2.9 KiB); a workflow file may be at most 2048 bytes (2.0 KiB). "+
			"Raise the limit with --max-workflow-size, TASKERD_MAX_WORKFLOW_SIZE or max_workflow_size in the daemon config.")
		require.True(t, strings.HasSuffix(r.stderr, "taskerd: invalid workflows: 1 error\n"), r.stderr)
	}

	// serve logs the diagnostics as a record rather than printing them.
	serveTooLarge := func(r result) {
		t.Helper()
		require.Equal(t, 1, r.code, r.stderr)
		require.Equal(t, "invalid workflows: 1 error", exitMessage(t, r.stderr))
		var rec struct{ Msg, Diagnostics string }
		for _, line := range strings.Split(r.stderr, "\n") {
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "workflows do not load" {
				break
			}
		}
		require.Equal(t, "workflows do not load", rec.Msg, r.stderr)
		require.Contains(t, rec.Diagnostics, "Error: "+path+":1:1: Workflow file too large\n")
		require.Contains(t, rec.Diagnostics, "Raise the limit with --max-workflow-size")
	}

	// The default, 4 MiB, reads it.
	r := runCLI(t, "validate", path)
	require.Equal(t, 0, r.code, r.stderr)

	// The flag, on each command that loads workflows.
	tooLarge(runCLI(t, "validate", "--max-workflow-size", "2048", path))
	tooLarge(runCLI(t, "validate", "--max-workflow-size", "2048", dir))
	tooLarge(runCLI(t, "graph", "--max-workflow-size", "2048", path))
	tooLarge(runCLI(t, "run", "--max-workflow-size", "2048", "--db", tempDB(t), path))
	serveTooLarge(runCLI(t, "serve", "--max-workflow-size", "2048", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", dir))
	r = runCLI(t, "validate", "--max-workflow-size", "100", path)
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: --max-workflow-size must be at least 1024 bytes, not 100\n", r.stderr)
	for _, cmd := range []string{"validate", "graph", "run", "serve"} {
		r := runCLI(t, cmd, "--help")
		require.Contains(t, r.stdout, "--max-workflow-size", cmd)
	}

	// The environment, which the flag overrides.
	t.Setenv("TASKERD_MAX_WORKFLOW_SIZE", "2048")
	tooLarge(runCLI(t, "validate", path))
	r = runCLI(t, "validate", "--max-workflow-size", "4096", path)
	require.Equal(t, 0, r.code, r.stderr)
	t.Setenv("TASKERD_MAX_WORKFLOW_SIZE", "lots")
	r = runCLI(t, "validate", path)
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: TASKERD_MAX_WORKFLOW_SIZE=\"lots\": want a number of bytes\n", r.stderr)

	// The daemon config, which the environment overrides.
	cfg := writeFile(t, "taskerd.hcl", "max_workflow_size = 2048\n")
	t.Setenv("TASKERD_MAX_WORKFLOW_SIZE", "")
	serveTooLarge(runCLI(t, "serve", "--config", cfg, "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", dir))
	tooLarge(runCLI(t, "run", "--config", cfg, "--db", tempDB(t), path))
	t.Setenv("TASKERD_MAX_WORKFLOW_SIZE", "4096")
	r = runCLI(t, "run", "--config", cfg, "--db", tempDB(t), path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "default/padded@0.1.0")

	bad := writeFile(t, "taskerd.hcl", "max_workflow_size = 10\n")
	r = runCLI(t, "serve", "--config", bad, "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", dir)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "taskerd.hcl:1:21: Invalid max_workflow_size: max_workflow_size must be at least 1024 bytes, not 10.")
}
