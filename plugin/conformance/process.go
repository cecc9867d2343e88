package conformance

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one run of the plugin, its stdout and stderr captured line by
// line.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	state  *os.ProcessState
	werr   error

	mu     sync.Mutex
	stdout []string
	stderr []string
	// firstLine gets stdout's first line, or is closed without one when
	// stdout ends first.
	firstLine chan string
	pipes     sync.WaitGroup
	pipesDone chan struct{} // closed once stdout and stderr have ended
}

// maxLine bounds the captured length of one line; go-plugin reads a
// plugin's stderr with a 64 KiB buffer.
const maxLine = 1 << 20

// start launches argv with exactly env (nothing inherited).
func start(argv []string, env []string) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	ownGroup(cmd)
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), firstLine: make(chan string, 1), pipesDone: make(chan struct{})}
	p.pipes.Add(2)
	go p.read(outR, true)
	go p.read(errR, false)
	go func() { p.pipes.Wait(); close(p.pipesDone) }()
	go func() {
		p.werr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

func (p *process) read(r io.ReadCloser, stdout bool) {
	defer p.pipes.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	first := stdout
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if stdout {
			p.stdout = append(p.stdout, line)
		} else {
			p.stderr = append(p.stderr, line)
		}
		p.mu.Unlock()
		if first {
			p.firstLine <- line
			first = false
		}
	}
	if first {
		close(p.firstLine)
	}
}

// waitExit waits up to d for the process to exit.
func (p *process) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// drain waits (up to d) for stdout and stderr to end after the process
// exited; a child it left behind may hold them open.
func (p *process) drain(d time.Duration) {
	select {
	case <-p.pipesDone:
	case <-time.After(d):
	}
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill ends the process and its process group (SIGKILL), and waits for
// it.
func (p *process) kill() {
	p.killNow()
	<-p.exited
	p.drain(time.Second)
}

// killNow kills the process group without waiting. Once the process has
// exited and its pipes are closed, no member of the group is left (the
// pgid may even be reused): nothing is killed.
func (p *process) killNow() {
	if !p.running() && p.pipesClosed() {
		return
	}
	killGroup(p.cmd)
}

func (p *process) pipesClosed() bool {
	select {
	case <-p.pipesDone:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

func (p *process) lines(stdout bool) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stdout {
		return append([]string(nil), p.stdout...)
	}
	return append([]string(nil), p.stderr...)
}

// exitStatus describes how the process ended.
func (p *process) exitStatus() string {
	if p.state == nil {
		if p.werr != nil {
			return p.werr.Error()
		}
		return "still running"
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "ended by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", p.state.ExitCode())
}

func (p *process) exitCode() int {
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// stderrTail is the last lines of stderr, for a failure's reason.
func (p *process) stderrTail() string {
	lines := p.lines(false)
	if len(lines) == 0 {
		return "stderr is empty"
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return "stderr ends: " + quote(strings.Join(lines, " | "))
}

// quote shortens s for a report line.
func quote(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}
