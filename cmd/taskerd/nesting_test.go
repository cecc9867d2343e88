package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// deepHCL is a workflow whose step config nests open, 100,000 times, on
// line 4: 200 KB that used to exhaust the HCL parser's stack and kill the
// process (issue 14, item 3). The 101st level is at column 117.
func deepHCL(open, close string) string {
	const n = 100_000
	return "workflow \"deep\" {\n  step \"a\" {\n    handler = \"builtin.noop\"\n    config = { x = " +
		strings.Repeat(open, n) + "1" + strings.Repeat(close, n) + " }\n  }\n}\n"
}

// runBinary runs the built taskerd with a deadline and returns what it did.
// Deep files are run through the binary rather than in-process so that a
// crash shows as a failed assertion rather than killing the test binary.
func runBinary(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "taskerd %v did not run: %s", args, errOut.String())
		code = ee.ExitCode()
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// requireRefusedDeep checks that a command refused deep.hcl the way a
// command refuses an invalid workflow: exit 1, the file:line of the 101st
// level (where, as file:line:col), a short message, no stack dump.
func requireRefusedDeep(t *testing.T, r result, where string, args ...string) {
	t.Helper()
	require.Equal(t, 1, r.code, "taskerd %v: %.2000s", args, r.stderr)
	require.Contains(t, r.stderr, "Error: "+where+": Nesting too deep", args)
	require.Contains(t, r.stderr, "more than 100 levels")
	require.Equal(t, "invalid workflows: 1 error", exitMessage(t, r.stderr))
	require.NotContains(t, r.stderr, "goroutine")
	require.Less(t, len(r.stderr), 2000, "the 200 KB line is not printed whole: %s", r.stderr)
}

func TestValidateRefusesDeepNesting(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	for _, tc := range []struct{ name, open, close, col string }{
		{"parentheses", "(", ")", "117"},
		{"arrays", "[", "]", "117"},
		{"objects", "{a=", "}", "311"}, // 20 + 3*97: the 98th {a=
	} {
		path := writeFile(t, tc.name+".hcl", deepHCL(tc.open, tc.close))
		r := runBinary(t, bin, "validate", path)
		requireRefusedDeep(t, r, path+":4:"+tc.col, "validate", tc.name)
		require.Empty(t, r.stdout)
	}
}

// Every command that loads workflows refuses the file the same way, and
// one deep file spoils the directory it is in.
func TestEveryCommandRefusesDeepNesting(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	deep := filepath.Join(dir, "deep.hcl")
	require.NoError(t, os.WriteFile(deep, []byte(deepHCL("(", ")")), 0o644))
	for _, args := range [][]string{
		{"validate", dir},
		{"graph", deep},
		{"graph", dir, "--workflow", "default/work"},
		{"run", dir, "--workflow", "default/work", "--db", tempDB(t)},
		{"serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", dir},
	} {
		requireRefusedDeep(t, runBinary(t, bin, args...), deep+":4:117", args...)
	}
}

// A SIGHUP that finds a deep file keeps the daemon running with the
// workflows it had.
func TestServeReloadRefusesDeepNesting(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s := startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", dir)
	require.Equal(t, []string{"work"}, s.workflowNames(t))

	deep := filepath.Join(dir, "deep.hcl")
	require.NoError(t, os.WriteFile(deep, []byte(deepHCL("[", "]")), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "reloading workflows failed")
	s.waitLog(t, deep+":4:117: Nesting too deep")
	require.Equal(t, http.StatusOK, s.getJSON(t, "/health/live", nil))
	require.Equal(t, []string{"work"}, s.workflowNames(t))
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
