package host

// The authenticator chain lives here, beside the step-handler host, rather
// than in api or a package of its own: it is the same launch, checksum,
// AutoMTLS and restart machinery with a different service on the wire, and
// api stays free of go-plugin (it only knows api.Authenticator). Nothing in
// api imports this package, so the dependency points one way.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerd/taskerd/api"
	pb "github.com/taskerd/taskerd/plugin/proto"
)

// DefaultAuthTimeout bounds one call into one authenticator plugin,
// including any wait for a crashed plugin to come back.
const DefaultAuthTimeout = 2 * time.Second

// AuthOptions tune StartAuthenticators. The zero value is usable.
type AuthOptions struct {
	Options
	// Timeout bounds each Authenticate call into a plugin; 0 means
	// DefaultAuthTimeout. A call that runs out is an error (401).
	Timeout time.Duration
}

// AuthChain is an api.Authenticator made of authenticator plugins tried in
// order (auth { authenticators = [...] }). The first plugin that does not
// answer not_mine decides: authenticated gives the subject, rejected is an
// error. When every plugin answers not_mine the result is
// api.ErrNoCredentials. A plugin that fails, crashes or runs past the
// timeout is an error too: the chain never lets a request through on
// anything but an authenticated answer.
type AuthChain struct {
	plugins []*Plugin // chain order
	opts    AuthOptions

	errs      *prometheus.CounterVec
	decisions *prometheus.CounterVec
}

var _ api.Authenticator = (*AuthChain)(nil)

// AuthError is the error of a chain whose deciding plugin did not
// authenticate the request. Its text is for taskerd's log; the client only
// ever sees 401. It never holds the credential.
type AuthError struct {
	// Plugin is the plugin that decided.
	Plugin string
	// Kind is "rejected" (the plugin refused the credential), "timeout",
	// "crashed" (the plugin's process died during the call) or "error"
	// (any other failure of the call or of its answer).
	Kind string
	// Reason is the plugin's reason (rejected) or the call's error.
	Reason string
	Err    error
}

func (e *AuthError) Error() string {
	if e.Kind == "rejected" {
		return fmt.Sprintf("authenticator %s rejected the credential: %s", e.Plugin, e.Reason)
	}
	return fmt.Sprintf("authenticator %s failed (%s): %s", e.Plugin, e.Kind, e.Reason)
}

func (e *AuthError) Unwrap() error { return e.Err }

// StartAuthenticators starts the authenticator plugins named in names (the
// auth block's authenticators, in chain order) from specs (the plugins of
// kind authenticator) and returns the chain. Each is verified and
// supervised like a step-handler plugin. It fails closed: an empty chain, a
// name without a spec, a name listed twice, or any plugin that does not
// start (checksum, handshake, a binary that does not serve the
// authenticator protocol, Configure refusing its config) is an error, and
// nothing is left running. Specs not named are not started.
func StartAuthenticators(ctx context.Context, specs []Spec, names []string, opts AuthOptions) (*AuthChain, error) {
	opts.Options = opts.Options.withDefaults()
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAuthTimeout
	}
	if len(names) == 0 {
		return nil, errors.New("auth: no authenticators listed: a chain of none would refuse every request")
	}
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	var chain []Spec
	for _, n := range names {
		s, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("auth: authenticator %q is not a configured plugin of kind authenticator", n)
		}
		if slices.ContainsFunc(chain, func(c Spec) bool { return c.Name == n }) {
			return nil, fmt.Errorf("auth: authenticator %q is listed twice", n)
		}
		chain = append(chain, s)
	}
	started, err := startAll(ctx, chain, opts.Options, kindAuthenticator)
	if err != nil {
		return nil, err
	}
	return &AuthChain{
		plugins: started,
		opts:    opts,
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_authenticator_errors_total",
			Help: "Authenticator plugin calls that failed (error, crash or timeout), by plugin.",
		}, []string{"plugin"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_authenticator_answers_total",
			Help: "Authenticator plugin answers, by plugin and outcome (authenticated, not_mine, rejected, error).",
		}, []string{"plugin", "outcome"}),
	}, nil
}

// Collectors are the chain's Prometheus metrics, for the API's registry
// (api.Metrics.Register).
func (c *AuthChain) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.errs, c.decisions}
}

// Plugins returns the chain's plugins in order.
func (c *AuthChain) Plugins() []*Plugin { return slices.Clone(c.plugins) }

// Close stops every plugin of the chain and waits for them to exit; later
// calls fail (401).
func (c *AuthChain) Close() {
	if c == nil {
		return
	}
	(&Host{plugins: c.plugins}).Close()
}

// Authenticate implements api.Authenticator.
func (c *AuthChain) Authenticate(r *http.Request) (*api.Subject, error) {
	in := &pb.AuthenticateRequest{
		Method:     strings.ToValidUTF8(r.Method, "\uFFFD"),
		Path:       strings.ToValidUTF8(r.URL.Path, "\uFFFD"), // decoded: %FF is a byte
		RemoteAddr: strings.ToValidUTF8(r.RemoteAddr, "\uFFFD"),
		Headers:    make(map[string]*pb.HeaderValues, len(r.Header)),
	}
	for k, vs := range r.Header {
		// Protobuf strings are UTF-8: a stray byte (obs-text) would fail
		// the whole call. Replacing it keeps the request answerable, and a
		// credential changed this way no longer verifies.
		vals := make([]string, len(vs))
		for i, v := range vs {
			vals[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
		in.Headers[strings.ToValidUTF8(k, "\uFFFD")] = &pb.HeaderValues{Values: vals}
	}
	for _, p := range c.plugins {
		sub, err := c.ask(r.Context(), p, in)
		if err == nil && sub == nil {
			c.decisions.WithLabelValues(p.spec.Name, "not_mine").Inc()
			continue
		}
		var ae *AuthError
		switch {
		case err == nil:
			c.decisions.WithLabelValues(p.spec.Name, "authenticated").Inc()
			return sub, nil
		case errors.As(err, &ae) && ae.Kind == "rejected":
			c.decisions.WithLabelValues(p.spec.Name, "rejected").Inc()
			// Method, path and client, never a header: the credential is in one.
			c.opts.Logger.Info("credential rejected", "plugin", p.spec.Name, "reason", ae.Reason,
				"method", r.Method, "path", r.URL.Path, "remote_addr", r.RemoteAddr)
		default:
			c.decisions.WithLabelValues(p.spec.Name, "error").Inc()
			c.errs.WithLabelValues(p.spec.Name).Inc()
			c.opts.Logger.Error("authenticator failed; answering 401", "plugin", p.spec.Name, "err", err,
				"method", r.Method, "path", r.URL.Path, "remote_addr", r.RemoteAddr)
		}
		return nil, err
	}
	return nil, api.ErrNoCredentials
}

// ask calls one plugin: a subject (authenticated), nil and nil (not_mine),
// or an *AuthError.
func (c *AuthChain) ask(parent context.Context, p *Plugin, in *pb.AuthenticateRequest) (sub *api.Subject, err error) {
	parent, span := p.startAuthCall(parent)
	defer func() { endAuthCall(span, sub, err) }()
	ctx, cancel := context.WithTimeout(parent, c.opts.Timeout)
	defer cancel()
	fail := func(kind string, err error) error {
		return &AuthError{Plugin: p.spec.Name, Kind: kind, Reason: err.Error(), Err: err}
	}
	ctxFail := func(doing string) error {
		// gRPC's own timer may end the call a moment before ctx reports it.
		if parent.Err() == nil && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
			return fail("timeout", fmt.Errorf("no answer within %s while %s", c.opts.Timeout, doing))
		}
		return fail("error", fmt.Errorf("request ended while %s: %w", doing, context.Cause(ctx)))
	}
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return nil, ctxFail("waiting for a free call slot")
	}
	inst, err := p.instance(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxFail("waiting for the plugin to restart")
		}
		return nil, fail("error", err)
	}
	resp, err := inst.auth.Authenticate(ctx, in)
	if err != nil {
		if ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
			return nil, ctxFail("authenticating")
		}
		code := status.Code(err)
		if code == codes.Unavailable || code == codes.Canceled || inst.client.Exited() {
			p.reportCrash(inst)
			return nil, fail("crashed", fmt.Errorf("the plugin process died during the call: %w", err))
		}
		return nil, fail("error", err)
	}
	switch o := resp.Outcome.(type) {
	case *pb.AuthenticateResponse_NotMine:
		return nil, nil
	case *pb.AuthenticateResponse_Rejected:
		return nil, &AuthError{Plugin: p.spec.Name, Kind: "rejected", Reason: o.Rejected.GetReason()}
	case *pb.AuthenticateResponse_Authenticated:
		a := o.Authenticated
		if a == nil || a.SubjectId == "" {
			return nil, fail("error", errors.New("authenticated without a subject id"))
		}
		claims := json.RawMessage(a.ClaimsJson)
		if len(claims) == 0 {
			claims = json.RawMessage("{}")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(claims, &obj); err != nil || obj == nil {
			return nil, fail("error", errors.New("authenticated with claims that are not a JSON object"))
		}
		roles := a.Roles
		if roles == nil {
			roles = []string{}
		}
		return &api.Subject{ID: a.SubjectId, Roles: roles, Claims: claims}, nil
	default:
		return nil, fail("error", errors.New("answered with no outcome"))
	}
}
