package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/plugin/host"
)

// npmProject writes a minimal npm project in dir: package.json,
// package-lock.json and the script dist/main.js, whose path it returns.
func npmProject(t *testing.T, dir string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o755))
	for name, content := range map[string]string{
		"package.json":      `{"name":"shipping","version":"1.0.0"}`,
		"package-lock.json": `{"name":"shipping","lockfileVersion":3,"packages":{}}`,
		"dist/main.js":      "console.log('ship')\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return filepath.Join(dir, "dist", "main.js")
}

func TestPluginsHashScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := npmProject(t, dir)
	want, err := host.ScriptSHA256(script)
	require.NoError(t, err)

	r := runCLI(t, "plugins", "hash", "--script", script)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("sha256 = %q\n", want), r.stdout)
	require.Contains(t, r.stderr, filepath.Join(dir, "package-lock.json"), "the files hashed are named")

	// Without --script, the file alone: another checksum.
	r = runCLI(t, "plugins", "hash", script)
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stdout, want)

	require.NoError(t, os.Remove(filepath.Join(dir, "package-lock.json")))
	r = runCLI(t, "plugins", "hash", "--script", script)
	require.Equal(t, 2, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no package-lock.json beside "+filepath.Join(dir, "package.json"))

	r = runCLI(t, "plugins", "hash", "--script", "--write", filepath.Join(dir, "taskerd.hcl"))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "takes no --script")
}

// --write hashes a block with a command as a script plugin, and one
// without as an executable.
func TestPluginsHashWriteScriptBlock(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	binSum, err := host.FileSHA256(bin)
	require.NoError(t, err)
	dir := t.TempDir()
	script := npmProject(t, filepath.Join(dir, "plugins", "shipping"))
	scriptSum, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	src := fmt.Sprintf(`plugin "shipping" {
  command = "node"
  path    = "plugins/shipping/dist/main.js"
}

plugin "orders" {
  path = %q
}
`, bin)
	cfg := filepath.Join(dir, "taskerd.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(src), 0o644))

	r := runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("plugin \"shipping\": sha256 set to %s\nplugin \"orders\": sha256 set to %s\nwrote %s\n", scriptSum, binSum, cfg), r.stdout)
	c, err := config.Load(cfg)
	require.NoError(t, err)
	require.Equal(t, scriptSum, c.Plugins[0].SHA256)
	require.Equal(t, binSum, c.Plugins[1].SHA256)

	// A new lockfile (npm install) changes the script plugin's checksum.
	lock := filepath.Join(dir, "plugins", "shipping", "package-lock.json")
	require.NoError(t, os.WriteFile(lock, []byte(`{"lockfileVersion":3,"packages":{"node_modules/left-pad":{}}}`), 0o644))
	newSum, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	r = runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("plugin \"shipping\": sha256 %s -> %s\n", scriptSum, newSum))
	require.Contains(t, r.stdout, "plugin \"orders\": sha256 unchanged\n")

	// Without its lockfile, the script cannot be hashed: nothing written.
	require.NoError(t, os.Remove(lock))
	before, err := os.ReadFile(cfg)
	require.NoError(t, err)
	r = runCLI(t, "plugins", "hash", "--write", cfg)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, cfg+`:1: plugin "shipping": script `+script+": no package-lock.json")
	after, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.Equal(t, before, after)

	// A command that is not a constant string is reported, not guessed.
	bad := filepath.Join(dir, "bad.hcl")
	require.NoError(t, os.WriteFile(bad, []byte("plugin \"x\" {\n  command = var.node\n  path = \"plugins/shipping/dist/main.js\"\n}\n"), 0o644))
	r = runCLI(t, "plugins", "hash", "--write", bad)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, bad+`:1: plugin "x": command is not a constant string`)
}

// plugins list starts a script plugin with its command and args: here a
// shell script standing in for node, which records its arguments and runs
// the Go test plugin.
func TestPluginsListScriptPlugin(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	dir := t.TempDir()
	script := npmProject(t, filepath.Join(dir, "shipping"))
	sum, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	argsFile := filepath.Join(dir, "args")
	interp := filepath.Join(dir, "fakenode")
	require.NoError(t, os.WriteFile(interp, fmt.Appendf(nil, "#!/bin/sh\necho \"$@\" >> '%s'\nexec '%s' \"$@\"\n", argsFile, bin), 0o755))
	cfg := filepath.Join(dir, "taskerd.hcl")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `plugin "shipping" {
  command = "./fakenode"
  path    = "shipping/dist/main.js"
  args    = ["--region", "eu"]
  sha256  = %q
}
`, sum), 0o644))

	r := runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	line := strings.Fields(strings.Split(r.stdout, "\n")[1])
	require.Equal(t, []string{"shipping", "step_handler", interp, script, "ok", "block,", "crash_once,", "echo,", "emit,", "fail,", "noop,", "raw,", "slow,", "traced"}, line)
	got, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	require.Equal(t, script+" --region eu\n", string(got), "the script, then args")

	// A changed script: a mismatch, and the plugin is not started.
	require.NoError(t, os.WriteFile(script, []byte("console.log('evil')\n"), 0o644))
	actual, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	r = runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "MISMATCH (script+lockfile is "+actual+")")
	again, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	require.Equal(t, got, again, "not started")

	// No interpreter: the checksum is right, but the plugin is not usable.
	noNode := filepath.Join(dir, "nonode.hcl")
	require.NoError(t, os.WriteFile(noNode, fmt.Appendf(nil, "plugin \"shipping\" {\n  command = \"taskerd-no-such-node\"\n  path = %q\n  sha256 = %q\n}\n", script, actual), 0o644))
	r = runCLI(t, "plugins", "list", "--config", noNode)
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, `cannot start: plugin "shipping": cannot start its script `+script+`: interpreter "taskerd-no-such-node"`)
	require.Contains(t, r.stderr, "1 of 1 plugins cannot be used")
}
