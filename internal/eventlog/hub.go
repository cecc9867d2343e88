// Package eventlog follows the database's event log for the readers that
// deliver it (webhooks, the NATS bus, Server-Sent Events clients). The log
// itself lives in the store (backends.EventStore): every state change writes
// its events in its own transaction, numbered in commit order. What a
// reader needs besides is to know when to read again without polling the
// database in a tight loop; a Hub tells it. It is its own package because
// the engine (which announces its own writes), the API and the delivery
// workers all use it, and none of them should depend on another for it.
package eventlog

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// DefaultPoll is how often a Hub looks for events other nodes wrote.
const DefaultPoll = 500 * time.Millisecond

// The tail's bounds: at most TailSize of this node's latest events, at
// most TailBytes of them (an event's size is about its JSON's), and none
// larger than TailEventBytes (a step's results may be megabytes: readers
// read such an event from the store). An edge node's memory holds the
// tail whatever its steps return.
const (
	TailSize       = 4096
	TailBytes      = 4 << 20
	TailEventBytes = 64 << 10
)

// Hub announces that the event log grew, and serves the readers' reads of
// its newest part. This node's writes announce themselves (Publish, as they
// commit); the writes of other nodes sharing the database are found by
// polling the log's end (Run).
//
// The events this node published are kept in a tail (the last ones, by
// seq, within the bounds above), so that readers that keep up (the usual case: a webhook, a stream
// client, each woken by every commit) read them from memory instead of
// each running a query per commit. A read is served from the tail only
// where it holds every seq in turn; at the first one it lacks (written by
// another node, or not yet published by a concurrent commit of this one,
// or long gone from the tail) the rest comes from the store. Events in the
// tail are shared by every reader: nobody may change them.
type Hub struct {
	store backends.EventStore
	poll  time.Duration

	mu   sync.Mutex
	last int64
	ch   chan struct{}
	tail [TailSize]tailSlot // by seq % TailSize
	// tailBytes is the size of the events in tail; oldest is where
	// eviction looks next (no event below it is kept).
	tailBytes int
	oldest    int64
	// synced: last has been read from the store at least once.
	synced atomic.Bool
}

// NewHub returns a hub over store that polls every poll (DefaultPoll when
// 0) once Run.
func NewHub(store backends.EventStore, poll time.Duration) *Hub {
	if poll <= 0 {
		poll = DefaultPoll
	}
	return &Hub{store: store, poll: poll, ch: make(chan struct{})}
}

// tailSlot is one event kept in the tail, with its size.
type tailSlot struct {
	ev   *backends.Event
	size int
}

// eventSize approximates ev's size in memory by what it holds of variable
// length.
func eventSize(ev *backends.Event) int {
	n := 256 + len(ev.Results) + len(ev.Payload) + len(ev.Namespace) + len(ev.Workflow) + len(ev.StepName) + len(ev.Handler)
	if ev.Error != nil {
		n += len(ev.Error.Message)
	}
	for _, name := range ev.StepNames {
		n += len(name)
	}
	return n
}

// Publish keeps committed events (with their Seq) in the tail and
// announces them (Notify).
func (h *Hub) Publish(events []*backends.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	last := h.last
	for _, ev := range events {
		last = max(last, ev.Seq)
		h.keep(ev)
	}
	h.mu.Unlock()
	h.Notify(last)
}

// keep puts ev in the tail, in place of whatever held its slot, and drops
// the oldest events while the tail is over TailBytes. An event too large to
// keep leaves its slot empty: readers read it from the store.
func (h *Hub) keep(ev *backends.Event) {
	slot := &h.tail[ev.Seq%TailSize]
	h.tailBytes -= slot.size
	*slot = tailSlot{}
	if h.oldest == 0 || ev.Seq < h.oldest {
		h.oldest = ev.Seq
	}
	if size := eventSize(ev); size <= TailEventBytes {
		*slot = tailSlot{ev: ev, size: size}
		h.tailBytes += size
	}
	for h.tailBytes > TailBytes {
		old := &h.tail[h.oldest%TailSize]
		if old.ev != nil && old.ev.Seq == h.oldest {
			h.tailBytes -= old.size
			*old = tailSlot{}
		}
		h.oldest++
	}
}

// ListEvents reads the log as backends.EventStore's ListEvents does: from
// the tail as far as it holds the events in turn, then from the store.
func (h *Hub) ListEvents(ctx context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	if !h.synced.Load() {
		// The tail knows nothing written before the hub was made: learn
		// where the log ends once (Run does too), so that a reader starting
		// behind it reads the older part from the store.
		seq, err := h.store.LastEventSeq(ctx)
		if err != nil {
			return nil, err
		}
		h.Notify(seq)
		h.synced.Store(true)
	}
	limit := q.LimitOrDefault()
	out, next, complete := h.fromTail(q, limit)
	if complete {
		return out, nil
	}
	rest := *q
	rest.After, rest.Limit = next-1, limit-len(out)
	more, err := h.store.ListEvents(ctx, &rest)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// fromTail collects the events q selects from the tail, from q.After+1 on
// while the tail holds each seq, up to limit. next is the first seq it did
// not look at; complete says nothing is left for the store to add: the
// limit was reached, or the tail held every seq up to the last one known.
func (h *Hub) fromTail(q *backends.EventQuery, limit int) (out []*backends.Event, next int64, complete bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next = q.After + 1
	for ; next <= h.last; next++ {
		ev := h.tail[next%TailSize].ev
		if ev == nil || ev.Seq != next {
			return out, next, false
		}
		if (q.TaskID == 0 || ev.TaskID == q.TaskID) &&
			(len(q.Namespaces) == 0 || slices.Contains(q.Namespaces, ev.Namespace)) {
			out = append(out, ev)
			if len(out) == limit {
				return out, next + 1, true
			}
		}
	}
	return out, next, true
}

// Notify says that events up to seq are committed. Readers waiting on
// Changed wake up when seq is past what the hub knew.
func (h *Hub) Notify(seq int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.last {
		return
	}
	h.last = seq
	close(h.ch)
	h.ch = make(chan struct{})
}

// Last is the highest seq the hub knows to be committed.
func (h *Hub) Last() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Changed returns a channel closed at the next Notify that moves Last. Take
// it before reading the log, then wait on it when the read found nothing:
// a change between the read and the wait is not missed.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ch
}

// Run polls the log's end until ctx ends, so that events other nodes wrote
// are announced too. A failed poll is retried at the next tick (the
// readers' own reads report the outage).
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		if seq, err := h.store.LastEventSeq(ctx); err == nil {
			h.Notify(seq)
			h.synced.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Next returns the events q selects (q.After is the reader's position),
// waiting until there is at least one or ctx ends. A reader loops on it,
// moving q.After to the last event's Seq.
func (h *Hub) Next(ctx context.Context, q backends.EventQuery) ([]*backends.Event, error) {
	for {
		changed := h.Changed()
		events, err := h.ListEvents(ctx, &q)
		if err != nil || len(events) > 0 {
			return events, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
