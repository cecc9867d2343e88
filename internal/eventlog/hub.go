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
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// DefaultPoll is how often a Hub looks for events other nodes wrote.
const DefaultPoll = 500 * time.Millisecond

// Hub announces that the event log grew. This node's writes announce
// themselves (Notify, as they commit); the writes of other nodes sharing
// the database are found by polling the log's end (Run).
type Hub struct {
	store backends.EventStore
	poll  time.Duration

	mu   sync.Mutex
	last int64
	ch   chan struct{}
}

// NewHub returns a hub over store that polls every poll (DefaultPoll when
// 0) once Run.
func NewHub(store backends.EventStore, poll time.Duration) *Hub {
	if poll <= 0 {
		poll = DefaultPoll
	}
	return &Hub{store: store, poll: poll, ch: make(chan struct{})}
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
		events, err := h.store.ListEvents(ctx, &q)
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
