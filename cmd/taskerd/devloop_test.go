package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin/host"
)

// copyExecutable copies the test plugin to dir/name.
func copyExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	bin, err := testPlugin()
	require.NoError(t, err)
	src, err := os.ReadFile(bin)
	require.NoError(t, err)
	dst := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(dst, src, 0o755))
	return dst
}

// plugins hash --write fills in and corrects every plugin's sha256 in
// place, keeping comments and layout and the file's mode; a missing
// executable leaves the file unchanged and names the plugin.
func TestPluginsHashWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "plugins"), 0o755))
	a := copyExecutable(t, filepath.Join(dir, "plugins"), "a")
	sum, err := host.FileSHA256(a)
	require.NoError(t, err)
	copyExecutable(t, filepath.Join(dir, "plugins"), "b")
	stale := strings.Repeat("0", 64)
	src := fmt.Sprintf(`# the daemon config
workers = 4 # four

plugin "a" {
  path   = "plugins/a" # relative to this file
  sha256 = %q # stale
}

// b was just added: no sha256 yet
plugin "b" {
  path = "plugins/b"
  config = { x = 1 }
}

plugin "c" {
  path   = "plugins/a"
  sha256 = %q
}
`, stale, sum)
	cfg := filepath.Join(dir, "taskerd.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(src), 0o640))

	// b's block is not a valid config yet.
	r := runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "Missing sha256")

	r = runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("plugin \"a\": sha256 %s -> %s\nplugin \"b\": sha256 set to %s\nplugin \"c\": sha256 unchanged\nwrote %s\n", stale, sum, sum, cfg), r.stdout)
	got, err := os.ReadFile(cfg)
	require.NoError(t, err)
	want := strings.Replace(src, stale, sum, 1)
	want = strings.Replace(want, "  path = \"plugins/b\"\n", fmt.Sprintf("  path = \"plugins/b\"\n  sha256 = %q\n", sum), 1)
	require.Equal(t, want, string(got), "only the hashes changed (b's added after its path); comments and layout kept")
	info, err := os.Stat(cfg)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), info.Mode().Perm())
	r = runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)

	// Nothing to do: not rewritten.
	r = runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, cfg+" is up to date\n", strings.SplitN(r.stdout, "\n", 4)[3])

	// A rebuilt plugin and a missing one: refused, unchanged.
	require.NoError(t, os.WriteFile(a, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Remove(filepath.Join(dir, "plugins", "b")))
	r = runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, cfg+" left unchanged")
	require.Contains(t, r.stderr, cfg+`:10: plugin "b": `+filepath.Join(dir, "plugins", "b")+" does not exist (build it first)")
	after, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.Equal(t, got, after)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary file left behind")

	r = runCLI(t, "plugins", "hash", "--write", cfg, "extra")
	require.Equal(t, 2, r.code)
	r = runCLI(t, "plugins", "hash")
	require.Equal(t, 2, r.code)
}

// dev = true: the plugin runs without a sha256 (or with a stale one), with
// a loud warning, in run and in serve with auth none; serve refuses it
// otherwise, naming the block.
func TestDevPluginInConfig(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	plugin, err := testPlugin()
	require.NoError(t, err)
	cfg := writeFile(t, "taskerd.hcl", fmt.Sprintf(`
plugin "testp" {
  path = %q
  dev  = true
}
`, plugin))
	wfDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wfDir, "wf.hcl"), []byte(pluginHCL), 0o644))

	r := runCLI(t, "run", filepath.Join(wfDir, "wf.hcl"), "--config", cfg, "--db", tempDB(t), "--context", `{"order_id":"A-1"}`)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "DEV PLUGIN: starting it WITHOUT verifying its checksum")

	r = runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ok (dev: not checked)")

	// serve: not without --auth none.
	r = runCLI(t, "serve", "--config", cfg, "--db", tempDB(t), "--workflows", wfDir, "--listen", "127.0.0.1:0")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, exitMessage(t, r.stderr), cfg+`:2:1: plugin "testp" has dev = true, which skips its checksum: allowed only with --auth none`)

	s := startServe(t, bin, "--config", cfg, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", wfDir)
	warned := s.logged(t, "DEV PLUGIN: starting it WITHOUT verifying its checksum (dev = true); for development only, never in production")
	require.Len(t, warned, 1)
	require.Equal(t, "WARN", warned[0]["level"])
	require.Equal(t, "testp", warned[0]["plugin"])
	code, body := s.post(t, "/v1/tasks", map[string]any{"workflow": "through_plugin", "context": map[string]any{"order_id": "A-1"}})
	require.Equal(t, http.StatusCreated, code, body)
	s.waitTaskStatus(t, body["id"], "complete")
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	// In a file whose auth block is not mode none, dev is refused at once.
	withAuth := writeFile(t, "taskerd.hcl", fmt.Sprintf("plugin \"testp\" {\n  path = %q\n  dev  = true\n}\nauth {}\n", plugin))
	r = runCLI(t, "run", filepath.Join(wfDir, "wf.hcl"), "--config", withAuth, "--db", tempDB(t))
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, withAuth+":1:1: Dev plugin with authentication")
}

// serve --dev-plugin-dir DIR starts every executable of DIR as a dev
// plugin named after its file; only with --auth none.
func TestServeDevPluginDir(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	devDir := t.TempDir()
	copyExecutable(t, devDir, "testp")
	require.NoError(t, os.WriteFile(filepath.Join(devDir, "README"), []byte("not a plugin"), 0o644))
	wfDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wfDir, "wf.hcl"), []byte(pluginHCL), 0o644))

	r := runCLI(t, "serve", "--dev-plugin-dir", devDir, "--db", tempDB(t), "--workflows", wfDir, "--listen", "127.0.0.1:0")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--dev-plugin-dir starts plugins without checking their checksums: allowed only with --auth none")

	s := startServe(t, bin, "--dev-plugin-dir", devDir, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", wfDir)
	require.Len(t, s.logged(t, "DEV PLUGIN: starting it WITHOUT verifying its checksum (dev = true); for development only, never in production"), 1)
	var list struct {
		Workflows []struct {
			Available bool `json:"available"`
		} `json:"workflows"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/workflows", &list))
	require.True(t, list.Workflows[0].Available)
	code, body := s.post(t, "/v1/tasks", map[string]any{"workflow": "through_plugin"})
	require.Equal(t, http.StatusCreated, code, body)
	s.waitTaskStatus(t, body["id"], "complete")
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	copyExecutable(t, devDir, "Bad-Name")
	r = runCLI(t, "serve", "--auth", "none", "--dev-plugin-dir", devDir, "--db", tempDB(t), "--workflows", wfDir, "--listen", "127.0.0.1:0")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "Bad-Name: a plugin is named after its file")
}
