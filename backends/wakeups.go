package backends

import (
	"context"
	"time"
)

// WakeupSource is implemented by stores that several processes share
// (PostgreSQL): it tells an idle engine that another process committed work
// it may claim, instead of leaving it to find that work at its next safety
// poll.
//
// Wakeups returns a channel that delivers, until ctx is done, the instants
// at which work another process committed becomes claimable: the zero time
// (at once) for a task created, children made ready, a step released or
// an operator's retry or resolve; the end of its backoff for a failure that
// will be retried. A receiver claims at (or after) each instant and then
// asks NextWakeup, which knows every later instant: a notification is a
// hint that makes the wait short, never the only way work is found. After
// the source (re)connects it delivers the zero time once, since
// notifications sent while it was not listening are lost. The channel is
// closed when ctx is done.
type WakeupSource interface {
	Wakeups(ctx context.Context) <-chan time.Time
}

// WakeAt is the instant a write with these events makes work claimable, as
// WakeupSource reports it: the earliest of now (a task created, a step
// completed in a task that is not over, a step retried or resolved by an
// operator, a task retried; unless the same write finished that task) and
// the next_retry_at of each step.backoff.
// ok is false when the write made no work: a claim, a cancellation, a
// failure that blocks, a task's last step.
func WakeAt(events []*Event, now time.Time) (at time.Time, ok bool) {
	over := map[int64]bool{} // tasks this write finished
	for _, ev := range events {
		switch ev.Type {
		case EventTaskCompleted, EventTaskFailed, EventTaskCancelled, EventTaskResolvedManually:
			over[ev.TaskID] = true
		}
	}
	earliest := func(t time.Time) {
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	for _, ev := range events {
		switch ev.Type {
		case EventTaskInitializeRequested, EventTaskRetryRequested, EventStepRetryRequested,
			EventStepResolvedManually, EventStepCompleted:
			if !over[ev.TaskID] {
				earliest(now)
			}
		case EventStepBackoff:
			if ev.NextRetryAt != nil {
				earliest(*ev.NextRetryAt)
			} else {
				earliest(now)
			}
		}
	}
	return at, ok
}
