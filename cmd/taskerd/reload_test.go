//go:build unix

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stalledFile makes path a named pipe: a reload that reads it waits for a
// writer, like a read from a stalled disk.
func stalledFile(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, syscall.Mkfifo(path, 0o644))
}

// openWriter opens the pipe at path for writing once a reader has opened
// it, that is once a reload is reading it (polled, up to 10s).
func openWriter(t *testing.T, path string) *os.File {
	t.Helper()
	var fd int
	require.Eventually(t, func() bool {
		var err error
		fd, err = syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err == nil || !errors.Is(err, syscall.ENXIO) // ENXIO: no reader yet
	}, 10*time.Second, 10*time.Millisecond, "no reload opened %s", path)
	require.GreaterOrEqual(t, fd, 0)
	f := os.NewFile(uintptr(fd), path)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// startStalledReload starts serve on ./work.hcl, adds a named pipe
// slow.hcl to its directory and sends SIGHUP: the reload blocks reading the
// pipe until the returned writer writes and closes it.
func startStalledReload(t *testing.T) (s *served, slow string, w *os.File) {
	t.Helper()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s = startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", dir)
	slow = filepath.Join(dir, "slow.hcl")
	stalledFile(t, slow)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	return s, slow, openWriter(t, slow)
}

// countLog counts the daemon's stderr lines containing text.
func (s *served) countLog(text string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.log {
		if strings.Contains(l, text) {
			n++
		}
	}
	return n
}

// A SIGTERM during a reload that does not end stops the daemon at once:
// the reload runs beside the signal loop, and is abandoned (issue 14, item
// 4: a daemon stuck reloading a huge file stopped answering SIGTERM).
func TestServeStopsPromptlyDuringASlowReload(t *testing.T) {
	t.Parallel()
	s, _, _ := startStalledReload(t) // the reload now waits to read, for ever

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		require.NoError(t, err, "a SIGTERM stop exits 0")
	case <-time.After(5 * time.Second):
		t.Fatal("taskerd serve did not stop within 5s of SIGTERM during a reload")
	}
	require.Zero(t, s.countLog("workflows reloaded"))
}

// A SIGHUP during a reload queues one more reload, which runs after it;
// further SIGHUPs meanwhile are folded into that one. Each reload that
// loads is applied.
func TestServeQueuesOneReloadDuringAReload(t *testing.T) {
	t.Parallel()
	s, slow, w := startStalledReload(t)
	s.waitLog(t, `"msg":"reloading workflows"`)

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "SIGHUP during a reload: reloading again after it")
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "SIGHUP folded into the reload already queued")
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return s.countLog("SIGHUP folded into the reload already queued") == 2 },
		10*time.Second, 10*time.Millisecond)

	// The first reload reads the pipe and is applied.
	_, err := w.WriteString("workflow \"first\" {\n  step \"a\" { handler = \"builtin.noop\" }\n}\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Eventually(t, func() bool { return s.countLog("workflows reloaded") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"work", "first"}, s.workflowNames(t))

	// The queued one reads it again.
	w = openWriter(t, slow)
	_, err = w.WriteString("workflow \"second\" {\n  step \"a\" { handler = \"builtin.noop\" }\n}\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Eventually(t, func() bool { return s.countLog("workflows reloaded") == 2 }, 10*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"work", "second"}, s.workflowNames(t))

	require.NoError(t, s.stop(t, syscall.SIGTERM))
	require.Equal(t, 2, s.countLog(`"msg":"reloading workflows"`), "four SIGHUPs, two reloads")
}

// A reload of a file with thousands of errors logs a bounded line: the
// first 50 diagnostics, each snippet cut, and a count of the rest (a 110 KB
// file used to produce over a gigabyte of text).
func TestServeReloadOfManyErrorsLogsABoundedLine(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s := startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", dir)

	bad := `workflow "bad" { step "a" { handler = "builtin.noop" config = { x = [` + strings.Repeat("@,", 10000) + "] } } }\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.hcl"), []byte(bad), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "reloading workflows failed")
	s.mu.Lock()
	var line string
	for _, l := range s.log {
		if strings.Contains(l, "reloading workflows failed") {
			line = l
		}
	}
	s.mu.Unlock()
	require.Less(t, len(line), 64<<10)
	require.Contains(t, line, `... and 9951 more errors`)
	require.Contains(t, line, "invalid workflows: 10001 errors")
	require.Equal(t, []string{"work"}, s.workflowNames(t))
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
