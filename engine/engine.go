// Package engine runs workflows: it creates tasks, claims ready steps,
// executes their handlers on a pool of workers, records each result with its
// finalize decision, heartbeats and recovers leases, carries out operator
// actions and emits events (SEMANTICS §5 and §6).
//
// The engine holds no state that matters: every decision is the store's, in
// one transaction, and the engine only reacts to what the store answered. A
// process killed at any instant loses nothing acknowledged; the leases of the
// steps it was running expire and another node (or this one, restarted)
// recovers them.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// Defaults for Config.
const (
	DefaultWorkers       = 16
	DefaultLeaseDuration = 30 * time.Second
	DefaultShutdownGrace = 10 * time.Second
	DefaultSafetyPoll    = 5 * time.Second
	DefaultRecoverBatch  = 100
)

// Config configures an Engine. Store and Catalog are required.
type Config struct {
	Store   backends.Store
	Catalog *definition.Catalog
	// Registry holds the handlers steps name. Nil means an empty registry
	// (register built-ins with builtin.Register).
	Registry *Registry
	// Workers is how many steps this node executes at once (default 16).
	Workers int
	// ClaimAhead is how many claimed steps may wait for a free worker
	// (default: Workers; negative: none). A worker that finishes then starts
	// the next step at once instead of waiting for the claim loop's next
	// round trip to the store, which on PostgreSQL was a third of each
	// step's time. Waiting steps hold their leases (heartbeats extend them);
	// their timeout starts with their handler; at shutdown they still start
	// within ShutdownGrace as workers free up.
	ClaimAhead int
	// LeaseDuration is how long a claim lives without a heartbeat (default
	// 30s); heartbeats run every LeaseDuration/3.
	LeaseDuration time.Duration
	// NodeID names this node as the owner of its leases (default
	// hostname-pid).
	NodeID string
	// Clock defaults to RealClock.
	Clock  Clock
	Logger *slog.Logger
	// ShutdownGrace is how long Run waits for running handlers once its
	// context is done (default 10s). Steps still running then are abandoned:
	// their results are not recorded and their leases expire.
	ShutdownGrace time.Duration
	// SafetyPoll bounds an idle wait even when the store promises nothing
	// (another node may have created work): default 5s.
	SafetyPoll time.Duration
	// RecoverBatch is how many expired leases one recovery pass handles
	// (default 100).
	RecoverBatch int
	// Leader, when set, says whether this node leads its cluster: only the
	// leader recovers expired leases (internal/cluster). Nil: this node
	// always does, as a node alone does. A node's own shutdown still
	// recovers the leases it gives back, leader or not.
	Leader func() bool
	// Events, when set, hears of the events this node's writes commit (its
	// readers then read the log); nil for none.
	Events *eventlog.Hub
	// TracerProvider, when set, traces each step attempt: a span "step
	// NAME", child of its task's span, around the handler (docs/tracing.md).
	// Nil (the default) traces nothing, at no cost.
	TracerProvider trace.TracerProvider
}

// Engine is one node's orchestrator. Its methods are safe for concurrent
// use; Run runs at most once at a time.
type Engine struct {
	store      backends.Store
	catalog    atomic.Pointer[definition.Catalog]
	registry   *Registry
	clock      Clock
	log        *slog.Logger
	nodeID     string
	workers    int
	claimAhead int
	slots      chan struct{} // one per worker running a handler
	lease      time.Duration
	grace      time.Duration
	poll       time.Duration
	recoverN   int
	leader     func() bool  // nil: always
	tracer     trace.Tracer // nil: tracing off

	bus  *bus
	hub  *eventlog.Hub
	wake chan struct{}

	// gate orders claims with the writes that may make steps ready: their
	// events, and a claimed step's start after its parents' end.
	gate *gate

	// The claim loop's last NextWakeup answer (see nextWakeup), and whether
	// this node recorded something since that may move it earlier.
	wakeKnown bool
	wakeNext  *time.Time
	wakeDirty atomic.Bool

	mu      sync.Mutex
	running map[int64]*execution // by step id, while this node runs it
	active  bool                 // Run is running
}

// New returns an engine. It does not start any goroutine: call Run.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("engine: Config.Store is required")
	}
	if cfg.Catalog == nil {
		return nil, errors.New("engine: Config.Catalog is required")
	}
	e := &Engine{
		store:    cfg.Store,
		registry: cfg.Registry,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		nodeID:   cfg.NodeID,
		workers:  cfg.Workers,
		lease:    cfg.LeaseDuration,
		grace:    cfg.ShutdownGrace,
		poll:     cfg.SafetyPoll,
		recoverN: cfg.RecoverBatch,
		leader:   cfg.Leader,
		bus:      newBus(),
		hub:      cfg.Events,
		gate:     newGate(),
		wake:     make(chan struct{}, 1),
		running:  map[int64]*execution{},
	}
	if e.registry == nil {
		e.registry = NewRegistry()
	}
	if cfg.TracerProvider != nil {
		e.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if e.clock == nil {
		e.clock = RealClock{}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.nodeID == "" {
		host, _ := os.Hostname()
		e.nodeID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if e.workers <= 0 {
		e.workers = DefaultWorkers
	}
	e.slots = make(chan struct{}, e.workers)
	switch {
	case cfg.ClaimAhead < 0:
		e.claimAhead = 0
	case cfg.ClaimAhead == 0:
		e.claimAhead = e.workers
	default:
		e.claimAhead = cfg.ClaimAhead
	}
	if e.lease <= 0 {
		e.lease = DefaultLeaseDuration
	}
	if e.grace < 0 {
		e.grace = 0
	} else if cfg.ShutdownGrace == 0 {
		e.grace = DefaultShutdownGrace
	}
	if e.poll <= 0 {
		e.poll = DefaultSafetyPoll
	}
	if e.recoverN <= 0 {
		e.recoverN = DefaultRecoverBatch
	}
	e.catalog.Store(cfg.Catalog)
	return e, nil
}

// Store returns the engine's store (for reads: tasks, steps, readiness).
func (e *Engine) Store() backends.Store { return e.store }

// Catalog returns the workflows the engine knows.
func (e *Engine) Catalog() *definition.Catalog { return e.catalog.Load() }

// SetCatalog replaces the loaded workflows (a reload). Tasks already
// created keep running: their steps live in the database, not in the
// catalog; new tasks use the new set, and the next claims its workflows'
// concurrency limits.
func (e *Engine) SetCatalog(c *definition.Catalog) {
	if c != nil {
		e.catalog.Store(c)
	}
}

// Registry returns the handler registry.
func (e *Engine) Registry() *Registry { return e.registry }

// NodeID is the owner name of this node's leases.
func (e *Engine) NodeID() string { return e.nodeID }

// Subscribe returns a channel of every event from now on, buffered to
// bufferSize, and a function that ends the subscription (and closes the
// channel). A subscriber that falls behind loses events rather than slowing
// the engine: see DroppedEvents.
func (e *Engine) Subscribe(bufferSize int) (<-chan Event, func()) { return e.bus.subscribe(bufferSize) }

// DroppedEvents counts the events dropped, over all subscribers, because a
// subscriber's buffer was full.
func (e *Engine) DroppedEvents() int64 { return e.bus.dropped.Load() }

// Wake makes an idle Run look for work at once. Operations of this engine
// wake it themselves; call Wake when something else (another process on the
// same database) is known to have made work.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) now() time.Time { return e.clock.Now() }

// publish hands committed events to the in-process subscribers (the hub
// has them already: collect).
func (e *Engine) publish(events ...Event) {
	e.bus.publish(events...)
}
