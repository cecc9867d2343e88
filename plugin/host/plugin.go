package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/tracing"
	pb "github.com/taskerd/taskerd/plugin/proto"
)

// HandlerInfo is one handler a plugin serves.
type HandlerInfo struct {
	Name        string
	Description string
	// ResultSchema is the JSON Schema of the handler's results the plugin
	// reports (plugin.Typed does), or nil. Informative: a step's result is
	// checked against the result_schema of its HCL, not this.
	ResultSchema json.RawMessage
}

func (h HandlerInfo) equal(o HandlerInfo) bool {
	return h.Name == o.Name && h.Description == o.Description && bytes.Equal(h.ResultSchema, o.ResultSchema)
}

// Plugin is one supervised plugin: at most one live process at a time.
type Plugin struct {
	spec   Spec
	kind   pluginKind
	opts   Options
	log    *slog.Logger
	sem    chan struct{}
	tracer trace.Tracer // nil: tracing off

	handlers []HandlerInfo // learned at the first start; fixed after

	mu       sync.Mutex
	cur      *instance     // nil while the plugin is being restarted
	ready    chan struct{} // closed when cur is set again
	closed   bool
	restarts int
	// delay is the restart backoff: the wait before the next relaunch.
	delay time.Duration

	crashed chan *instance // to the supervisor
	reset   chan struct{}  // ResetBackoff to the supervisor (1 buffered)
	stop    chan struct{}
	done    chan struct{} // the supervisor returned
}

// pluginKind is which service a plugin serves: the host starts, verifies
// and supervises both kinds the same way and differs only in the client it
// dispenses and the calls it makes at start.
type pluginKind int

const (
	kindStepHandler pluginKind = iota
	kindAuthenticator
)

// instance is one process of a plugin.
type instance struct {
	client  *goplugin.Client
	rpc     pb.StepHandlerClient   // kindStepHandler
	auth    pb.AuthenticatorClient // kindAuthenticator
	pid     int
	started time.Time
}

func startPlugin(ctx context.Context, s Spec, opts Options, kind pluginKind) (*Plugin, error) {
	if s.MaxConcurrency == 0 {
		s.MaxConcurrency = DefaultMaxConcurrency
	}
	if len(s.Config) == 0 {
		s.Config = json.RawMessage("{}")
	}
	s.SHA256 = strings.ToLower(s.SHA256)
	// An absolute path: exec must never look a bare name up in PATH.
	if abs, err := filepath.Abs(s.Path); err == nil {
		s.Path = abs
	}
	// A relative interpreter path ("bin/node") is the working directory's,
	// now; a bare name is looked up in PATH at each launch.
	if strings.ContainsRune(s.Command, filepath.Separator) || strings.ContainsRune(s.Command, '/') {
		if abs, err := filepath.Abs(s.Command); err == nil {
			s.Command = abs
		}
	}
	p := &Plugin{
		spec:    s,
		kind:    kind,
		opts:    opts,
		log:     opts.Logger.With("plugin", s.Name),
		sem:     make(chan struct{}, s.MaxConcurrency),
		crashed: make(chan *instance, 1),
		reset:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if opts.TracerProvider != nil {
		p.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	inst, handlers, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	p.cur, p.handlers, p.delay = inst, handlers, opts.RestartMin
	if s.Command != "" {
		p.log.Info("plugin started", "command", s.Command, "path", s.Path, "pid", inst.pid, "handlers", handlerNames(handlers))
	} else {
		p.log.Info("plugin started", "path", s.Path, "pid", inst.pid, "handlers", handlerNames(handlers))
	}
	go p.supervise()
	return p, nil
}

// launch starts one process: verify, handshake, Describe, Configure.
func (p *Plugin) launch(ctx context.Context) (*instance, []HandlerInfo, error) {
	var secure *goplugin.SecureConfig
	exe, args := p.spec.Path, p.spec.Args
	if p.spec.Command != "" {
		interp, err := p.spec.interpreter()
		if err != nil {
			return nil, nil, err
		}
		exe, args = interp, append([]string{p.spec.Path}, p.spec.Args...)
	}
	switch {
	case p.spec.Dev:
		p.log.Warn("DEV PLUGIN: starting it WITHOUT verifying its checksum (dev = true); for development only, never in production",
			"path", p.spec.Path)
	case p.spec.Command != "":
		// go-plugin's SecureConfig would hash the interpreter (the
		// command's executable): the script and its lockfile are checked
		// here instead, before the process exists.
		if err := p.spec.verifyScript(); err != nil {
			return nil, nil, err
		}
	default:
		sum, err := hex.DecodeString(p.spec.SHA256)
		if err != nil {
			return nil, nil, fmt.Errorf("plugin %q: sha256: %w", p.spec.Name, err)
		}
		secure = &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	plugins, name := pb.PluginSet(nil), pb.PluginName
	if p.kind == kindAuthenticator {
		plugins, name = pb.AuthenticatorPluginSet(nil), pb.AuthenticatorPluginName
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = slices.Clone(p.opts.Env)
	var dial []grpc.DialOption
	if p.tracer != nil {
		// Each call's trace context goes to the plugin in its metadata.
		dial = append(dial, grpc.WithChainUnaryInterceptor(tracing.UnaryClientInterceptor))
	}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  pb.Handshake,
		Plugins:          plugins,
		Cmd:              cmd,
		GRPCDialOptions:  dial,
		SecureConfig:     secure,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		// The plugin gets no environment from taskerd but Options.Env:
		// whatever secrets the daemon holds stay in the daemon.
		SkipHostEnv:  true,
		StartTimeout: p.opts.StartTimeout,
		Logger:       newHCLogger(p.log),
	})
	fail := func(err error) (*instance, []HandlerInfo, error) {
		client.Kill()
		return nil, nil, err
	}
	rpcClient, err := client.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			actual, herr := FileSHA256(p.spec.Path)
			if herr != nil {
				actual = "unreadable (" + herr.Error() + ")"
			}
			return fail(&ChecksumError{Plugin: p.spec.Name, Path: p.spec.Path, Expected: p.spec.SHA256, Actual: actual})
		}
		return fail(fmt.Errorf("plugin %q: starting %s: %w", p.spec.Name, p.spec.Path, err))
	}
	raw, err := rpcClient.Dispense(name)
	if err != nil {
		return fail(fmt.Errorf("plugin %q: %w", p.spec.Name, err))
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.StartTimeout)
	defer cancel()
	if p.kind == kindAuthenticator {
		auth, ok := raw.(pb.AuthenticatorClient)
		if !ok {
			return fail(fmt.Errorf("plugin %q: unexpected client type %T", p.spec.Name, raw))
		}
		if _, err := auth.Configure(cctx, &pb.ConfigureRequest{ConfigJson: p.spec.Config}); err != nil {
			if status.Code(err) == codes.Unimplemented {
				return fail(fmt.Errorf("plugin %q: %s does not serve the authenticator protocol (is it a step-handler plugin? kind = \"authenticator\" needs plugin.ServeAuthenticator): %w", p.spec.Name, p.spec.Path, err))
			}
			return fail(fmt.Errorf("plugin %q: Configure refused its config: %w", p.spec.Name, err))
		}
		inst := &instance{client: client, auth: auth, started: time.Now()}
		if rc := client.ReattachConfig(); rc != nil {
			inst.pid = rc.Pid
		}
		return inst, nil, nil
	}
	stub, ok := raw.(pb.StepHandlerClient)
	if !ok {
		return fail(fmt.Errorf("plugin %q: unexpected client type %T", p.spec.Name, raw))
	}
	desc, err := stub.Describe(cctx, &pb.DescribeRequest{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return fail(fmt.Errorf("plugin %q: %s does not serve the step-handler protocol (an authenticator? give it kind = \"authenticator\"): %w", p.spec.Name, p.spec.Path, err))
		}
		return fail(fmt.Errorf("plugin %q: Describe: %w", p.spec.Name, err))
	}
	var handlers []HandlerInfo
	for _, h := range desc.Handlers {
		if h.Name == "" || strings.Contains(h.Name, ".") {
			return fail(fmt.Errorf("plugin %q: Describe returned an invalid handler name %q", p.spec.Name, h.Name))
		}
		hi := HandlerInfo{Name: h.Name, Description: h.Description}
		// A schema that is not JSON is dropped rather than passed on.
		if h.ResultSchema != "" && json.Valid([]byte(h.ResultSchema)) {
			hi.ResultSchema = json.RawMessage(h.ResultSchema)
		}
		handlers = append(handlers, hi)
	}
	slices.SortFunc(handlers, func(a, b HandlerInfo) int { return strings.Compare(a.Name, b.Name) })
	if _, err := stub.Configure(cctx, &pb.ConfigureRequest{ConfigJson: p.spec.Config}); err != nil {
		return fail(fmt.Errorf("plugin %q: Configure refused its config: %w", p.spec.Name, err))
	}
	inst := &instance{client: client, rpc: stub, started: time.Now()}
	if rc := client.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	return inst, handlers, nil
}

// Name is the plugin's name (the PLUGIN of PLUGIN.HANDLER).
func (p *Plugin) Name() string { return p.spec.Name }

// Path is the plugin's executable, or a script plugin's script.
func (p *Plugin) Path() string { return p.spec.Path }

// Command is a script plugin's interpreter as configured (Spec.Command),
// or "" for a plugin that is an executable.
func (p *Plugin) Command() string { return p.spec.Command }

// Handlers lists the plugin's handlers, sorted by name.
func (p *Plugin) Handlers() []HandlerInfo { return slices.Clone(p.handlers) }

// Pid is the pid of the plugin's current process, or 0 while it is being
// restarted or after Close.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.pid
}

// Restarts counts the times the plugin was relaunched after dying.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// RestartDelay is the plugin's restart backoff: how long the host would
// wait before relaunching the plugin if its process died now (while a
// relaunch is pending, the wait under way or the next one).
func (p *Plugin) RestartDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// ResetBackoff puts the plugin's restart backoff back to RestartMin, and
// cuts short a restart wait under way: a plugin waiting to be relaunched
// is relaunched now (once the launch in progress, if any, has ended).
// Use it when whatever made the plugin crash may have been fixed: an
// operator retry, a SIGHUP. reason is logged. It does not block.
func (p *Plugin) ResetBackoff(reason string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	down, was := p.cur == nil, p.delay
	p.delay = p.opts.RestartMin
	p.mu.Unlock()
	select {
	case p.reset <- struct{}{}:
	default: // one is pending already
	}
	if down || was != p.opts.RestartMin {
		p.log.Info("plugin restart backoff reset", "reason", reason, "was", was, "relaunch_now", down)
	}
}

// Handler returns the engine.Handler of one of the plugin's handlers. It
// implements engine.RetryHook: an operator retry of a step it runs resets
// the plugin's restart backoff (ResetBackoff), so that the retry runs on a
// relaunched process rather than waiting out a long backoff.
func (p *Plugin) Handler(name string) engine.Handler {
	return pluginHandler{p: p, name: name}
}

type pluginHandler struct {
	p    *Plugin
	name string
}

var _ engine.RetryHook = pluginHandler{}

func (h pluginHandler) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	return h.p.Execute(ctx, h.name, req)
}

func (h pluginHandler) OperatorRetry() { h.p.ResetBackoff("operator retry") }

// Execute runs one attempt of a step with the plugin's handler `handler`.
// Failures are *engine.StepFailure values: the handler's own (message,
// retryable, backoff, kind), plugin_crashed when the process died during
// the call, timeout when ctx's deadline passed. The custom events the
// handler emitted, with either outcome, are passed on with engine.Emit on
// ctx (the engine's call carries the attempt's collector).
func (p *Plugin) Execute(ctx context.Context, handler string, req *engine.StepRequest) (_ json.RawMessage, err error) {
	ctx, span := p.startCall(ctx, handler, req)
	defer func() { endCall(span, err) }()
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return nil, p.ctxFailure(ctx, req, "waiting for a free call slot (max_concurrency)")
	}
	if p.kind != kindStepHandler {
		return nil, &engine.StepFailure{Message: fmt.Sprintf("plugin %s is an authenticator, not a step handler", p.spec.Name)}
	}
	inst, err := p.instance(ctx)
	if err != nil {
		return nil, p.errorFor(ctx, req, err, "waiting for the plugin to restart")
	}
	in := &pb.ExecuteRequest{
		TaskId:            req.TaskID,
		StepId:            req.StepID,
		StepName:          req.StepName,
		Handler:           handler,
		Attempt:           int32(req.Attempt),
		ContextJson:       req.Context,
		ConfigJson:        req.Config,
		ParentResultsJson: make(map[string][]byte, len(req.ParentResults)),
		IdempotencyKey:    req.IdempotencyKey,
	}
	if !req.Deadline.IsZero() {
		in.DeadlineUnixNano = req.Deadline.UnixNano()
	}
	if !req.StartBy.IsZero() {
		in.StartByUnixNano = req.StartBy.UnixNano()
	}
	for k, v := range req.ParentResults {
		in.ParentResultsJson[k] = v
	}
	resp, err := inst.rpc.Execute(ctx, in)
	if err != nil {
		// gRPC's own timer may end the call a moment before ctx's.
		if status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil {
			return nil, p.timeoutFailure(req, "running", err)
		}
		if ctx.Err() != nil {
			return nil, p.ctxFailure(ctx, req, "running")
		}
		// The call failed while the caller still wanted it. A dead process
		// or a broken connection shows as Unavailable (or Canceled, when
		// go-plugin closed the connection first): this instance is done.
		// Anything else (say a message over gRPC's 4 MB limit) is this
		// call's problem, not the plugin's.
		code := status.Code(err)
		if code != codes.Unavailable && code != codes.Canceled && !inst.client.Exited() {
			return nil, &engine.StepFailure{
				Message:   fmt.Sprintf("calling plugin %s handler %s (step %s): %v", p.spec.Name, handler, req.StepName, err),
				Retryable: true,
				Err:       err,
			}
		}
		p.reportCrash(inst)
		return nil, &engine.StepFailure{
			Message:   fmt.Sprintf("plugin %s died during the call to %s (step %s, attempt %d): %v", p.spec.Name, handler, req.StepName, req.Attempt, err),
			Retryable: true,
			Kind:      backends.ErrorKindPluginCrashed,
			Err:       err,
		}
	}
	// The handler's custom events go to the engine's collector in ctx,
	// which checks them (names, limits) as it does a built-in's; one it
	// refuses fails the attempt there.
	for _, ev := range resp.Events {
		var payload json.RawMessage
		if len(ev.PayloadJson) > 0 {
			payload = ev.PayloadJson
		}
		if err := engine.Emit(ctx, ev.Name, payload); errors.Is(err, engine.ErrNoAttempt) {
			p.log.Warn("plugin emitted custom events, but the call was not made by the engine; dropped", "handler", handler, "step", req.StepName, "events", len(resp.Events))
			break
		}
	}
	switch o := resp.Outcome.(type) {
	case *pb.ExecuteResponse_Success:
		if len(o.Success.ResultJson) == 0 {
			return json.RawMessage("{}"), nil
		}
		return o.Success.ResultJson, nil
	case *pb.ExecuteResponse_Failure:
		f := &engine.StepFailure{Message: o.Failure.Message, Retryable: o.Failure.Retryable, Kind: o.Failure.Kind}
		if o.Failure.BackoffSeconds != nil && *o.Failure.BackoffSeconds > 0 {
			s := int(*o.Failure.BackoffSeconds)
			f.BackoffSeconds = &s
		}
		if !f.Retryable && f.Kind == "" {
			f.Kind = backends.ErrorKindPermanent
		}
		// A handler that gave up because its deadline passed reports a
		// plain error; the step failed because it timed out.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || (!req.Deadline.IsZero() && !time.Now().Before(req.Deadline)) {
			return nil, p.timeoutFailure(req, "running", errors.New(f.Message))
		}
		return nil, f
	default:
		return nil, &engine.StepFailure{Message: fmt.Sprintf("plugin %s answered %s with neither a result nor a failure", p.spec.Name, handler), Retryable: true}
	}
}

// instance returns the live process, waiting while one is relaunched.
func (p *Plugin) instance(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("plugin %s: %w", p.spec.Name, ErrStopped)
		}
		inst, ready := p.cur, p.ready
		p.mu.Unlock()
		if inst != nil {
			return inst, nil
		}
		select {
		case <-ready:
		case <-p.stop:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrStopped is the error of a call into a plugin after Close.
var ErrStopped = errors.New("plugin is stopped")

func (p *Plugin) errorFor(ctx context.Context, req *engine.StepRequest, err error, doing string) error {
	if ctx.Err() != nil {
		return p.ctxFailure(ctx, req, doing)
	}
	if errors.Is(err, ErrStopped) {
		return &engine.StepFailure{Message: err.Error(), Retryable: true, Err: err}
	}
	return &engine.StepFailure{Message: err.Error(), Retryable: true, Kind: backends.ErrorKindPluginCrashed, Err: err}
}

// ctxFailure is the failure of a call whose ctx ended: timeout for a
// deadline, the cancellation otherwise (the engine records a cancelled
// step as cancelled, whatever the handler says).
func (p *Plugin) ctxFailure(ctx context.Context, req *engine.StepRequest, doing string) error {
	cause := context.Cause(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return p.timeoutFailure(req, doing, cause)
	}
	return &engine.StepFailure{Message: fmt.Sprintf("step %s cancelled while %s in plugin %s: %v", req.StepName, doing, p.spec.Name, cause), Retryable: true, Err: cause}
}

func (p *Plugin) timeoutFailure(req *engine.StepRequest, doing string, err error) error {
	return &engine.StepFailure{
		Message:   fmt.Sprintf("step %s timed out in plugin %s while %s", req.StepName, p.spec.Name, doing),
		Retryable: true,
		Kind:      backends.ErrorKindTimeout,
		Err:       err,
	}
}

func (p *Plugin) reportCrash(inst *instance) {
	if !p.detach(inst) {
		return // already detached: the supervisor has it
	}
	select {
	case p.crashed <- inst:
	case <-p.stop:
	}
}

// detach makes inst no longer the current process, so that later calls
// wait for its replacement instead of trying a dead connection. Only one
// caller detaches a given instance.
func (p *Plugin) detach(inst *instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cur != inst {
		return false
	}
	p.cur = nil
	p.ready = make(chan struct{})
	return true
}

// livenessInterval is how often the supervisor checks that an idle plugin
// is still running, so that a crash between calls is repaired before the
// next call needs the plugin.
const livenessInterval = 200 * time.Millisecond

// supervise relaunches the plugin when its process dies, after its
// restart backoff (p.delay), which doubles with every relaunch up to
// RestartMax. The backoff goes back to RestartMin when a relaunched
// process has stayed up for HealthyPeriod, and on ResetBackoff, which also
// ends a restart wait under way.
func (p *Plugin) supervise() {
	defer close(p.done)
	tick := time.NewTicker(livenessInterval)
	defer tick.Stop()
	// healthy fires when the process relaunched last (relaunched) has been
	// up for HealthyPeriod; nil while none is being watched.
	var healthy <-chan time.Time
	var relaunched *instance
	for {
		var dead *instance
		select {
		case <-p.stop:
			return
		case dead = <-p.crashed:
		case <-p.reset:
			// ResetBackoff set the delay already; no restart is waiting.
			continue
		case <-healthy:
			healthy = nil
			p.markHealthy(relaunched)
			continue
		case <-tick.C:
			p.mu.Lock()
			cur := p.cur
			p.mu.Unlock()
			if cur != nil && cur.client.Exited() && p.detach(cur) {
				dead = cur
			}
		}
		if dead == nil {
			continue
		}
		healthy = nil
		dead.client.Kill() // reap it, or finish off a process with a broken connection
		p.mu.Lock()
		if time.Since(dead.started) >= p.opts.HealthyPeriod {
			// It crashed before the timer told (or it was the first
			// process, which no timer watches): it was healthy all the same.
			p.delay = p.opts.RestartMin
		}
		delay := p.delay
		p.mu.Unlock()
		p.log.Error("plugin process died; restarting", "pid", dead.pid, "after", delay)
		inst := p.relaunch()
		if inst == nil {
			return // stopped
		}
		relaunched, healthy = inst, time.After(p.opts.HealthyPeriod)
	}
}

// relaunch waits out the backoff and launches the plugin until a process
// is up, and makes it current. It returns nil when the plugin is stopped.
func (p *Plugin) relaunch() *instance {
	for {
		p.mu.Lock()
		wait := p.delay
		p.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-p.stop:
			timer.Stop()
			return nil
		case <-p.reset:
			// ResetBackoff: launch now. The delay is RestartMin already, and
			// stays so: the wait this launch skipped does not count.
			timer.Stop()
		case <-timer.C:
			p.mu.Lock()
			p.delay = min(p.delay*2, p.opts.RestartMax)
			p.mu.Unlock()
		}
		inst, handlers, err := p.launch(context.Background())
		if err != nil {
			p.log.Error("restarting plugin failed", "err", err, "next_try_in", p.RestartDelay())
			continue
		}
		if !slices.EqualFunc(handlers, p.handlers, HandlerInfo.equal) {
			p.log.Warn("restarted plugin describes other handlers; keeping the ones learned at start", "handlers", handlerNames(handlers))
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			inst.client.Kill()
			return nil
		}
		p.cur = inst
		p.restarts++
		close(p.ready)
		p.mu.Unlock()
		p.log.Info("plugin restarted", "pid", inst.pid)
		return inst
	}
}

// markHealthy resets the backoff when inst, relaunched HealthyPeriod ago,
// is still the plugin's process.
func (p *Plugin) markHealthy(inst *instance) {
	p.mu.Lock()
	if p.cur != inst || inst.client.Exited() {
		p.mu.Unlock()
		return // it died meanwhile: the crash path decides
	}
	was := p.delay
	p.delay = p.opts.RestartMin
	p.mu.Unlock()
	if was != p.opts.RestartMin {
		p.log.Info("plugin stayed up; restart backoff reset", "pid", inst.pid, "up_for", p.opts.HealthyPeriod, "was", was)
	}
}

// Close stops the plugin's process and waits for it to exit. Calls in
// flight fail; later calls fail at once.
func (p *Plugin) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	<-p.done // no relaunch can start after this
	p.mu.Lock()
	inst := p.cur
	p.cur = nil
	p.mu.Unlock()
	if inst != nil {
		// Kill asks the plugin to stop, and force-kills it after 2 s; it
		// returns once the process has exited.
		inst.client.Kill()
		p.log.Info("plugin stopped", "pid", inst.pid)
	}
}

func handlerNames(hs []HandlerInfo) []string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return names
}
