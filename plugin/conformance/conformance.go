package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// Options say which plugin to check and how.
type Options struct {
	// Path is the plugin's executable, or its script when Command is set.
	Path string
	// Args are passed after Path.
	Args []string
	// Command, when set, is the interpreter the plugin runs under
	// (`node`, `python3`): the process is Command Path Args... A bare name
	// is looked up in this process's PATH.
	Command string
	// Env is the plugin's environment besides the protocol's variables
	// ("KEY=VALUE"); like taskerd, nothing else is inherited.
	Env []string
	// Config is sent with Configure; nil is {}.
	Config json.RawMessage
	// Handler, when set, is executed (with Context as the task context),
	// and the deadline and cancellation checks run on it.
	Handler string
	// Context is the task context of Handler's Execute; nil is {}.
	Context json.RawMessage
	// Timeout bounds the handshake and each call; 0 is DefaultTimeout.
	Timeout time.Duration
	// ShutdownTimeout bounds the exit after Shutdown; 0 is
	// DefaultShutdownTimeout, the grace taskerd gives a plugin.
	ShutdownTimeout time.Duration
}

// Defaults for Options.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultShutdownTimeout = 2 * time.Second
	// deadlineGrace is how long after deadline_unix_nano an Execute may
	// still answer.
	deadlineGrace = time.Second
	// deadlineAhead is the deadline the deadline check gives Execute.
	deadlineAhead = 500 * time.Millisecond
	// sigintWatch is how long a plugin is watched after SIGINT.
	sigintWatch = 300 * time.Millisecond
)

// Status is a check's outcome.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	// Warn is a deviation taskerd copes with, at a cost the reason says.
	Warn Status = "WARN"
	// Skip is a check that could not run: a check it needs failed, or the
	// options did not ask for it.
	Skip Status = "SKIP"
)

// Result is one check's outcome.
type Result struct {
	// Check is the check's stable name, e.g. "handshake".
	Check  string
	Status Status
	// Detail says what was seen: the reason of a failure.
	Detail string
}

func (r Result) String() string { return fmt.Sprintf("%s %s: %s", r.Status, r.Check, r.Detail) }

// Checks lists every check's name, in the order Run reports them.
var Checks = []string{
	"cookie", "handshake", "server-cert", "tls", "tls-no-client-cert", "tls-wrong-client-cert",
	"health", "describe", "configure", "execute-unknown", "execute-handler", "execute-deadline",
	"execute-cancel", "execute-start-by", "shutdown", "stdout", "stderr-logs", "sigint",
}

// Report is the outcome of every check.
type Report struct {
	Results []Result
}

// Failed counts the failed checks.
func (r *Report) Failed() int { return r.count(Fail) }

func (r *Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Summary is one line: how many checks passed, failed, warned, skipped.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d checks: %d passed, %d failed, %d warnings, %d skipped",
		len(r.Results), r.count(Pass), r.count(Fail), r.count(Warn), r.count(Skip))
}

// Result returns the result of the check called name.
func (r *Report) Result(name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Check == name {
			return res, true
		}
	}
	return Result{}, false
}

// Run checks the plugin and returns every check's result, each also passed
// to progress (when not nil) as soon as it is known. The error is for
// options that cannot be used (a missing executable, invalid JSON); a
// plugin that breaks the protocol is a Report with failures.
func Run(ctx context.Context, o Options, progress func(Result)) (*Report, error) {
	r, err := newRunner(o, progress)
	if err != nil {
		return nil, err
	}
	r.run(ctx)
	return &Report{Results: r.results}, nil
}

// protocolEnv is what go-plugin's client sets for a plugin (taskerd adds
// AutoMTLS's PLUGIN_CLIENT_CERT).
func protocolEnv(withCookie bool) []string {
	var env []string
	if withCookie {
		env = append(env, pb.Handshake.MagicCookieKey+"="+pb.Handshake.MagicCookieValue)
	}
	return append(env,
		"PLUGIN_MIN_PORT=10000",
		"PLUGIN_MAX_PORT=25000",
		fmt.Sprintf("PLUGIN_PROTOCOL_VERSIONS=%d", pb.ProtocolVersion),
	)
}

func (o *Options) normalize() error {
	if o.Path == "" {
		return errors.New("no plugin path")
	}
	abs, err := filepath.Abs(o.Path)
	if err != nil {
		return err
	}
	o.Path = abs
	info, err := os.Stat(o.Path)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("plugin %s: %w", o.Path, pe.Err)
	} else if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", o.Path)
	}
	if o.Command == "" && info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (for a script, name its interpreter with --command)", o.Path)
	}
	if o.Command != "" {
		cmd, err := exec.LookPath(o.Command)
		if err != nil {
			return fmt.Errorf("command %q: %w", o.Command, err)
		}
		o.Command = cmd
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("environment entry %q: want KEY=VALUE", kv)
		}
	}
	if len(o.Config) == 0 {
		o.Config = json.RawMessage("{}")
	}
	if !json.Valid(o.Config) {
		return errors.New("the plugin config is not valid JSON")
	}
	if len(o.Context) == 0 {
		o.Context = json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(o.Context, &obj); err != nil || obj == nil {
		return errors.New("the task context must be a JSON object")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	return nil
}

func (o *Options) argv() []string {
	var argv []string
	if o.Command != "" {
		argv = append(argv, o.Command)
	}
	argv = append(argv, o.Path)
	return append(argv, o.Args...)
}
