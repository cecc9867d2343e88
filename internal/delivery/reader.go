// Package delivery sends the database's event log to places outside
// taskerd: webhooks (HTTP POSTs signed with a shared secret) and the NATS
// JetStream bus. Both are durable readers of the log (backends.EventStore):
// each keeps its position in a cursor stored in the database, so that a
// restart or a crash neither loses nor reorders an event, and on a
// PostgreSQL database shared by several nodes the node holding the cursor's
// lease is the only one that delivers.
//
// It exists as its own package because the loop that does this (take the
// lease, read after the cursor, filter, deliver in order, retry with
// backoff, give up into a dead letter, advance) is the same for every
// destination, and serve, the CLI (taskerd webhooks) and the tests all need
// it without the API or the engine.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// Sink delivers one event to its destination.
type Sink interface {
	// Deliver sends ev, whose JSON form is body. An error is a failed
	// attempt: the reader tries again later. It must return when ctx ends.
	Deliver(ctx context.Context, ev *backends.Event, body []byte) error
}

// Defaults of Options.
const (
	DefaultLease       = 15 * time.Second
	DefaultMaxAttempts = 10
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 5 * time.Minute
	// DefaultBatch is how many events a reader reads at a time.
	DefaultBatch      = 100
	DefaultFlushEvery = time.Second
	DefaultFlushIdle  = 100 * time.Millisecond
)

// Options configure a Reader.
type Options struct {
	// Cursor names the reader's cursor in the database ("webhook:NAME",
	// "nats").
	Cursor string
	// Owner is this node's id: the cursor's lease holder while it delivers.
	Owner string
	Store backends.EventStore
	// Hub says when the log grew.
	Hub  *eventlog.Hub
	Sink Sink

	// Events are event-type patterns (backends.MatchEventType; none for
	// every event) and Namespaces the tasks' namespaces (none for every
	// one): the events that match both are delivered, the others skipped.
	Events     []string
	Namespaces []string
	// FromBeginning starts a cursor that does not exist yet at the log's
	// start; otherwise it starts at the log's end (only what happens from
	// now on is delivered).
	FromBeginning bool

	// MaxAttempts is how many times an event is tried before it goes to the
	// dead letters (DefaultMaxAttempts when 0).
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait between attempts:
	// min(base*2^(n-1), max) after the nth failure, less up to half of it at
	// random (DefaultBackoffBase, DefaultBackoffMax when 0).
	BackoffBase, BackoffMax time.Duration
	// Lease is how long the cursor's lease lasts without renewal
	// (DefaultLease when 0); it is renewed every third of it. It is raised
	// to twice AttemptTimeout when shorter, so that an attempt never
	// outlives the lease it started under.
	Lease          time.Duration
	AttemptTimeout time.Duration
	// FlushEvery bounds how long the reader delivers without writing its
	// cursor while the log keeps growing, FlushIdle the quiet after which
	// it writes it (DefaultFlushEvery, DefaultFlushIdle when 0).
	FlushEvery, FlushIdle time.Duration

	Logger  *slog.Logger
	Metrics *Metrics
}

// Reader follows the event log for one sink. Run it once per node; the
// cursor's lease makes sure only one node delivers at a time.
type Reader struct {
	o          Options
	renewEvery time.Duration
	log        *slog.Logger

	// held: this node holds the lease (since renewed).
	held    bool
	renewed time.Time
	// stored is the cursor's Seq in the database as this reader last wrote
	// or read it; pos is how far it has handled the log (pos >= stored:
	// skipped events are written with the next delivery or batch).
	stored, pos int64
	// storedAt is when stored was last written.
	storedAt time.Time
}

var (
	errLeaseLost    = errors.New("the cursor's lease was lost to another node")
	errRepositioned = errors.New("the cursor was moved (taskerd webhooks replay)")
)

// NewReader checks o and applies its defaults.
func NewReader(o Options) (*Reader, error) {
	if o.Cursor == "" || o.Owner == "" || o.Store == nil || o.Hub == nil || o.Sink == nil {
		return nil, errors.New("delivery: a reader needs a cursor name, an owner, a store, a hub and a sink")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffBase)
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	o.Lease = max(o.Lease, 2*o.AttemptTimeout)
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.FlushIdle <= 0 {
		o.FlushIdle = DefaultFlushIdle
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reader{o: o, renewEvery: o.Lease / 3, log: o.Logger.With("sink", o.Cursor)}, nil
}

// Cursor is the reader's cursor name.
func (r *Reader) Cursor() string { return r.o.Cursor }

// Run delivers until ctx ends; it returns ctx's error. Failures of the
// database are logged and retried: a reader never gives up.
func (r *Reader) Run(ctx context.Context) error {
	pause := 0
	for {
		err := r.acquire(ctx)
		if err == nil {
			err = r.follow(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.held = false
		var wait time.Duration
		switch {
		case errors.Is(err, errLeaseLost):
			r.log.Warn("event delivery: lease lost; another node delivers now", "owner", r.o.Owner)
			pause = 0
		case errors.Is(err, errRepositioned):
			r.log.Info("event delivery: cursor moved by an operator; delivering from its new position")
			pause = 0
		default:
			// The database failed: try again, more slowly each time.
			wait = backends.Backoff(100*time.Millisecond, r.renewEvery, pause)
			pause++
			r.log.Warn("event delivery: database error; retrying", "err", err, "in", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// acquire waits until this node holds the cursor's lease, and reads the
// cursor's position.
func (r *Reader) acquire(ctx context.Context) error {
	standby := false
	for {
		var start int64
		if !r.o.FromBeginning {
			// Only used when this call creates the cursor: a new sink
			// starts at the log's end.
			var err error
			if start, err = r.o.Store.LastEventSeq(ctx); err != nil {
				return err
			}
		}
		now := time.Now()
		c, ok, err := r.o.Store.AcquireCursor(ctx, &backends.AcquireCursorParams{
			Name: r.o.Cursor, Owner: r.o.Owner, Start: start, Lease: r.o.Lease, Now: now,
		})
		if err != nil {
			return err
		}
		if ok {
			r.held, r.renewed, r.stored, r.pos, r.storedAt = true, now, c.Seq, c.Seq, now
			r.log.Info("event delivery: delivering", "owner", r.o.Owner, "after_seq", c.Seq)
			return nil
		}
		if !standby {
			r.log.Info("event delivery: another node holds the cursor; standing by", "holder", c.Owner)
			standby = true
		}
		if err := sleep(ctx, r.renewEvery); err != nil {
			return err
		}
	}
}

// renew renews the lease when a third of it has passed. It notices a lease
// taken by another node (errLeaseLost) and a cursor an operator moved
// (errRepositioned).
func (r *Reader) renew(ctx context.Context) error {
	if time.Since(r.renewed) < r.renewEvery {
		return nil
	}
	now := time.Now()
	c, ok, err := r.o.Store.AcquireCursor(ctx, &backends.AcquireCursorParams{
		Name: r.o.Cursor, Owner: r.o.Owner, Start: r.stored, Lease: r.o.Lease, Now: now,
	})
	switch {
	case err != nil:
		return err
	case !ok:
		return errLeaseLost
	case c.Seq != r.stored:
		return errRepositioned
	}
	r.renewed = now
	return nil
}

// follow delivers the log from the cursor on, until it fails or ctx ends.
// What it delivered is written to the cursor at most every FlushEvery while
// the log keeps growing, once it has been quiet for FlushIdle, and once
// more when it stops: a busy log costs a cursor write a second, not one
// per event or per batch (a reader that keeps up reads a batch per commit,
// so that would be a write per write). A crash redelivers at most what was
// delivered since the last cursor write.
func (r *Reader) follow(ctx context.Context) (err error) {
	defer func() {
		if r.pos > r.stored && !errors.Is(err, errLeaseLost) && !errors.Is(err, errRepositioned) {
			if ferr := r.flush(ctx); ferr != nil {
				r.log.Warn("event delivery: recording the cursor on the way out", "seq", r.pos, "err", ferr)
			}
		}
	}()
	for {
		if err := r.renew(ctx); err != nil {
			return err
		}
		// Wait for events no longer than the lease allows, nor, with
		// deliveries not yet recorded, than the quiet that records them.
		wait := r.renewEvery
		if r.pos > r.stored {
			wait = min(wait, r.o.FlushIdle)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		events, err := r.o.Hub.Next(wctx, backends.EventQuery{After: r.pos, Limit: DefaultBatch})
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if wctx.Err() != nil {
				// Nothing new: record what was delivered, renew and wait
				// again.
				if err := r.flush(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		for _, ev := range events {
			if ev.Seq <= r.pos {
				continue
			}
			if !r.wanted(ev) {
				r.pos = ev.Seq
				continue
			}
			if err := r.deliver(ctx, ev); err != nil {
				return err
			}
		}
		// The delivered and skipped events, once a second while busy.
		if time.Since(r.storedAt) >= r.o.FlushEvery {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
		r.o.Metrics.lag(r.o.Cursor, r.o.Hub.Last()-r.pos)
	}
}

// wanted says whether ev passes the sink's filters.
func (r *Reader) wanted(ev *backends.Event) bool {
	if len(r.o.Namespaces) > 0 && !slices.Contains(r.o.Namespaces, ev.Namespace) {
		return false
	}
	return backends.MatchEventType(r.o.Events, ev.Type)
}

// deliver tries ev until it is delivered or its attempts run out (then it
// is a dead letter), and moves the reader's position past it. Later events
// wait: that is the price of delivering in order.
func (r *Reader) deliver(ctx context.Context, ev *backends.Event) error {
	body, err := ev.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding event %d: %w", ev.Seq, err)
	}
	for attempt := 1; ; attempt++ {
		if err := r.renew(ctx); err != nil {
			return err
		}
		err := r.o.Sink.Deliver(ctx, ev, body)
		if err == nil {
			r.o.Metrics.delivered(r.o.Cursor)
			r.pos = ev.Seq
			if time.Since(r.storedAt) >= r.o.FlushEvery {
				return r.flush(ctx)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.o.Metrics.failed(r.o.Cursor)
		if attempt >= r.o.MaxAttempts {
			r.log.Error("event delivery: giving up on an event; it is a dead letter", "seq", ev.Seq, "type", ev.Type,
				"task_id", ev.TaskID, "attempts", attempt, "err", err)
			if err := r.renew(ctx); err != nil {
				return err
			}
			if err := r.o.Store.AddDeadLetter(ctx, &backends.DeadLetter{
				Cursor: r.o.Cursor, Seq: ev.Seq, Attempts: attempt, LastError: err.Error(), CreatedAt: time.Now().UTC(),
			}); err != nil {
				return err
			}
			r.o.Metrics.deadLetter(r.o.Cursor)
			r.pos = ev.Seq
			return r.flush(ctx)
		}
		wait := r.backoff(attempt)
		r.log.Warn("event delivery failed; retrying", "seq", ev.Seq, "type", ev.Type, "task_id", ev.TaskID,
			"attempt", attempt, "max_attempts", r.o.MaxAttempts, "in", wait, "err", err)
		if err := r.sleepRenewing(ctx, wait); err != nil {
			return err
		}
	}
}

// backoff is the wait after the nth failed attempt: min(base*2^(n-1), max),
// less up to half of it at random so that receivers recovering from an
// outage are not hit by every sender at once.
func (r *Reader) backoff(n int) time.Duration {
	d := backends.Backoff(r.o.BackoffBase, r.o.BackoffMax, n-1)
	if half := int64(d / 2); half > 0 {
		d -= time.Duration(rand.Int64N(half + 1))
	}
	return d
}

// flush writes the reader's position to its cursor when it moved, even
// when serve is stopping (ctx done): an event delivered and not recorded
// would be delivered again after the restart.
func (r *Reader) flush(ctx context.Context) error {
	if r.pos <= r.stored {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return r.advance(fctx, r.pos)
}

// advance writes the cursor at seq, fenced by the lease.
func (r *Reader) advance(ctx context.Context, seq int64) error {
	err := r.o.Store.AdvanceCursor(ctx, r.o.Cursor, r.o.Owner, seq, time.Now())
	if errors.Is(err, backends.ErrLeaseLost) {
		return errLeaseLost
	}
	if err != nil {
		return err
	}
	r.stored, r.pos, r.storedAt = seq, seq, time.Now()
	return nil
}

// sleepRenewing waits d, renewing the lease on the way.
func (r *Reader) sleepRenewing(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		if err := sleep(ctx, min(left, r.renewEvery)); err != nil {
			return err
		}
		if err := r.renew(ctx); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
