package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// EventRecorder wraps a store and keeps the custom events each step result
// was written with (CompleteStepParams.Events, FailStepParams.Events), by
// step id, for the tests of handlers that emit them. Its Store may be set
// after it is made.
type EventRecorder struct {
	backends.Store
	mu     sync.Mutex
	events map[int64][][]backends.CustomEvent // step id -> per result write, in order
}

// NewEventRecorder wraps s (nil: set Store before use).
func NewEventRecorder(s backends.Store) *EventRecorder {
	return &EventRecorder{Store: s, events: map[int64][][]backends.CustomEvent{}}
}

func (r *EventRecorder) CompleteStep(ctx context.Context, p *backends.CompleteStepParams) (*backends.RecordResult, error) {
	rr, err := r.Store.CompleteStep(ctx, p)
	if err == nil {
		r.record(p.StepID, p.Events)
	}
	return rr, err
}

func (r *EventRecorder) FailStep(ctx context.Context, p *backends.FailStepParams) (*backends.RecordResult, error) {
	rr, err := r.Store.FailStep(ctx, p)
	if err == nil {
		r.record(p.StepID, p.Events)
	}
	return rr, err
}

func (r *EventRecorder) record(stepID int64, events []backends.CustomEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[stepID] = append(r.events[stepID], events)
}

// Written waits (up to 10 s) for n result writes of the step and returns
// the custom events of each. The wrapper records after the store call
// returned, so a write may be seen in the task's state a moment before it
// is recorded here.
func (r *EventRecorder) Written(t testing.TB, stepID int64, n int) [][]backends.CustomEvent {
	t.Helper()
	var got [][]backends.CustomEvent
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		got = slices.Clone(r.events[stepID])
		return len(got) >= n
	}, 10*time.Second, time.Millisecond, "%d result writes of step %d", n, stepID)
	return got
}
