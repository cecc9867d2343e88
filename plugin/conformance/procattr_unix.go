//go:build unix

package conformance

import (
	"os/exec"
	"syscall"
)

// ownGroup starts cmd in a process group of its own, so that killGroup
// also ends what a script plugin started (`sh plugin.sh` running the real
// plugin as its child), and so that a Ctrl-C on the checker does not reach
// the plugin before the checker has ended it.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills cmd's process group.
func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
