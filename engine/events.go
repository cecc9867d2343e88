package engine

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/taskerd/taskerd/backends"
)

// Event is one thing that happened to a task or a step (backends.Event:
// the stores write events in the transaction of the change they describe).
type Event = backends.Event

// EventType names an event (docs/events.md).
type EventType = backends.EventType

const (
	EventTaskInitializeRequested = backends.EventTaskInitializeRequested
	EventTaskStartRequested      = backends.EventTaskStartRequested
	EventTaskCompleted           = backends.EventTaskCompleted
	EventTaskFailed              = backends.EventTaskFailed
	EventTaskCancelled           = backends.EventTaskCancelled
	EventTaskResolvedManually    = backends.EventTaskResolvedManually
	EventTaskRetryRequested      = backends.EventTaskRetryRequested

	EventStepExecutionRequested = backends.EventStepExecutionRequested
	EventStepCompleted          = backends.EventStepCompleted
	EventStepFailed             = backends.EventStepFailed
	EventStepBackoff            = backends.EventStepBackoff
	EventStepRetryRequested     = backends.EventStepRetryRequested
	EventStepCancelled          = backends.EventStepCancelled
	EventStepResolvedManually   = backends.EventStepResolvedManually
	EventStepLeaseExpired       = backends.EventStepLeaseExpired

	EventViableStepsDiscovered = backends.EventViableStepsDiscovered
	EventTaskFinalized         = backends.EventTaskFinalized
)

// Backoff kinds of a step.backoff event.
const (
	BackoffExponential = backends.BackoffExponential
	BackoffRequested   = backends.BackoffRequested
)

// written collects the events a store call wrote: the store hands them to
// the sink of the call's context once committed (backends.WithEventSink).
type written struct {
	mu     sync.Mutex
	events []Event
}

// collect returns ctx with a sink that gathers into a new written, and
// hands the events to the hub as soon as they are committed: the log's
// readers go by seq, not by the order in which the gate publishes to
// subscribers (gate.go), and a claim's events held back there would
// otherwise be a gap in the hub's tail that sends every reader to the
// database.
func (e *Engine) collect(ctx context.Context) (context.Context, *written) {
	w := &written{}
	return backends.WithEventSink(ctx, func(evs []*backends.Event) {
		if e.hub != nil {
			e.hub.Publish(evs)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, ev := range evs {
			w.events = append(w.events, *ev)
		}
	}), w
}

// all returns what was collected, in Seq order.
func (w *written) all() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// bus fans events out to subscribers without ever blocking the publisher:
// each subscriber has a bounded channel, and an event that does not fit is
// dropped and counted.
type bus struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	dropped atomic.Int64
}

type subscriber struct {
	ch      chan Event
	dropped atomic.Int64
}

func newBus() *bus { return &bus{subs: map[*subscriber]struct{}{}} }

func (b *bus) subscribe(size int) (<-chan Event, func()) {
	if size < 1 {
		size = 1
	}
	s := &subscriber{ch: make(chan Event, size)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			close(s.ch)
			b.mu.Unlock()
		})
	}
}

// publish delivers events in order, as one batch: no other publish
// interleaves with it, so each subscriber sees a single total order.
func (b *bus) publish(events ...Event) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, ev := range events {
			select {
			case s.ch <- ev:
			default:
				s.dropped.Add(1)
				b.dropped.Add(1)
			}
		}
	}
}
