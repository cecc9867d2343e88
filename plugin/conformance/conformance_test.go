package conformance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin/conformance"
)

// Plugins built once for the package's tests.
var (
	goPlugin  string // plugin/host/testdata/testplugin: the Go SDK
	rawPlugin string // testdata/rawplugin: the protocol by hand
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			dst *string
			pkg string
		}{{&goPlugin, "../host/testdata/testplugin"}, {&rawPlugin, "./testdata/rawplugin"}} {
			*b.dst = filepath.Join(dir, filepath.Base(b.pkg))
			// Without -race: the plugin is a separate process.
			cmd := exec.Command("go", "build", "-o", *b.dst, b.pkg)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func run(t *testing.T, o conformance.Options) *conformance.Report {
	t.Helper()
	var streamed []conformance.Result
	rep, err := conformance.Run(context.Background(), o, func(r conformance.Result) { streamed = append(streamed, r) })
	require.NoError(t, err)
	require.Equal(t, rep.Results, streamed, "progress gets every result, in order")
	names := make([]string, len(rep.Results))
	for i, r := range rep.Results {
		names[i] = r.Check
	}
	require.Equal(t, conformance.Checks, names, "every check reported once, in order")
	return rep
}

// requireStatuses asserts the statuses of want's checks, and that no
// other check failed.
func requireStatuses(t *testing.T, rep *conformance.Report, want map[string]conformance.Status) {
	t.Helper()
	for _, r := range rep.Results {
		if s, ok := want[r.Check]; ok {
			assert.Equal(t, s, r.Status, "%s", r)
		} else {
			assert.NotEqual(t, conformance.Fail, r.Status, "%s", r)
		}
	}
}

func requireAllPass(t *testing.T, rep *conformance.Report) {
	t.Helper()
	for _, r := range rep.Results {
		assert.Equal(t, conformance.Pass, r.Status, "%s", r)
	}
	assert.Zero(t, rep.Failed())
}

func TestGoSDKPluginPassesEveryCheck(t *testing.T) {
	t.Parallel()
	rep := run(t, conformance.Options{Path: goPlugin, Handler: "echo", Context: json.RawMessage(`{"order_id":"A-1"}`), Config: json.RawMessage(`{"greeting":"hi"}`)})
	requireAllPass(t, rep)
	res, _ := rep.Result("execute-handler")
	assert.Contains(t, res.Detail, `order_id`, "the context reached the handler")
	assert.Contains(t, res.Detail, `greeting`, "the config reached Configure")
	assert.Equal(t, "18 checks: 18 passed, 0 failed, 0 warnings, 0 skipped", rep.Summary())
}

// A handler that runs until its ctx ends: it must answer by the deadline
// with a failure, and be cancellable.
func TestGoSDKBlockingHandler(t *testing.T) {
	t.Parallel()
	rep := run(t, conformance.Options{Path: goPlugin, Handler: "block", Timeout: time.Second})
	requireAllPass(t, rep)
	res, _ := rep.Result("execute-handler")
	assert.Contains(t, res.Detail, "failure (retryable true, kind handler_error)")
	res, _ = rep.Result("execute-cancel")
	assert.Contains(t, res.Detail, "cancelled in flight")
}

// The plugin written from the protocol alone passes too: the document is
// enough to write one.
func TestHandWrittenPluginPassesEveryCheck(t *testing.T) {
	t.Parallel()
	requireAllPass(t, run(t, conformance.Options{Path: rawPlugin, Handler: "block", Timeout: time.Second}))
}

func TestScriptPluginRunsUnderItsCommand(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "plugin.sh")
	require.NoError(t, os.WriteFile(script, []byte("exec "+goPlugin+" \"$@\"\n"), 0o644)) // not executable
	requireAllPass(t, run(t, conformance.Options{Path: script, Command: "sh", Handler: "echo"}))

	_, err := conformance.Run(context.Background(), conformance.Options{Path: script}, nil)
	require.ErrorContains(t, err, "is not executable (for a script, name its interpreter with --command)")
}

func TestBrokenPluginsFailTheRightChecks(t *testing.T) {
	t.Parallel()
	const (
		fail = conformance.Fail
		warn = conformance.Warn
		skip = conformance.Skip
	)
	skipAfter := func(from string, m map[string]conformance.Status) map[string]conformance.Status {
		on := false
		for _, c := range conformance.Checks {
			if c == from {
				on = true
				continue
			}
			if _, ok := m[c]; on && !ok {
				m[c] = skip
			}
		}
		return m
	}
	for _, tc := range []struct {
		flag    string
		want    map[string]conformance.Status
		detail  string // in the first failed or warned check's detail
		handler string // default echo
	}{
		{"-garbage", skipAfter("handshake", map[string]conformance.Status{"handshake": fail}), `first stdout line "hello from rawplugin"`, ""},
		{"-no-cookie-check", map[string]conformance.Status{"cookie": fail}, "without TASKERD_PLUGIN in its environment the plugin wrote", ""},
		{"-no-tls", skipAfter("server-cert", map[string]conformance.Status{"server-cert": fail, "stdout": conformance.Pass, "stderr-logs": conformance.Pass}), "no 6th field", ""},
		{"-no-client-auth", map[string]conformance.Status{"tls-no-client-cert": fail, "tls-wrong-client-cert": fail}, "must require and verify the client certificate", ""},
		{"-no-health", map[string]conformance.Status{"health": fail}, "Unimplemented", ""},
		{"-bad-name", map[string]conformance.Status{"describe": fail, "configure": skip, "execute-unknown": skip, "execute-handler": skip, "execute-deadline": skip, "execute-cancel": skip, "execute-start-by": skip}, `"Not.Valid"`, ""},
		{"-unknown-success", map[string]conformance.Status{"execute-unknown": fail}, "did not answer with a failure", ""},
		{"-no-shutdown", map[string]conformance.Status{"shutdown": fail}, "Unimplemented", ""},
		{"-ignore-shutdown", map[string]conformance.Status{"shutdown": fail}, "still ran 500ms after", ""},
		{"-stdout-after", map[string]conformance.Status{"stdout": fail}, `the first "serving"`, ""},
		{"-bad-log", map[string]conformance.Status{"stderr-logs": fail}, "@message is not a string", ""},
		{"-plain-log", map[string]conformance.Status{"stderr-logs": warn}, `"a plain line"`, ""},
		{"-die-on-sigint", map[string]conformance.Status{"sigint": warn}, "SIGINT ended the plugin", ""},
		{"-ignore-deadline", map[string]conformance.Status{"execute-handler": fail, "execute-deadline": warn}, "the plugin ignores deadline_unix_nano", "block"},
		{"-deadline-status", map[string]conformance.Status{}, "", "block"},
		{"-ignore-start-by", map[string]conformance.Status{"execute-start-by": fail}, "ran the handler", ""},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			o := conformance.Options{Path: rawPlugin, Args: []string{tc.flag}, Handler: "echo", Timeout: 5 * time.Second, ShutdownTimeout: 500 * time.Millisecond}
			if tc.handler != "" {
				o.Handler, o.Timeout = tc.handler, time.Second
			}
			rep := run(t, o)
			requireStatuses(t, rep, tc.want)
			if len(tc.want) == 0 {
				requireAllPass(t, rep)
				res, _ := rep.Result("execute-deadline")
				assert.Contains(t, res.Detail, "answered DEADLINE_EXCEEDED")
				return
			}
			for _, r := range rep.Results {
				if r.Status == fail || r.Status == warn {
					assert.Contains(t, r.Detail, tc.detail)
					break
				}
			}
		})
	}
}

func TestAPluginThatExitsAtOnce(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "quits.sh")
	require.NoError(t, os.WriteFile(script, []byte("exit 0\n"), 0o644))
	rep := run(t, conformance.Options{Path: script, Command: "sh"})
	c, _ := rep.Result("cookie")
	assert.Equal(t, conformance.Fail, c.Status)
	assert.Contains(t, c.Detail, "exited 0; it must exit non-zero")
	h, _ := rep.Result("handshake")
	assert.Equal(t, conformance.Fail, h.Status)
	assert.Contains(t, h.Detail, "exited (exit status 0) before writing its handshake line")
	assert.Equal(t, 2, rep.Failed())
}

func TestOptionsThatCannotBeUsed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    conformance.Options
		want string
	}{
		{conformance.Options{}, "no plugin path"},
		{conformance.Options{Path: "/does/not/exist"}, "no such file"},
		{conformance.Options{Path: t.TempDir()}, "is not a regular file"},
		{conformance.Options{Path: goPlugin, Command: "no-such-interpreter-here"}, `command "no-such-interpreter-here"`},
		{conformance.Options{Path: goPlugin, Config: json.RawMessage(`{`)}, "config is not valid JSON"},
		{conformance.Options{Path: goPlugin, Context: json.RawMessage(`[1]`)}, "task context must be a JSON object"},
	} {
		_, err := conformance.Run(context.Background(), tc.o, nil)
		require.ErrorContains(t, err, tc.want)
	}
}

// A run whose ctx ends stops at once: its processes are killed and every
// later check is skipped as interrupted.
func TestInterruptedRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	rep, err := conformance.Run(ctx, conformance.Options{Path: goPlugin, Handler: "block", Timeout: time.Minute}, func(r conformance.Result) {
		if r.Check == "execute-unknown" {
			cancel() // execute-handler blocks until its minute is up, unless interrupted
		}
	})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 30*time.Second, "the blocked call did not wait for its deadline")
	after := false
	for _, r := range rep.Results {
		if after {
			assert.Equal(t, conformance.Result{Check: r.Check, Status: conformance.Skip, Detail: "interrupted"}, r)
		} else {
			assert.Equal(t, conformance.Pass, r.Status, "%s", r)
		}
		after = after || r.Check == "execute-unknown"
	}
	assert.Zero(t, rep.Failed())
}

// TestTypeScriptSDKPluginPassesEveryCheck runs the harness against the
// plugin of the Node SDK (sdk/typescript) that plugin/host's tests use:
// the protocol as a second language implements it. A missing node or
// SDK install skips it, and fails it under TASKERD_TEST_REQUIRE_NODE=1
// (CI runs npm ci first).
func TestTypeScriptSDKPluginPassesEveryCheck(t *testing.T) {
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("TASKERD_TEST_REQUIRE_NODE") == "1" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat("../../sdk/typescript/node_modules/@grpc/grpc-js"); err != nil {
		missing("the TypeScript SDK's dependencies are not installed (npm ci --prefix sdk/typescript): %v", err)
	}
	script, err := filepath.Abs("../host/testdata/tsplugin/main.js")
	require.NoError(t, err)
	rep := run(t, conformance.Options{Path: script, Command: "node", Handler: "block", Timeout: 2 * time.Second,
		Config: json.RawMessage(`{"greeting":"hi"}`)})
	requireAllPass(t, rep)
}
