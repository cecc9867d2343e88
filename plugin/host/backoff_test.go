package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/plugin/host"
)

// The restart backoff of these tests: 20 ms doubling to a minute, so that
// a plugin that keeps failing is soon waiting seconds between launches.
const (
	backoffMin = 20 * time.Millisecond
	backoffMax = time.Minute
)

// breakable is the test plugin with a crash file: while the file exists,
// every launch dies while being configured (a broken build) and appends
// its pid to the file; removing the file fixes the plugin.
type breakable struct {
	*bundle
	crashFile string
}

func startBreakable(t *testing.T, opts host.Options) *breakable {
	t.Helper()
	crashFile := filepath.Join(t.TempDir(), "broken")
	b := startTestPluginWith(t, func(s *host.Spec) {
		s.Config = json.RawMessage(fmt.Sprintf(`{"crash_file":%q}`, crashFile))
	}, opts)
	return &breakable{bundle: b, crashFile: crashFile}
}

// crashes counts the launches that died on the crash file.
func (b *breakable) crashes(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(b.crashFile)
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(data), "\n")
}

// breakIt breaks the plugin and kills its process.
func (b *breakable) breakIt(t *testing.T) {
	t.Helper()
	require.NoError(t, os.WriteFile(b.crashFile, nil, 0o600))
	pid := b.p.Pid()
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
}

// waitCrashes waits until n launches have failed. The supervisor then
// waits backoffMin × 2^n before the next: the doubling comes before each
// launch, and no launch comes sooner, so the caller has that long.
func (b *breakable) waitCrashes(t *testing.T, n int) {
	t.Helper()
	eventually(t, 60*time.Second, func() bool { return b.crashes(t) >= n }, "fewer than %d failed launches", n)
	require.Equal(t, backoffMin<<n, b.p.RestartDelay(), "the backoff after %d failed launches", n)
}

func (b *breakable) fix(t *testing.T) {
	t.Helper()
	require.NoError(t, os.Remove(b.crashFile))
}

// waitNewPid waits for a process other than old to serve the plugin.
func waitNewPid(t *testing.T, p *host.Plugin, old int, within time.Duration) int {
	t.Helper()
	var pid int
	eventually(t, within, func() bool { pid = p.Pid(); return pid != 0 && pid != old }, "no new process (old pid %d)", old)
	return pid
}

// A plugin whose backoff grew while it kept crashing gets it back to
// RestartMin once a relaunched process has stayed up for HealthyPeriod:
// its next crash is repaired after RestartMin, not after the grown wait.
func TestBackoffResetsAfterHealthyPeriod(t *testing.T) {
	t.Parallel()
	const healthy = time.Second
	b := startBreakable(t, host.Options{RestartMin: backoffMin, RestartMax: backoffMax, HealthyPeriod: healthy})
	first := b.p.Pid()
	b.breakIt(t)
	b.waitCrashes(t, 7) // the next try in 2.56 s
	b.fix(t)
	second := waitNewPid(t, b.p, first, 10*time.Second)
	require.Equal(t, backoffMin<<8, b.p.RestartDelay(), "just relaunched: the backoff is still the grown one")

	eventually(t, 10*time.Second, func() bool { return b.p.RestartDelay() == backoffMin },
		"the backoff is %s after the plugin stayed up for %s", b.p.RestartDelay(), healthy)
	require.Contains(t, b.logs.String(), "plugin stayed up; restart backoff reset")
	require.Equal(t, second, b.p.Pid(), "the same process all along")

	// A crash now is repaired after RestartMin (plus the liveness check
	// and a launch), far sooner than the 5.12 s the backoff had grown to.
	require.NoError(t, syscall.Kill(second, syscall.SIGKILL))
	third := waitNewPid(t, b.p, second, 3*time.Second)
	require.Contains(t, b.logs.String(), fmt.Sprintf("pid=%d after=%s", second, backoffMin))
	res, err := b.p.Execute(context.Background(), "echo", stepRequest("after", nil))
	require.NoError(t, err)
	var out struct{ Pid int }
	require.NoError(t, json.Unmarshal(res, &out))
	require.Equal(t, third, out.Pid)
	require.Equal(t, 2, b.p.Restarts())
}

// ResetBackoff during a long restart wait relaunches the plugin at once,
// and leaves the backoff at RestartMin.
func TestResetBackoffRelaunchesAtOnce(t *testing.T) {
	t.Parallel()
	b := startBreakable(t, host.Options{RestartMin: backoffMin, RestartMax: backoffMax})
	first := b.p.Pid()
	b.breakIt(t)
	b.waitCrashes(t, 8) // the next try in 5.12 s
	b.fix(t)
	b.p.ResetBackoff("test")
	second := waitNewPid(t, b.p, first, 3*time.Second)
	require.Equal(t, backoffMin, b.p.RestartDelay())
	require.Equal(t, 1, b.p.Restarts())
	require.Contains(t, b.logs.String(), "plugin restart backoff reset")
	require.Contains(t, b.logs.String(), "reason=test")
	res, err := b.p.Execute(context.Background(), "echo", stepRequest("after", nil))
	require.NoError(t, err)
	var out struct{ Pid int }
	require.NoError(t, json.Unmarshal(res, &out))
	require.Equal(t, second, out.Pid)

	// On a healthy plugin a reset changes nothing, and after Close it is
	// a no-op.
	b.p.ResetBackoff("healthy")
	require.Equal(t, second, b.p.Pid())
	require.Equal(t, backoffMin, b.p.RestartDelay())
	b.host.Close()
	b.host.ResetBackoff("closed")
	require.Zero(t, b.p.Pid())
	(*host.Host)(nil).ResetBackoff("nil host")
}

const fixmeWF = `workflow "fixme" {
  retry {
    limit = 1
  }
  step "work" {
    handler = "testp.echo"
    timeout = "1500ms"
  }
}
`

// An operator's retry of a step whose plugin is waiting out a long restart
// backoff relaunches the (fixed) plugin at once, and the step runs on it,
// instead of timing out again while the plugin waits. The registry is
// instrumented as taskerd serve's is: the engine finds the plugin's
// RetryHook through the timing wrapper.
func TestOperatorRetryRunsTheFixedPlugin(t *testing.T) {
	t.Parallel()
	for _, sc := range storetest.Backends() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			b := startBreakable(t, host.Options{RestartMin: backoffMin, RestartMax: backoffMax})
			reg := builtin.NewRegistry()
			require.NoError(t, b.host.Register(reg))
			require.NoError(t, api.NewMetrics().InstrumentPlugins(reg))
			e := startEngineWith(t, sc.Open, fixmeWF, b.bundle, reg)
			first := b.p.Pid()

			b.breakIt(t)
			b.waitCrashes(t, 6)
			// The step waits for a plugin that does not come back and
			// times out.
			id := e.create(t, "fixme", `{}`)
			steps := e.waitTask(t, id, backends.StateError)
			se := stepError(t, steps["work"])
			require.Equal(t, backends.ErrorKindTimeout, se.Kind)

			// The plugin is fixed while the host waits 5.12 s before its
			// next try; the operator retries the step.
			b.waitCrashes(t, 8)
			b.fix(t)
			_, err := e.eng.RetryStep(context.Background(), steps["work"].ID, "plugin fixed")
			require.NoError(t, err)

			var task *backends.Task
			eventually(t, 30*time.Second, func() bool {
				task, err = e.store.GetTask(context.Background(), id)
				require.NoError(t, err)
				return task.State == backends.StateComplete || task.State == backends.StateError
			}, "the retried task did not finish")
			work, err := e.store.GetStep(context.Background(), steps["work"].ID)
			require.NoError(t, err)
			require.Equal(t, backends.StateComplete, task.State, "step error: %s", work.Error)
			require.Equal(t, 2, work.Attempts)
			var out struct{ Pid int }
			require.NoError(t, json.Unmarshal(work.Results, &out))
			require.NotEqual(t, first, out.Pid)
			require.Equal(t, b.p.Pid(), out.Pid, "the step ran on the relaunched plugin")
			require.Equal(t, 1, b.p.Restarts())
			require.Contains(t, b.logs.String(), "reason=\"operator retry\"")
		})
	}
}
