package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

type bundle struct {
	host *host.Host
	p    *host.Plugin
	logs *logsink.Buffer
}

// startTestPlugin starts testdata/testplugin as plugin "testp" and stops it
// when the test ends.
func startTestPlugin(t testing.TB, mod func(*host.Spec)) *bundle {
	t.Helper()
	return startTestPluginWith(t, mod, host.Options{RestartMin: 20 * time.Millisecond})
}

// startTestPluginWith is startTestPlugin with opts (its Logger is the
// bundle's).
func startTestPluginWith(t testing.TB, mod func(*host.Spec), opts host.Options) *bundle {
	t.Helper()
	spec := host.Spec{Name: "testp", Path: testPluginPath, SHA256: testPluginSum, Config: json.RawMessage(`{"greeting":"hi"}`)}
	if mod != nil {
		mod(&spec)
	}
	logs := &logsink.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h, err := host.Start(context.Background(), []host.Spec{spec}, opts)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, ok := h.Plugin(spec.Name)
	require.True(t, ok)
	return &bundle{host: h, p: p, logs: logs}
}

func stepRequest(step string, config any) *engine.StepRequest {
	req := &engine.StepRequest{
		TaskID: 7, StepID: 11, StepName: step, Attempt: 1,
		Context:        json.RawMessage(`{"order_id":"A-1"}`),
		ParentResults:  map[string]json.RawMessage{"validate": json.RawMessage(`{"ok":true}`)},
		IdempotencyKey: "7/" + step,
	}
	if config != nil {
		b, err := json.Marshal(config)
		if err != nil {
			panic(err)
		}
		req.Config = b
	}
	return req
}

// stepFailure asserts err is an *engine.StepFailure and returns it.
func stepFailure(t *testing.T, err error) *engine.StepFailure {
	t.Helper()
	require.Error(t, err)
	var f *engine.StepFailure
	require.True(t, errors.As(err, &f), "want *engine.StepFailure, got %T: %v", err, err)
	return f
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil // no /proc: best effort
	}
	// pid (comm) STATE ...: comm may hold spaces, so split after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// processesOf lists the pids of running processes executing path.
func processesOf(t *testing.T, path string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == path && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const orphanHostEnv = "TASKERD_TEST_ORPHAN_HOST"

// runOrphanHost is a host process for TestNoOrphanAfterHostKilled: it
// starts the test plugin, prints its pid, and waits to be killed.
func runOrphanHost() {
	path, sum := os.Getenv(orphanHostEnv+"_PATH"), os.Getenv(orphanHostEnv+"_SUM")
	h, err := host.Start(context.Background(), []host.Spec{{Name: "testp", Path: path, SHA256: sum}}, host.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	p, _ := h.Plugin("testp")
	fmt.Println(p.Pid())
	select {}
}

// readLine reads one line from r with a deadline.
func readLine(t *testing.T, r io.Reader, timeout time.Duration) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ch <- strings.TrimSpace(line)
	}()
	select {
	case l := <-ch:
		return l
	case <-time.After(timeout):
		t.Fatalf("no line within %s", timeout)
		return ""
	}
}
