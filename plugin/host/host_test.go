package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

func TestDescribeConfigureExecute(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)

	names := []string{}
	for _, h := range b.p.Handlers() {
		names = append(names, h.Name)
	}
	require.Equal(t, []string{"block", "crash_once", "echo", "emit", "fail", "noop", "raw", "slow", "traced"}, names)
	require.Equal(t, "returns what it was given", b.p.Handlers()[2].Description)

	req := stepRequest("charge", map[string]any{"currency": "EUR"})
	req.Deadline = time.Now().Add(time.Minute)
	out, err := b.p.Execute(context.Background(), "echo", req)
	require.NoError(t, err)
	var got struct {
		Context        map[string]any             `json:"context"`
		Config         map[string]any             `json:"config"`
		Parents        map[string]json.RawMessage `json:"parents"`
		Attempt        int                        `json:"attempt"`
		IdempotencyKey string                     `json:"idempotency_key"`
		PluginConfig   map[string]any             `json:"plugin_config"`
		Pid            int                        `json:"pid"`
		HasDeadline    bool                       `json:"has_deadline"`
		EnvHome        string                     `json:"env_home"`
	}
	require.NoError(t, json.Unmarshal(out, &got))
	require.Equal(t, "A-1", got.Context["order_id"])
	require.Equal(t, "EUR", got.Config["currency"])
	require.JSONEq(t, `{"ok":true}`, string(got.Parents["validate"]))
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, "7/charge", got.IdempotencyKey)
	require.Equal(t, "hi", got.PluginConfig["greeting"], "Configure passed the plugin its config")
	require.Equal(t, b.p.Pid(), got.Pid)
	require.True(t, got.HasDeadline)
	require.Empty(t, got.EnvHome, "SkipHostEnv: the plugin must not see the host's environment")

	// The plugin's own log line reaches the host's log under its name.
	eventually(t, 5*time.Second, func() bool {
		l := b.logs.String()
		return strings.Contains(l, `msg="echo called"`) && strings.Contains(l, "plugin=testp") && strings.Contains(l, "step=charge")
	}, "plugin log line missing from host log:\n%s", b.logs.String())
}

func TestFailuresCarryTheirKind(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	ctx := context.Background()

	tests := []struct {
		name      string
		config    map[string]any
		retryable bool
		kind      string
		backoff   *int
	}{
		{"plain error is retryable", map[string]any{}, true, "", nil},
		{"permanent", map[string]any{"permanent": true}, false, backends.ErrorKindPermanent, nil},
		{"permanent with kind", map[string]any{"permanent": true, "kind": "payment_declined"}, false, "payment_declined", nil},
		{"retry after", map[string]any{"retry_after_seconds": 7}, true, "", new(7)},
		{"panic is retryable", map[string]any{"panic": true}, true, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.p.Execute(ctx, "fail", stepRequest("s", tt.config))
			f := stepFailure(t, err)
			require.Equal(t, tt.retryable, f.Retryable)
			require.Equal(t, tt.kind, f.Kind)
			require.Equal(t, tt.backoff, f.BackoffSeconds)
			require.NotEmpty(t, f.Message)
		})
	}
	// A panic did not take the plugin down.
	_, err := b.p.Execute(ctx, "echo", stepRequest("s", nil))
	require.NoError(t, err)
	require.Zero(t, b.p.Restarts())
}

func TestChecksumMismatchIsNotStarted(t *testing.T) {
	t.Parallel()
	// A copy of the plugin at its own path, so that counting processes
	// running it cannot see other tests' plugins.
	path := filepath.Join(t.TempDir(), "impostor")
	src, err := os.ReadFile(testPluginPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, src, 0o755))
	wrong := "0000000000000000000000000000000000000000000000000000000000000000"

	_, err = host.Start(context.Background(), []host.Spec{{Name: "payments", Path: path, SHA256: wrong}}, host.Options{})
	var ce *host.ChecksumError
	require.True(t, errors.As(err, &ce), "got %v", err)
	require.Equal(t, "payments", ce.Plugin)
	require.Equal(t, wrong, ce.Expected)
	require.Equal(t, testPluginSum, ce.Actual)
	require.ErrorContains(t, err, `plugin "payments"`)
	require.ErrorContains(t, err, wrong)
	require.ErrorContains(t, err, testPluginSum)
	require.Empty(t, processesOf(t, path), "a plugin with a bad checksum must never run")

	// A missing sha256 is refused before anything runs.
	_, err = host.Start(context.Background(), []host.Spec{{Name: "payments", Path: path}}, host.Options{})
	require.ErrorContains(t, err, "no sha256")
}

func TestConfigureRefusalStopsStart(t *testing.T) {
	t.Parallel()
	_, err := host.Start(context.Background(), []host.Spec{{
		Name: "testp", Path: testPluginPath, SHA256: testPluginSum, Config: json.RawMessage(`{"refuse":true}`),
	}}, host.Options{})
	require.ErrorContains(t, err, `plugin "testp": Configure refused its config`)
	require.ErrorContains(t, err, "configured to refuse")
}

func TestCrashMidCallRestartsPlugin(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	marker := filepath.Join(t.TempDir(), "crashed")
	first := b.p.Pid()

	_, err := b.p.Execute(context.Background(), "crash_once", stepRequest("ship", map[string]any{"marker": marker}))
	f := stepFailure(t, err)
	require.True(t, f.Retryable)
	require.Equal(t, backends.ErrorKindPluginCrashed, f.Kind)
	require.Contains(t, f.Message, "plugin testp died during the call to crash_once")

	// The next call waits for the relaunched process and runs there.
	req := stepRequest("ship", map[string]any{"marker": marker})
	req.Attempt = 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := b.p.Execute(ctx, "crash_once", req)
	require.NoError(t, err)
	var got struct{ Attempt, Pid int }
	require.NoError(t, json.Unmarshal(out, &got))
	require.Equal(t, 2, got.Attempt)
	require.NotEqual(t, first, got.Pid)
	require.Equal(t, b.p.Pid(), got.Pid)
	require.Equal(t, 1, b.p.Restarts())
	require.False(t, alive(first), "the crashed process is gone")
}

func TestIdleCrashIsRepairedBeforeNextCall(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	first := b.p.Pid()
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	eventually(t, 10*time.Second, func() bool { p := b.p.Pid(); return p != 0 && p != first }, "plugin not relaunched")
	_, err := b.p.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.NoError(t, err)
}

func TestCancellationReachesPluginContext(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	dir := t.TempDir()
	marker, started := filepath.Join(dir, "why"), filepath.Join(dir, "started")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.p.Execute(ctx, "block", stepRequest("wait", map[string]any{"marker": marker, "started": started}))
		done <- err
	}()
	eventually(t, 5*time.Second, func() bool { _, err := os.Stat(started); return err == nil }, "the call never reached the plugin")
	cancel()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Execute did not return after cancel")
	}
	eventually(t, 5*time.Second, func() bool {
		b, err := os.ReadFile(marker)
		return err == nil && string(b) == context.Canceled.Error()
	}, "the plugin's handler ctx was not cancelled")
}

func TestDeadlineIsTimeout(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := stepRequest("slow", map[string]any{"ms": 30000})
	req.Deadline, _ = ctx.Deadline()
	start := time.Now()
	_, err := b.p.Execute(ctx, "slow", req)
	f := stepFailure(t, err)
	require.Equal(t, backends.ErrorKindTimeout, f.Kind)
	require.True(t, f.Retryable)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestFiftyConcurrentCalls(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	const n = 50
	const ms = 300
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			_, errs[i] = b.p.Execute(context.Background(), "slow", stepRequest("s"+strconv.Itoa(i), map[string]any{"ms": ms}))
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	// Serially this would take 15 s.
	require.Less(t, time.Since(start), 10*ms*time.Millisecond)
}

func TestMaxConcurrencyBoundsCallsInFlight(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, func(s *host.Spec) { s.MaxConcurrency = 2 })
	const ms = 200
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 6 {
		wg.Go(func() {
			_, err := b.p.Execute(context.Background(), "slow", stepRequest("s"+strconv.Itoa(i), map[string]any{"ms": ms}))
			require.NoError(t, err)
		})
	}
	wg.Wait()
	// Six calls, two at a time: at least three rounds.
	require.GreaterOrEqual(t, time.Since(start), 3*ms*time.Millisecond)
}

func TestCloseLeavesNoProcess(t *testing.T) {
	t.Parallel()
	h, err := host.Start(context.Background(), []host.Spec{
		{Name: "one", Path: testPluginPath, SHA256: testPluginSum},
		{Name: "two", Path: testPluginPath, SHA256: testPluginSum},
	}, host.Options{})
	require.NoError(t, err)
	var pids []int
	for _, p := range h.Plugins() {
		require.NotZero(t, p.Pid())
		require.True(t, alive(p.Pid()))
		pids = append(pids, p.Pid())
	}
	// A call in flight during shutdown ends too.
	one, _ := h.Plugin("one")
	done := make(chan error, 1)
	go func() {
		_, err := one.Execute(context.Background(), "block", stepRequest("wait", nil))
		done <- err
	}()
	h.Close()
	for _, pid := range pids {
		require.False(t, alive(pid), "plugin pid %d outlived Close", pid)
	}
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("call in flight did not end at Close")
	}
	_, err = one.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.ErrorIs(t, err, host.ErrStopped)
}

func TestNoOrphanAfterHostKilled(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanHostEnv+"=1", orphanHostEnv+"_PATH="+testPluginPath, orphanHostEnv+"_SUM="+testPluginSum)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line := readLine(t, stdout, 20*time.Second)
	pid, err := strconv.Atoi(line)
	require.NoError(t, err, "host said %q", line)
	require.True(t, alive(pid))

	require.NoError(t, cmd.Process.Kill()) // SIGKILL: no chance to stop its plugins
	_ = cmd.Wait()
	eventually(t, 10*time.Second, func() bool { return !alive(pid) }, "plugin %d outlived its SIGKILLed host", pid)
}

func TestRegisterAndUnknownHandlers(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	r := engine.NewRegistry()
	require.NoError(t, b.host.Register(r))
	h, ok := r.Lookup("testp.echo")
	require.True(t, ok)
	out, err := h.Execute(context.Background(), stepRequest("s", nil))
	require.NoError(t, err)
	require.Contains(t, string(out), `"attempt":1`)
}

// An oversized message fails the call, not the plugin.
func TestOversizedMessageIsNotACrash(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	req := stepRequest("big", nil)
	req.Context = json.RawMessage(`{"d":"` + strings.Repeat("x", 5<<20) + `"}`)
	_, err := b.p.Execute(context.Background(), "raw", req)
	f := stepFailure(t, err)
	require.True(t, f.Retryable)
	require.Empty(t, f.Kind)
	require.Contains(t, f.Message, "ResourceExhausted")
	_, err = b.p.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.NoError(t, err)
	require.Zero(t, b.p.Restarts())
}

// A binary swapped while the plugin runs is never started: relaunches fail
// closed on the checksum, with capped backoff, and calls wait (here, until
// their deadline). Putting the right binary back heals the plugin.
func TestRelaunchVerifiesChecksumWithCappedBackoff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "plugin")
	original, err := os.ReadFile(testPluginPath)
	require.NoError(t, err)
	replace := func(content []byte) {
		tmp := filepath.Join(dir, "next")
		require.NoError(t, os.WriteFile(tmp, content, 0o755))
		require.NoError(t, os.Rename(tmp, path)) // a running executable cannot be written in place
	}
	replace(original)
	logs := &logsink.Buffer{}
	h, err := host.Start(context.Background(), []host.Spec{{Name: "testp", Path: path, SHA256: testPluginSum}}, host.Options{
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		RestartMin: 10 * time.Millisecond,
		RestartMax: 80 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, _ := h.Plugin("testp")
	first := p.Pid()

	impostor, err := os.ReadFile(bareEchoPath)
	require.NoError(t, err)
	replace(impostor)
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	eventually(t, 10*time.Second, func() bool { return strings.Count(logs.String(), "refusing to start") >= 5 },
		"relaunch not refused repeatedly:\n%s", logs.String())
	require.Zero(t, p.Pid())
	require.Empty(t, processesOf(t, path), "the impostor never ran")
	require.Contains(t, logs.String(), "next_try_in=80ms")
	require.NotContains(t, logs.String(), "next_try_in=160ms", "backoff is capped")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = p.Execute(ctx, "echo", stepRequest("s", nil))
	require.Equal(t, backends.ErrorKindTimeout, stepFailure(t, err).Kind)

	replace(original)
	eventually(t, 10*time.Second, func() bool { return p.Pid() != 0 }, "plugin not relaunched after the binary was restored")
	_, err = p.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.NoError(t, err)
}

// A plugin's result schemas come through Describe; one that is not JSON is
// dropped, and the plugin still starts.
func TestDescribeResultSchemas(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, func(s *host.Spec) { s.Path, s.SHA256 = bareEchoPath, bareEchoSum })
	hs := b.p.Handlers()
	require.Len(t, hs, 2)
	require.Equal(t, "raw", hs[0].Name)
	require.JSONEq(t, `{"type":"object"}`, string(hs[0].ResultSchema))
	require.Equal(t, "unschemed", hs[1].Name)
	require.Nil(t, hs[1].ResultSchema)
}
