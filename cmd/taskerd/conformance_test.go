package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// rawPlugin builds plugin/conformance's hand-written test plugin once per
// test binary.
var rawPlugin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskerd-cli-rawplugin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "rawplugin")
	if out, err := exec.Command("go", "build", "-o", bin, "../../plugin/conformance/testdata/rawplugin").CombinedOutput(); err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "building rawplugin: " + e.err.Error() + "\n" + e.out }

func TestPluginsConformancePasses(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	r := runCLI(t, "plugins", "conformance", bin, "--handler", "echo", "--context", "@"+writeFile(t, "order.json", `{"order_id":"A-1"}`), "--config", `{"greeting":"hi"}`)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 19, r.stdout)
	for _, l := range lines[:18] {
		require.Regexp(t, `^PASS [a-z-]+: .+`, l)
	}
	require.Contains(t, r.stdout, "PASS execute-handler: success ")
	require.Contains(t, r.stdout, `order_id`)
	require.Equal(t, "18 checks: 18 passed, 0 failed, 0 warnings, 0 skipped", lines[18])
}

func TestPluginsConformanceFailsWithTheReason(t *testing.T) {
	t.Parallel()
	bin, err := rawPlugin()
	require.NoError(t, err)
	r := runCLI(t, "plugins", "conformance", bin, "--timeout", "5s", "--", "-no-health", "-plain-log")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "\nFAIL health: grpc.health.v1.Health/Check for service \"plugin\": ")
	require.Contains(t, r.stdout, "\nWARN stderr-logs: 1 of 2 lines are not JSON")
	require.Contains(t, r.stdout, "\nSKIP execute-handler: no handler given (--handler)\n")
	require.Contains(t, r.stdout, "18 checks: 12 passed, 1 failed, 1 warnings, 4 skipped\n")
	require.Equal(t, "taskerd: "+bin+" fails 1 of 18 checks of the plugin protocol\n", r.stderr)
}

func TestPluginsConformanceRunsAScriptUnderItsCommand(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	script := writeFile(t, "plugin.sh", "exec "+bin+" \"$@\"\n")
	r := runCLI(t, "plugins", "conformance", "--command", "sh", script)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "PASS handshake: 1|1|unix|")
}

func TestPluginsConformanceUsageErrors(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plugins", "conformance"}, "plugins conformance takes a PATH"},
		{[]string{"plugins", "conformance", bin, "extra"}, "takes one PATH; put the plugin's arguments after --"},
		{[]string{"plugins", "conformance", "/does/not/exist"}, "/does/not/exist: no such file or directory"},
		{[]string{"plugins", "conformance", bin, "--config", "{"}, `--config "{" is not valid JSON`},
		{[]string{"plugins", "conformance", bin, "--context", "[]"}, "--context must be a JSON object"},
		{[]string{"plugins", "conformance", bin, "--config", "@/does/not/exist"}, "--config: open /does/not/exist"},
		{[]string{"plugins", "conformance", "--command", "no-such-interpreter-here", bin}, `command "no-such-interpreter-here"`},
	} {
		r := runCLI(t, tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, "%v", tc.args)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		require.Empty(t, r.stdout)
	}
}
