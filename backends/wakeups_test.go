package backends

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWakeAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	in := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	for _, tc := range []struct {
		name   string
		events []*Event
		want   *time.Time // nil: no work
	}{
		{"task created", []*Event{{Type: EventTaskInitializeRequested, TaskID: 1}}, &now},
		{"task created complete (every step bypassed)", []*Event{{Type: EventTaskInitializeRequested, TaskID: 1}, {Type: EventTaskCompleted, TaskID: 1}}, nil},
		{"step completed, task goes on", []*Event{{Type: EventStepCompleted, TaskID: 1}, {Type: EventTaskFinalized, TaskID: 1}}, &now},
		{"last step completed", []*Event{{Type: EventStepCompleted, TaskID: 1}, {Type: EventTaskCompleted, TaskID: 1}}, nil},
		{"failure retried later", []*Event{{Type: EventStepFailed, TaskID: 1}, {Type: EventStepBackoff, TaskID: 1, NextRetryAt: in(time.Second)}}, in(time.Second)},
		{"failure that blocks", []*Event{{Type: EventStepFailed, TaskID: 1, Blocked: true}, {Type: EventTaskFailed, TaskID: 1}}, nil},
		{"earliest of several", []*Event{
			{Type: EventStepBackoff, TaskID: 1, NextRetryAt: in(time.Minute)},
			{Type: EventStepBackoff, TaskID: 2, NextRetryAt: in(time.Second)},
		}, in(time.Second)},
		{"work now beats a backoff", []*Event{
			{Type: EventStepBackoff, TaskID: 1, NextRetryAt: in(time.Minute)},
			{Type: EventStepCompleted, TaskID: 2},
		}, &now},
		{"operator retry", []*Event{{Type: EventStepRetryRequested, TaskID: 1}, {Type: EventTaskRetryRequested, TaskID: 1}}, &now},
		{"operator resolve", []*Event{{Type: EventStepResolvedManually, TaskID: 1}}, &now},
		{"cancellation", []*Event{{Type: EventStepCancelled, TaskID: 1}, {Type: EventTaskCancelled, TaskID: 1}}, nil},
		{"a claim", []*Event{{Type: EventTaskStartRequested, TaskID: 1}, {Type: EventViableStepsDiscovered, TaskID: 1}, {Type: EventStepExecutionRequested, TaskID: 1}}, nil},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := WakeAt(tc.events, now)
			if tc.want == nil {
				require.False(t, ok, "no work, got %v", at)
				return
			}
			require.True(t, ok)
			require.True(t, tc.want.Equal(at), "want %v, got %v", tc.want, at)
		})
	}
}
