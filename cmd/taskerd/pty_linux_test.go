package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runOnTerminal runs the binary with its stdout and stderr on a new pseudo
// terminal (100 columns, 40 rows), env added to the environment less the
// TASKERD_ variables, and returns all it wrote there and its exit code.
func runOnTerminal(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	return runOnTerminalUntil(t, bin, env, "", args...)
}

// runOnTerminalUntil is runOnTerminal that sends SIGINT (Ctrl-C) once the
// output contains interruptAt (never when it is "").
func runOnTerminalUntil(t *testing.T, bin string, env []string, interruptAt string, args ...string) (string, int) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	defer master.Close()
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0), "unlockpt")
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err, "ptsname")
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 100, Row: 40}))

	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKERD_") && !strings.HasPrefix(kv, "NO_COLOR=") && !strings.HasPrefix(kv, "TERM=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "TERM=xterm"), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	require.NoError(t, cmd.Start())
	tty.Close() // the child has it; reads of master end (EIO) once it exits

	out := &syncBuffer{}
	read := make(chan error, 1)
	go func() { _, err := io.Copy(out, master); read <- err }()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	if interruptAt != "" {
		require.Eventually(t, func() bool { return strings.Contains(out.String(), interruptAt) }, 30*time.Second, 10*time.Millisecond,
			"no %q on the terminal", interruptAt)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
	}
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%v did not end within 60s; it wrote %q", args, out.String())
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, werr)
	}
	return out.String(), code
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
