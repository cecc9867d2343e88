package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin/host"
)

// logged returns the JSON log lines of s whose msg is msg.
func (s *served) logged(t *testing.T, msg string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range s.log {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// SIGHUP also resets the plugins' restart backoff: a plugin that kept
// crashing and is now waiting seconds before its next launch is relaunched
// at once.
func TestServeSIGHUPRelaunchesACrashedPlugin(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	plugin, err := testPlugin()
	require.NoError(t, err)
	sum, err := host.FileSHA256(plugin)
	require.NoError(t, err)
	// While the crash file exists the test plugin dies at every launch,
	// appending its pid to the file.
	crashFile := filepath.Join(t.TempDir(), "broken")
	cfg := writeFile(t, "taskerd.hcl", fmt.Sprintf(`
plugin "testp" {
  path   = %q
  sha256 = %q
  config = { crash_file = %q }
}
`, plugin, sum, crashFile))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s := startServe(t, bin, "--config", cfg, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", dir)

	started := s.logged(t, "plugin started")
	require.Len(t, started, 1)
	pid := int(started[0]["pid"].(float64))
	require.NoError(t, os.WriteFile(crashFile, nil, 0o600))
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	// The backoff is 100 ms doubling before each launch: after six failed
	// launches the next is 6.4 s away.
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(crashFile)
		require.NoError(t, err)
		return strings.Count(string(b), "\n") >= 6
	}, 60*time.Second, 10*time.Millisecond, "the plugin did not keep crashing")
	require.NoError(t, os.Remove(crashFile))
	require.Empty(t, s.logged(t, "plugin restarted"))

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return len(s.logged(t, "plugin restarted")) == 1 }, 3*time.Second, 10*time.Millisecond,
		"the plugin was not relaunched at once on SIGHUP")
	reset := s.logged(t, "plugin restart backoff reset")
	require.Len(t, reset, 1)
	require.Equal(t, "SIGHUP", reset[0]["reason"])
	require.Equal(t, true, reset[0]["relaunch_now"])
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
