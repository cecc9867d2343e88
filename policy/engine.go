package policy

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/internal/logging"
)

//go:embed default/*.rego
var defaultFS embed.FS

// The query is prepared once per load. Wrapping both documents in
// comprehensions keeps the query defined whatever the policy defines, so one
// evaluation yields allow (zero or one value) and reasons (possibly none).
const decisionQuery = `allow := [x | x := data.taskerd.authz.allow]; reasons := [r | some r in data.taskerd.authz.reasons]`

// ErrNotBoolean is returned, with a deny, when data.taskerd.authz.allow is
// defined but is not true or false: the policy is broken.
var ErrNotBoolean = errors.New("data.taskerd.authz.allow is not a boolean")

// ErrBadInput is returned by EvalDocument for a document that is not a JSON
// object.
var ErrBadInput = errors.New("bad input document")

// ErrNoSubject is returned, with a deny, for a request without a subject.
var ErrNoSubject = errors.New("no authenticated subject")

// Option configures an Engine.
type Option func(*options)

type options struct {
	log         *slog.Logger
	decisionLog slog.Handler
	poll        time.Duration
}

// WithLogger sets where reloads and reload failures are logged (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithDecisionLog writes one JSON line per decision to w (see
// OpenDecisionLog), in the envelope of taskerd's other log lines (see
// DecisionRecord). Writes are serialized; w need not be safe for concurrent
// use. A nil w means no decision log.
func WithDecisionLog(w io.Writer) Option {
	return func(o *options) {
		o.decisionLog = nil
		if w != nil {
			o.decisionLog = logging.NewHandler(w, logging.JSON, slog.LevelInfo)
		}
	}
}

// WithDecisionHandler sends each decision as an info record to h: to share
// the daemon log's stream and format, say. Nil means no decision log.
func WithDecisionHandler(h slog.Handler) Option {
	return func(o *options) { o.decisionLog = h }
}

// WithPollInterval sets how often Load's watcher looks at the directory
// (default one second).
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.poll = d }
}

// Engine evaluates a policy. It is safe for concurrent use; a reload swaps the
// prepared query atomically, so every decision uses exactly one revision.
type Engine struct {
	opts    options
	current atomic.Pointer[prepared]
	dlog    *decisionLog
	claims  claimsCache

	dir       string
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// prepared is one loaded policy.
type prepared struct {
	query    rego.PreparedEvalQuery
	revision string
	files    []string
	noAllow  bool // nothing defines data.taskerd.authz.allow: every request is denied
}

// warnNoAllow logs a policy that can only deny: valid, and failing closed,
// but almost certainly a mistake (a package name typo, say).
func (e *Engine) warnNoAllow(p *prepared) {
	if p.noAllow {
		e.opts.log.Warn("policy defines no data.taskerd.authz.allow: every request will be denied", "dir", e.dir, "revision", p.revision)
	}
}

var _ api.Authorizer = (*Engine)(nil)

func newOptions(opts []Option) options {
	o := options{log: slog.Default(), poll: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.poll <= 0 {
		o.poll = time.Second
	}
	return o
}

func newEngine(o options) *Engine {
	e := &Engine{opts: o}
	if o.decisionLog != nil {
		e.dlog = &decisionLog{h: o.decisionLog, log: o.log}
	}
	return e
}

// Default returns an Engine for the shipped policy (policy/default).
func Default(opts ...Option) (*Engine, error) {
	src, err := readSource(defaultFS, "default", "")
	if err != nil {
		return nil, err
	}
	e := newEngine(newOptions(opts))
	p, err := prepare(src)
	if err != nil {
		return nil, fmt.Errorf("default policy: %w", err)
	}
	e.current.Store(p)
	return e, nil
}

// Load reads the *.rego files of dir (recursively; *_test.rego files are
// unit tests and are left out), compiles them in strict mode and prepares
// the query. An error means the daemon must not start. The directory is then
// polled: a change that compiles replaces the policy; one that does not is
// logged with every error's file:line and the previous policy stays. Close
// stops the watcher.
func Load(dir string, opts ...Option) (*Engine, error) {
	src, err := readDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading policy directory: %w", err)
	}
	p, err := prepare(src)
	if err != nil {
		return nil, err
	}
	e := newEngine(newOptions(opts))
	e.current.Store(p)
	e.dir = dir
	e.stop = make(chan struct{})
	e.done = make(chan struct{})
	e.opts.log.Info("policy loaded", "dir", dir, "revision", p.revision, "files", p.files)
	e.warnNoAllow(p)
	go e.watch()
	return e, nil
}

// prepare compiles a policy and prepares its decision query.
func prepare(src *source) (*prepared, error) {
	c, err := src.compile(false)
	if err != nil {
		return nil, err
	}
	q, err := rego.New(
		rego.Compiler(c),
		// The policy reads only input; an empty store that hands out AST
		// values spares a conversion on every evaluation.
		rego.Store(inmem.NewWithOpts(inmem.OptReturnASTValuesOnRead(true), inmem.OptRoundTripOnWrite(false))),
		rego.Query(decisionQuery),
		rego.Strict(true),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, fmt.Errorf("preparing the decision query: %w", err)
	}
	return &prepared{query: q, revision: src.revision(), files: src.names(false), noAllow: len(c.GetRulesExact(allowRef)) == 0}, nil
}

// Revision is the hash of the policy in force (see the decision log).
func (e *Engine) Revision() string {
	return e.current.Load().revision
}

// Close stops watching the policy directory. Decisions keep using the last
// policy loaded. It is safe to call more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		if e.stop != nil {
			close(e.stop)
			<-e.done
		}
	})
	return nil
}

// Authorize implements api.Authorizer. Every path that is not an explicit
// true from the policy is a deny; a broken policy or a failed evaluation
// also returns an error, which the API logs before answering 403.
func (e *Engine) Authorize(ctx context.Context, req *api.AuthzRequest) (api.Decision, error) {
	if req == nil || req.Subject == nil {
		return api.Decision{}, ErrNoSubject
	}
	input, err := e.newInput(req)
	if err != nil {
		e.logDecision(ctx, req, api.Decision{}, err, e.current.Load().revision, 0)
		return api.Decision{}, err
	}
	return e.decide(ctx, req, input)
}

// EvalDocument evaluates a complete input document given as JSON, as
// taskerd policy eval does. It is not logged.
func (e *Engine) EvalDocument(ctx context.Context, doc []byte) (api.Decision, error) {
	v, err := ast.ValueFromReader(bytes.NewReader(doc))
	if err != nil {
		return api.Decision{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if _, ok := v.(ast.Object); !ok {
		return api.Decision{}, fmt.Errorf("%w: it must be a JSON object", ErrBadInput)
	}
	d, err := e.eval(ctx, v, e.current.Load())
	return d, err
}

func (e *Engine) decide(ctx context.Context, req *api.AuthzRequest, input ast.Value) (api.Decision, error) {
	p := e.current.Load()
	start := time.Now()
	d, err := e.eval(ctx, input, p)
	took := time.Since(start)
	e.logDecision(ctx, req, d, err, p.revision, took)
	return d, err
}

// eval runs the prepared query and reads its answer, failing closed.
func (e *Engine) eval(ctx context.Context, input ast.Value, p *prepared) (api.Decision, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return api.Decision{}, fmt.Errorf("evaluating policy %s: %w", short(p.revision), err)
	}
	if len(rs) != 1 {
		// The query is always defined; anything else is a bug here.
		return api.Decision{}, fmt.Errorf("policy %s: %d results for the decision query", short(p.revision), len(rs))
	}
	var d api.Decision
	if raw, ok := rs[0].Bindings["reasons"].([]any); ok {
		for _, r := range raw {
			if s, ok := r.(string); ok {
				d.Reasons = append(d.Reasons, s)
			}
		}
	}
	allow, _ := rs[0].Bindings["allow"].([]any)
	switch {
	case len(allow) == 0:
		if len(d.Reasons) == 0 {
			d.Reasons = []string{"data.taskerd.authz.allow is undefined"}
		}
		return d, nil
	case len(allow) > 1:
		return api.Decision{Reasons: d.Reasons}, fmt.Errorf("policy %s: data.taskerd.authz.allow has %d values", short(p.revision), len(allow))
	}
	b, ok := allow[0].(bool)
	if !ok {
		return api.Decision{Reasons: d.Reasons}, fmt.Errorf("policy %s: %w (it is %s)", short(p.revision), ErrNotBoolean, typeName(allow[0]))
	}
	d.Allow = b
	return d, nil
}

// AllowedNamespaces returns the candidates (in their order, without
// duplicates) in which subject may do action,
// evaluating the policy once per distinct namespace, so that a listing costs
// one decision per namespace rather than one per row. The resource has the
// action's kind as type and only the namespace set. Any error fails the
// whole call: the caller must then show nothing.
func (e *Engine) AllowedNamespaces(ctx context.Context, subject *api.Subject, action string, candidates []string) ([]string, error) {
	if subject == nil {
		return nil, ErrNoSubject
	}
	kind, _, _ := strings.Cut(action, ":")
	seen := make(map[string]bool, len(candidates))
	var out []string
	for _, ns := range candidates {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		req := &api.AuthzRequest{Subject: subject, Action: action, Resource: api.Resource{Type: kind, Namespace: ns}}
		d, err := e.Authorize(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("authorizing %s in namespace %q: %w", action, ns, err)
		}
		if d.Allow {
			out = append(out, ns)
		}
	}
	return out, nil
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// typeName names a JSON value's type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case []any:
		return "an array or a set"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

func (e *Engine) logDecision(ctx context.Context, req *api.AuthzRequest, d api.Decision, err error, rev string, took time.Duration) {
	if e.dlog != nil {
		e.dlog.write(ctx, req, d, err, rev, took)
	}
}
