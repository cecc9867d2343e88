package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/engine"
)

// Defaults for Options.
const (
	DefaultStartTimeout   = 10 * time.Second
	DefaultRestartMin     = 100 * time.Millisecond
	DefaultRestartMax     = 30 * time.Second
	DefaultHealthyPeriod  = time.Minute
	DefaultMaxConcurrency = 64
)

// Spec is one plugin to run, as the daemon config describes it.
type Spec struct {
	// Name is the PLUGIN of PLUGIN.HANDLER.
	Name string
	// Path is the plugin's executable or, for a script plugin (Command
	// set), its entry script.
	Path string
	// Command, when set, makes the plugin a script plugin: the process is
	// Command (a program name, looked up in the daemon's PATH each time
	// the plugin is launched, or a path), run with the arguments
	// [Path, Args...]: node for the TypeScript SDK. Its checksum is then
	// ScriptSHA256's, of the script and its lockfile, not the
	// interpreter's.
	Command string
	// Args are the arguments the executable is started with (none by
	// default), after the script for a script plugin: taskerd bench starts
	// its own binary as a plugin with a hidden subcommand. The checksum
	// does not cover them.
	Args []string
	// SHA256 is the expected hex SHA-256 of the executable (FileSHA256),
	// or of a script plugin's script and lockfile (ScriptSHA256): required,
	// unless Dev. It is verified before every launch, restarts included.
	SHA256 string
	// Dev starts the executable without verifying its checksum (SHA256 is
	// ignored), for a plugin being rebuilt again and again during
	// development. The host logs a warning at each launch. Never for a
	// daemon whose API requires authentication: the caller enforces that.
	Dev bool
	// Config is passed to the plugin once at start (Configure); nil is {}.
	Config json.RawMessage
	// MaxConcurrency bounds the calls in flight into the plugin; 0 means
	// DefaultMaxConcurrency. Calls beyond it wait (within their deadline).
	MaxConcurrency int
}

// Options tune a Host. The zero value is usable.
type Options struct {
	// Logger receives the host's messages and the plugins' own log lines,
	// each with a "plugin" attribute. Nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds launch + handshake, and then Describe and
	// Configure each.
	StartTimeout time.Duration
	// RestartMin and RestartMax bound the wait before relaunching a plugin
	// that died (its restart backoff): it doubles with every relaunch, and
	// goes back to RestartMin when the plugin has stayed up for
	// HealthyPeriod, or at once on Plugin.ResetBackoff.
	RestartMin, RestartMax time.Duration
	// HealthyPeriod is how long a relaunched plugin must stay up for its
	// restart backoff to go back to RestartMin, so that a crash long after
	// a bad spell is repaired as quickly as the first one. 0 means
	// DefaultHealthyPeriod.
	HealthyPeriod time.Duration
	// Env is the whole environment of every plugin process ("KEY=VALUE"),
	// besides go-plugin's own variables: a plugin gets nothing else from
	// the daemon's environment. serve gives the OTEL_* variables there
	// while tracing is on (tracing.PluginEnv), so that plugins export
	// their spans where taskerd does.
	Env []string
	// TracerProvider, when set, traces each call into a plugin (a client
	// span, "plugin PLUGIN.HANDLER" or "authenticate PLUGIN") and sends
	// its W3C trace context to the plugin in the call's gRPC metadata,
	// where the SDK starts the handler's span under it (docs/tracing.md).
	// Nil (the default) traces nothing and sends nothing.
	TracerProvider trace.TracerProvider
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.RestartMin <= 0 {
		o.RestartMin = DefaultRestartMin
	}
	if o.RestartMax < o.RestartMin {
		o.RestartMax = max(DefaultRestartMax, o.RestartMin)
	}
	if o.HealthyPeriod <= 0 {
		o.HealthyPeriod = DefaultHealthyPeriod
	}
	return o
}

// Host is a set of running plugins.
type Host struct {
	plugins []*Plugin
	byName  map[string]*Plugin
}

var (
	pluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Start launches every plugin in specs and learns its handlers. It fails
// closed: if any plugin cannot be started (bad checksum, failed handshake,
// Describe or Configure), the ones already started are stopped and the
// error names the plugin.
func Start(ctx context.Context, specs []Spec, opts Options) (*Host, error) {
	opts = opts.withDefaults()
	started, err := startAll(ctx, specs, opts, kindStepHandler)
	if err != nil {
		return nil, err
	}
	h := &Host{byName: map[string]*Plugin{}}
	for _, p := range started {
		h.plugins = append(h.plugins, p)
		h.byName[p.spec.Name] = p
	}
	return h, nil
}

// startAll checks specs and launches them in parallel, all or none.
func startAll(ctx context.Context, specs []Spec, opts Options, kind pluginKind) ([]*Plugin, error) {
	seen := map[string]bool{}
	for _, s := range specs {
		if err := s.check(); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("plugin %q is configured twice", s.Name)
		}
		seen[s.Name] = true
	}
	// Launch in parallel: start-up is mostly waiting for processes.
	started := make([]*Plugin, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Go(func() { started[i], errs[i] = startPlugin(ctx, s, opts, kind) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, p := range started {
			if p != nil {
				p.Close()
			}
		}
		return nil, err
	}
	return started, nil
}

func (s *Spec) check() error {
	switch {
	case !pluginNameRE.MatchString(s.Name) || s.Name == "builtin":
		return fmt.Errorf("plugin name %q: want lower-case letters, digits and _ (and not \"builtin\")", s.Name)
	case s.Path == "":
		return fmt.Errorf("plugin %q: no path", s.Name)
	case s.Command != "" && (strings.TrimSpace(s.Command) == "" || strings.ContainsRune(s.Command, 0)):
		return fmt.Errorf("plugin %q: command %q is not a program name or path", s.Name, s.Command)
	case s.Dev:
	case s.SHA256 == "" && s.Command != "":
		return fmt.Errorf("plugin %q: no sha256: every plugin's checksum is required (taskerd plugins hash --script %s)", s.Name, s.Path)
	case s.SHA256 == "":
		return fmt.Errorf("plugin %q: no sha256: every plugin's checksum is required (taskerd plugins hash %s)", s.Name, s.Path)
	case !sha256RE.MatchString(strings.ToLower(s.SHA256)):
		return fmt.Errorf("plugin %q: sha256 %q is not 64 hex digits", s.Name, s.SHA256)
	}
	switch {
	case s.MaxConcurrency < 0:
		return fmt.Errorf("plugin %q: max_concurrency must not be negative", s.Name)
	}
	if len(s.Config) > 0 && !json.Valid(s.Config) {
		return fmt.Errorf("plugin %q: config is not valid JSON", s.Name)
	}
	return nil
}

// Plugins returns the running plugins in configuration order.
func (h *Host) Plugins() []*Plugin { return h.plugins }

// Plugin returns the plugin called name.
func (h *Host) Plugin(name string) (*Plugin, bool) {
	p, ok := h.byName[name]
	return p, ok && p != nil
}

// Register adds every plugin handler to r as PLUGIN.HANDLER.
func (h *Host) Register(r *engine.Registry) error {
	for _, p := range h.plugins {
		for _, hi := range p.Handlers() {
			if err := r.Register(p.spec.Name+"."+hi.Name, p.Handler(hi.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ResetBackoff resets the restart backoff of every plugin
// (Plugin.ResetBackoff): a plugin waiting to be relaunched is relaunched
// now. reason is logged. A nil Host does nothing.
func (h *Host) ResetBackoff(reason string) {
	if h == nil {
		return
	}
	for _, p := range h.plugins {
		p.ResetBackoff(reason)
	}
}

// Close stops every plugin and waits for their processes to exit.
func (h *Host) Close() {
	if h == nil {
		return
	}
	var wg sync.WaitGroup
	for _, p := range h.plugins {
		wg.Go(p.Close)
	}
	wg.Wait()
}

// FileSHA256 returns the hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// ChecksumError is returned when a plugin's executable, or a script
// plugin's script and lockfile, is not the one the configuration trusts:
// the plugin was not started.
type ChecksumError struct {
	// Path is the executable, or the script of a script plugin.
	Plugin, Path string
	// Lockfile is a script plugin's lockfile (ScriptFiles); "" for an
	// executable.
	Lockfile string
	// Actual is the checksum found: FileSHA256's, or ScriptSHA256's.
	Expected, Actual string
}

func (e *ChecksumError) Error() string {
	if e.Lockfile != "" {
		return fmt.Sprintf("plugin %q: refusing to start script %s: the sha256 of the script and its lockfile %s is %s, the configuration expects %s",
			e.Plugin, e.Path, e.Lockfile, e.Actual, e.Expected)
	}
	return fmt.Sprintf("plugin %q: refusing to start %s: its sha256 is %s, the configuration expects %s",
		e.Plugin, e.Path, e.Actual, e.Expected)
}
