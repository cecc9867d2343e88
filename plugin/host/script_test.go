package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

// npmProject writes a minimal npm project under a new temporary directory:
// package.json, package-lock.json and the script dist/main.js. It returns
// the project's directory and the script's path.
func npmProject(t *testing.T) (dir, script string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "orders")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o755))
	write(t, filepath.Join(dir, "package.json"), `{"name":"orders","version":"1.0.0"}`)
	write(t, filepath.Join(dir, "package-lock.json"), `{"name":"orders","lockfileVersion":3,"packages":{}}`)
	script = filepath.Join(dir, "dist", "main.js")
	write(t, script, "console.log('hello')\n")
	return dir, script
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// noPackageJSONAbove skips the test when a directory above dir holds a
// package.json, which the lookup would find.
func noPackageJSONAbove(t *testing.T, dir string) {
	t.Helper()
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			t.Skipf("%s holds a package.json", d)
		}
		if filepath.Dir(d) == d {
			return
		}
	}
}

// The digest is the documented one: the SHA-256 of a three-line manifest
// naming each file with its own SHA-256.
func TestScriptSHA256IsTheDocumentedManifestDigest(t *testing.T) {
	t.Parallel()
	dir, script := npmProject(t)
	mainJS, err := os.ReadFile(script)
	require.NoError(t, err)
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	require.NoError(t, err)
	manifest := "taskerd script plugin v1\n" +
		"script " + hexSHA256(mainJS) + " dist/main.js\n" +
		"lockfile " + hexSHA256(lock) + " package-lock.json\n"

	got, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	require.Equal(t, hexSHA256([]byte(manifest)), got)

	s, l, err := host.ScriptFiles(script)
	require.NoError(t, err)
	require.Equal(t, script, s)
	require.Equal(t, filepath.Join(dir, "package-lock.json"), l, "the lockfile is found upwards from the script")
}

func TestScriptSHA256ChangesWithEitherFile(t *testing.T) {
	t.Parallel()
	dir, script := npmProject(t)
	before, err := host.ScriptSHA256(script)
	require.NoError(t, err)

	// The same project elsewhere has the same checksum.
	moved := filepath.Join(t.TempDir(), "elsewhere")
	require.NoError(t, os.Rename(dir, moved))
	same, err := host.ScriptSHA256(filepath.Join(moved, "dist", "main.js"))
	require.NoError(t, err)
	require.Equal(t, before, same)
	require.NoError(t, os.Rename(moved, dir))

	write(t, script, "console.log('hello!')\n")
	afterScript, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	require.NotEqual(t, before, afterScript, "a changed script")

	write(t, filepath.Join(dir, "package-lock.json"), `{"name":"orders","lockfileVersion":3,"packages":{"node_modules/x":{}}}`)
	afterLock, err := host.ScriptSHA256(script)
	require.NoError(t, err)
	require.NotEqual(t, afterScript, afterLock, "a changed lockfile")

	// Another script of the same project with the same bytes is another
	// plugin: its name is in the manifest.
	main, err := os.ReadFile(script)
	require.NoError(t, err)
	other := filepath.Join(dir, "dist", "other.js")
	require.NoError(t, os.WriteFile(other, main, 0o644))
	otherSum, err := host.ScriptSHA256(other)
	require.NoError(t, err)
	require.NotEqual(t, afterLock, otherSum)
}

func TestScriptFilesNeedsTheNearestPackageLockfile(t *testing.T) {
	t.Parallel()

	t.Run("the nearest package.json decides, without its lockfile it is an error", func(t *testing.T) {
		dir, script := npmProject(t)
		write(t, filepath.Join(dir, "dist", "package.json"), `{"type":"module"}`)
		_, err := host.ScriptSHA256(script)
		require.ErrorContains(t, err, "no package-lock.json beside "+filepath.Join(dir, "dist", "package.json"))
	})
	t.Run("no package-lock.json", func(t *testing.T) {
		dir, script := npmProject(t)
		require.NoError(t, os.Remove(filepath.Join(dir, "package-lock.json")))
		_, err := host.ScriptSHA256(script)
		require.ErrorContains(t, err, "no package-lock.json beside")
	})
	t.Run("no package.json anywhere", func(t *testing.T) {
		dir := t.TempDir()
		noPackageJSONAbove(t, dir)
		script := filepath.Join(dir, "main.js")
		write(t, script, "x")
		write(t, filepath.Join(dir, "package-lock.json"), "{}") // not a project without package.json
		_, err := host.ScriptSHA256(script)
		require.ErrorContains(t, err, "no package.json in its directory or any above it")
	})
	t.Run("npm-shrinkwrap.json beside it", func(t *testing.T) {
		dir, script := npmProject(t)
		write(t, filepath.Join(dir, "npm-shrinkwrap.json"), "{}")
		_, err := host.ScriptSHA256(script)
		require.ErrorContains(t, err, "npm-shrinkwrap.json")
	})
	t.Run("missing script", func(t *testing.T) {
		dir, _ := npmProject(t)
		_, err := host.ScriptSHA256(filepath.Join(dir, "dist", "nope.js"))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("a directory is not a script", func(t *testing.T) {
		dir, _ := npmProject(t)
		_, err := host.ScriptSHA256(filepath.Join(dir, "dist"))
		require.ErrorContains(t, err, "not a regular file")
	})
	t.Run("a link is followed to its project, as node does", func(t *testing.T) {
		dir, script := npmProject(t)
		want, err := host.ScriptSHA256(script)
		require.NoError(t, err)
		link := filepath.Join(t.TempDir(), "main.js")
		require.NoError(t, os.Symlink(script, link))
		got, err := host.ScriptSHA256(link)
		require.NoError(t, err)
		require.Equal(t, want, got)
		_, lock, err := host.ScriptFiles(link)
		require.NoError(t, err)
		require.Equal(t, filepath.Join(dir, "package-lock.json"), lock)
	})
}

// scriptPlugin is a script plugin for the tests, run without node: its
// "interpreter" is a shell script that appends a line to a file at each
// launch (so that a test can tell a process was never started) and then
// runs the Go test plugin, which ignores its arguments.
type scriptPlugin struct {
	dir, script, interp, launches string
	sum                           string
}

func newScriptPlugin(t *testing.T) *scriptPlugin {
	t.Helper()
	dir, script := npmProject(t)
	sp := &scriptPlugin{dir: dir, script: script, launches: filepath.Join(t.TempDir(), "launches")}
	sp.interp = filepath.Join(t.TempDir(), "fakenode")
	require.NoError(t, os.WriteFile(sp.interp, fmt.Appendf(nil, "#!/bin/sh\necho launched >> '%s'\nexec '%s' \"$@\"\n", sp.launches, testPluginPath), 0o755))
	var err error
	sp.sum, err = host.ScriptSHA256(script)
	require.NoError(t, err)
	return sp
}

func (sp *scriptPlugin) spec() host.Spec {
	return host.Spec{Name: "scriptp", Command: sp.interp, Path: sp.script, Args: []string{"--greeting", "hi"}, SHA256: sp.sum}
}

// launched counts the processes started.
func (sp *scriptPlugin) launched(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(sp.launches)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	require.NoError(t, err)
	return bytes.Count(b, []byte("\n"))
}

func TestScriptPluginStartsAndServes(t *testing.T) {
	t.Parallel()
	sp := newScriptPlugin(t)
	h, err := host.Start(context.Background(), []host.Spec{sp.spec()}, host.Options{})
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, ok := h.Plugin("scriptp")
	require.True(t, ok)
	require.Equal(t, sp.interp, p.Command())
	require.Equal(t, sp.script, p.Path())
	require.Equal(t, 1, sp.launched(t))

	out, err := p.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.NoError(t, err)
	require.Contains(t, string(out), `"attempt":1`)

	// The process was given the script, then Args.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid()))
	if err != nil {
		t.Skip("no /proc")
	}
	argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	require.Equal(t, []string{testPluginPath, sp.script, "--greeting", "hi"}, argv)
}

func TestScriptPluginWithAnotherChecksumIsNotStarted(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"dist/main.js", "package-lock.json"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			sp := newScriptPlugin(t)
			f, err := os.OpenFile(filepath.Join(sp.dir, file), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.WriteString("\n")
			require.NoError(t, err)
			require.NoError(t, f.Close())
			actual, err := host.ScriptSHA256(sp.script)
			require.NoError(t, err)

			_, err = host.Start(context.Background(), []host.Spec{sp.spec()}, host.Options{})
			var ce *host.ChecksumError
			require.True(t, errors.As(err, &ce), "got %v", err)
			require.Equal(t, "scriptp", ce.Plugin)
			require.Equal(t, sp.script, ce.Path)
			require.Equal(t, filepath.Join(sp.dir, "package-lock.json"), ce.Lockfile)
			require.Equal(t, sp.sum, ce.Expected)
			require.Equal(t, actual, ce.Actual)
			require.ErrorContains(t, err, `plugin "scriptp": refusing to start script `+sp.script)
			require.ErrorContains(t, err, actual)
			require.Zero(t, sp.launched(t), "a script plugin with a bad checksum must never run")
		})
	}
}

func TestScriptPluginStartErrors(t *testing.T) {
	t.Parallel()
	t.Run("interpreter not in PATH", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		spec := sp.spec()
		spec.Command = "taskerd-no-such-interpreter"
		_, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
		require.ErrorContains(t, err, `plugin "scriptp": cannot start its script `+sp.script+`: interpreter "taskerd-no-such-interpreter"`)
		require.ErrorContains(t, err, "not found")
	})
	t.Run("interpreter path missing", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		spec := sp.spec()
		spec.Command = filepath.Join(t.TempDir(), "node")
		_, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
		require.ErrorContains(t, err, `plugin "scriptp": cannot start its script`)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("no lockfile", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		require.NoError(t, os.Remove(filepath.Join(sp.dir, "package-lock.json")))
		_, err := host.Start(context.Background(), []host.Spec{sp.spec()}, host.Options{})
		require.ErrorContains(t, err, `plugin "scriptp": refusing to start script`)
		require.ErrorContains(t, err, "no package-lock.json")
		require.Zero(t, sp.launched(t))
	})
	t.Run("no sha256", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		spec := sp.spec()
		spec.SHA256 = ""
		_, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
		require.ErrorContains(t, err, "taskerd plugins hash --script "+sp.script)
		require.Zero(t, sp.launched(t))
	})
	t.Run("blank command", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		spec := sp.spec()
		spec.Command = " "
		_, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
		require.ErrorContains(t, err, `plugin "scriptp": command " " is not a program name or path`)
	})
	t.Run("dev skips the checksum", func(t *testing.T) {
		t.Parallel()
		sp := newScriptPlugin(t)
		write(t, sp.script, "changed")
		spec := sp.spec()
		spec.SHA256, spec.Dev = "", true
		logs := &logsink.Buffer{}
		h, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		require.NoError(t, err)
		h.Close()
		require.Equal(t, 1, sp.launched(t))
		require.Contains(t, logs.String(), "DEV PLUGIN")
	})
}

// A relaunch after a crash verifies the script and lockfile again: changed
// meanwhile, the plugin is not started until they are put back.
func TestScriptPluginRelaunchReverifies(t *testing.T) {
	t.Parallel()
	sp := newScriptPlugin(t)
	logs := &logsink.Buffer{}
	h, err := host.Start(context.Background(), []host.Spec{sp.spec()}, host.Options{
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		RestartMin: 10 * time.Millisecond,
		RestartMax: 40 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, _ := h.Plugin("scriptp")
	first := p.Pid()

	lockPath := filepath.Join(sp.dir, "package-lock.json")
	lock, err := os.ReadFile(lockPath)
	require.NoError(t, err)
	write(t, lockPath, `{"tampered":true}`)
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	eventually(t, 10*time.Second, func() bool { return strings.Count(logs.String(), "refusing to start script") >= 3 },
		"relaunch not refused:\n%s", logs.String())
	require.Zero(t, p.Pid())
	require.Equal(t, 1, sp.launched(t), "no process was started with the changed lockfile")

	require.NoError(t, os.WriteFile(lockPath, lock, 0o644))
	eventually(t, 10*time.Second, func() bool { return p.Pid() != 0 }, "plugin not relaunched after the lockfile was restored")
	require.Equal(t, 2, sp.launched(t))
	require.NotEqual(t, first, p.Pid())
	_, err = p.Execute(context.Background(), "echo", stepRequest("s", nil))
	require.NoError(t, err)
	require.Equal(t, 1, p.Restarts())
}
