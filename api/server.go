package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/cluster"
)

// DefaultMaxBody bounds a request body (max_body in taskerd.hcl).
const DefaultMaxBody = 1 << 20

// DefaultStoreTimeout is how long a request's database calls may take
// together (db_timeout in taskerd.hcl, --db-timeout) before it answers 503.
const DefaultStoreTimeout = 5 * time.Second

// Config configures a Server. Engine is required; Authenticator and
// Authorizer are required too: pass NoAuth{} for both, explicitly, to run
// open.
type Config struct {
	Engine        *engine.Engine
	Authenticator Authenticator
	Authorizer    Authorizer
	Logger        *slog.Logger
	// MaxBody bounds request bodies (default DefaultMaxBody).
	MaxBody int64
	// StoreTimeout is the deadline of a request's work once it is
	// authenticated, its database calls included (default
	// DefaultStoreTimeout): a database that does not answer by then makes
	// the request a 503 unavailable, instead of a request that hangs. The
	// public health checks keep their own deadline (2 s).
	StoreTimeout time.Duration
	// Ready reports whether the node can serve: nil, or the failed check.
	// /health/ready calls it with a 2 s deadline. Nil means the default
	// checks: the store's Stats answer, its schema is this binary's
	// (SchemaChecker) and it can write (WriteChecker).
	Ready func(ctx context.Context) error
	// Metrics, when set, is where the server registers and serves its
	// metrics; nil creates a fresh registry.
	Metrics *Metrics
	// Clock defaults to the real time.
	Now func() time.Time

	// Hub wakes the event streams (GET /v1/events) when the event log
	// grows: the node's *eventlog.Hub, which it runs (Hub.Run) and told of
	// its own writes (Hub.Notify). Nil: each stream polls the log every
	// DefaultStreamPoll.
	Hub EventNotifier
	// MaxStreams bounds the event streams open at once on this server
	// (default DefaultMaxStreams); one more is a 503.
	MaxStreams int
	// StreamHeartbeat is the interval of a stream's ": ping" comment lines
	// (default DefaultStreamHeartbeat).
	StreamHeartbeat time.Duration
	// StreamRecheck is how often a stream authenticates its request's
	// credentials again and forgets the policy's decisions (default
	// DefaultStreamRecheck): a revoked key or a changed policy takes
	// effect on open streams within it.
	StreamRecheck time.Duration
	// NodeDeadAfter is how long a node may go unseen before GET /v1/nodes
	// calls it dead: the node's cluster DeadAfter (default: three
	// heartbeats of cluster.DefaultHeartbeat).
	NodeDeadAfter time.Duration
	// TracerProvider, when set, traces each request (a server span named
	// after its route, child of the caller's traceparent) and each task
	// created (docs/tracing.md). Nil (the default) traces nothing, at no
	// cost.
	TracerProvider trace.TracerProvider
	// Scheduler, when set, is woken when a schedule is paused, resumed or
	// triggered here, so that it looks at once (nil: it notices at its
	// next pass).
	Scheduler interface{ Wake() }

	// GraphQL, when set, builds the handler of GET and POST /v1/graphql
	// from the REST API itself (graphql.New in package api/graphql, which
	// calls the REST routes in process); the routes are behind the same
	// authentication as every other. Nil: no GraphQL endpoint.
	GraphQL func(rest InProcess) http.Handler
}

// InProcess is the REST API as the GraphQL endpoint calls it in process:
// its routes, and BatchGET for nested lists.
type InProcess interface {
	http.Handler
	BatchGET(r *http.Request, route string, query url.Values, taskIDs []int64) map[int64]Answer
}

// Server is the HTTP API of one taskerd node.
type Server struct {
	eng     *engine.Engine
	store   backends.Store
	authn   Authenticator
	authz   Authorizer
	log     *slog.Logger
	maxBody int64
	timeout time.Duration
	ready   func(ctx context.Context) error
	metrics *Metrics
	now     func() time.Time
	started time.Time
	tracer  trace.Tracer // nil: tracing off
	sched   interface{ Wake() }

	nodeDeadAfter time.Duration

	mux    *http.ServeMux
	routes []route
	reqSeq atomic.Uint64

	streams *streamLimits
}

// route is one endpoint. Public routes skip authentication (the liveness
// and readiness checks, and the OpenAPI document).
type route struct {
	method  string
	pattern string // net/http pattern path, e.g. /v1/tasks/{id}
	public  bool
	// stream: a long-lived response (an event stream), which bounds each
	// of its database calls itself rather than the whole request.
	stream bool
	handle func(w http.ResponseWriter, r *http.Request) error
}

// New returns a server; it starts nothing (use Handler with an
// http.Server).
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("api: Config.Engine is required")
	}
	if cfg.Authenticator == nil || cfg.Authorizer == nil {
		return nil, errors.New("api: Config.Authenticator and Config.Authorizer are required (NoAuth{} runs open)")
	}
	s := &Server{
		eng:     cfg.Engine,
		store:   cfg.Engine.Store(),
		authn:   cfg.Authenticator,
		authz:   cfg.Authorizer,
		log:     cfg.Logger,
		maxBody: cfg.MaxBody,
		timeout: cfg.StoreTimeout,
		ready:   cfg.Ready,
		metrics: cfg.Metrics,
		now:     cfg.Now,
		mux:     http.NewServeMux(),
		sched:   cfg.Scheduler,

		nodeDeadAfter: cfg.NodeDeadAfter,
	}
	if s.nodeDeadAfter <= 0 {
		s.nodeDeadAfter = cluster.DeadHeartbeats * cluster.DefaultHeartbeat
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.timeout <= 0 {
		s.timeout = DefaultStoreTimeout
	}
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC() }
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	eng := cfg.Engine
	if err := s.metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "taskerd_events_dropped_total",
		Help: "Events an in-process subscriber (metrics, log lines, taskerd run's progress) could not take in time; the event log itself loses nothing.",
	}, func() float64 { return float64(eng.DroppedEvents()) })); err != nil {
		return nil, fmt.Errorf("registering the dropped-events counter: %w", err)
	}
	s.streams = newStreamLimits(cfg)
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	s.started = s.now()
	s.registerRoutes()
	if cfg.GraphQL != nil {
		gql := cfg.GraphQL(s)
		serve := func(w http.ResponseWriter, r *http.Request) error {
			gql.ServeHTTP(w, r)
			return nil
		}
		// GET also upgrades to WebSocket for subscriptions: a stream, not
		// under the store deadline (each field's REST call has its own).
		s.handleStream("GET", "/v1/graphql", serve)
		s.handle("POST", "/v1/graphql", false, serve)
	}
	return s, nil
}

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// ServeHTTP serves every route (as Handler does).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Metrics is the server's metrics registry.
func (s *Server) Metrics() *Metrics { return s.metrics }

func (s *Server) handle(method, pattern string, public bool, h func(w http.ResponseWriter, r *http.Request) error) {
	s.addRoute(route{method: method, pattern: pattern, public: public, handle: h})
}

// handleStream adds a route that streams its response (authenticated).
func (s *Server) handleStream(method, pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	s.addRoute(route{method: method, pattern: pattern, stream: true, handle: h})
}

func (s *Server) addRoute(rt route) {
	s.routes = append(s.routes, rt)
	s.mux.Handle(rt.method+" "+rt.pattern, s.chain(rt))
}

// Routes lists "METHOD /path" of every endpoint, for the OpenAPI check.
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i, rt := range s.routes {
		out[i] = rt.method + " " + rt.pattern
	}
	return out
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidRequestID reports whether a client-chosen X-Request-Id is kept (1 to
// 64 letters, digits, '.', '_' or '-'); the server replaces any other.
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

// chain wraps a route: request id, recover, access log and metrics, body
// limit, authentication, then the route (which authorizes) under the
// store deadline (public routes, the health checks, keep their own).
func (s *Server) chain(rt route) http.Handler {
	name := rt.method + " " + rt.pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !ValidRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		ctx, span := s.startRequestSpan(ctx, r, rt, id)
		r = r.WithContext(ctx)
		// Deferred first, so run last: after the status is known, even if
		// the handler's panic is passed on.
		defer func() { endRequestSpan(span, sw.code()) }()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(ctx, "panic serving request", "request_id", id, "route", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !sw.wrote {
					writeError(sw, errorf(http.StatusInternalServerError, CodeInternal, "internal error; see the server log for request id %s", id))
				}
			}
			took := time.Since(start)
			s.metrics.observeHTTP(name, sw.code(), took)
			s.log.InfoContext(ctx, "request", "request_id", id, "method", r.Method, "route", name, "path", r.URL.Path,
				"status", sw.code(), "took", took.Round(time.Microsecond), "remote", r.RemoteAddr)
		}()
		if r.Body != nil {
			r.Body = http.MaxBytesReader(sw, r.Body, s.maxBody)
		}
		if !rt.public {
			subject, err := s.authenticateOnce(r)
			if errors.Is(err, backends.ErrUnavailable) {
				// The database could not say whether an API key is valid:
				// refused, as a store outage is everywhere else (503).
				s.log.WarnContext(ctx, "authentication failed: database unavailable", "request_id", id, "route", name, "err", err)
				writeError(sw, errorf(http.StatusServiceUnavailable, CodeUnavailable, "the database is unavailable; retry later"))
				return
			}
			if err != nil || subject == nil {
				s.log.InfoContext(ctx, "authentication failed", "request_id", id, "route", name, "err", err)
				writeError(sw, errorf(http.StatusUnauthorized, CodeUnauthorized, "authentication required"))
				return
			}
			r = r.WithContext(withSubject(r.Context(), subject))
		}
		if !rt.public && !rt.stream {
			// Every store call of the route runs under this deadline: a
			// database that is cut or frozen makes the request a 503, not
			// a request that hangs. (Authentication, before it, has its
			// own; so have the public health checks.)
			ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
			defer cancel()
			// The routes this one calls in process while it lasts (the
			// GraphQL endpoint's) are its subject's: authenticated once.
			ctx = context.WithValue(ctx, authenticatedKey{}, s)
			r = r.WithContext(ctx)
		}
		if err := rt.handle(sw, r); err != nil {
			e := fromError(err)
			switch {
			case e.Status == http.StatusServiceUnavailable:
				s.log.WarnContext(ctx, "request failed: database unavailable", "request_id", id, "route", name, "err", err)
			case e.Status >= 500:
				s.log.ErrorContext(ctx, "request failed", "request_id", id, "route", name, "err", err)
			}
			writeError(sw, e)
		}
	})
}

// authorize asks the Authorizer; an error or a missing allow is a 403.
func (s *Server) authorize(r *http.Request, action string, res Resource) error {
	req := &AuthzRequest{Subject: SubjectFrom(r.Context()), Action: action, Resource: res, Request: r}
	d, err := s.authz.Authorize(r.Context(), req)
	if err != nil {
		s.log.WarnContext(r.Context(), "authorization failed; denying", "request_id", RequestID(r.Context()), "action", action, "err", err)
		return errorf(http.StatusForbidden, CodeForbidden, "%s is not allowed", action)
	}
	if !d.Allow {
		e := errorf(http.StatusForbidden, CodeForbidden, "%s is not allowed", action)
		if len(d.Reasons) > 0 {
			e.Details = map[string]any{"reasons": d.Reasons}
		}
		return e
	}
	return nil
}

type requestIDKey struct{}

// RequestID is the id of the request a context belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.status
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// pathID reads an id path value; ids may be sent as strings of digits.
func pathID(r *http.Request, name string) (int64, error) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("%s %q is not a positive integer id", name, v)
	}
	return id, nil
}
