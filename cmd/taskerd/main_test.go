package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// result is what one CLI invocation did.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func writeFile(t *testing.T, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	return path
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"frobnicate"},
		{"validate", "--bogus", "../../workflows"},
		{"graph", "--bogus"},
	} {
		r := runCLI(t, args...)
		require.Equal(t, 2, r.code, "args %v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "taskerd: ")
		require.Empty(t, r.stdout)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"validate", "graph"} {
		r := runCLI(t, cmd, "--help")
		require.Equal(t, 0, r.code)
		require.Contains(t, r.stdout, "Usage:")
		require.Contains(t, r.stdout, "taskerd "+cmd)
	}
	r := runCLI(t, "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "validate")
	require.Contains(t, r.stdout, "graph")
}
