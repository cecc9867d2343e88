package backends

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEventRuns(t *testing.T) {
	t.Parallel()
	ev := func(task int64) *Event { return &Event{Type: EventStepCompleted, TaskID: task} }
	a1, a2, b1, a3 := ev(1), ev(1), ev(2), ev(1)
	require.Empty(t, EventRuns(nil))
	require.Equal(t, [][]*Event{{a1}}, EventRuns([]*Event{a1}))
	require.Equal(t, [][]*Event{{a1, a2}, {b1}, {a3}}, EventRuns([]*Event{a1, a2, b1, a3}),
		"a task's events split by another's are two runs")
}

// A run reads back as it was written, numbered from its row's first seq,
// whatever Seq the events carried when written.
func TestEventRunRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 10, 0, 0, 123000, time.UTC)
	run := []*Event{
		{Seq: 99, Type: EventTaskStartRequested, Time: now, TaskID: 7, Namespace: "ns", Workflow: "ns/w"},
		{Type: EventStepBackoff, Time: now, TaskID: 7, StepID: 3, StepName: "a", BackoffSeconds: 1.5, NextRetryAt: &now},
	}
	body, err := EncodeEventRun(run)
	require.NoError(t, err)
	require.NotContains(t, string(body), `"seq"`)
	require.Equal(t, int64(99), run[0].Seq, "encoding leaves the caller's events alone")

	got, err := DecodeEventRun(EventRow{First: 41, TaskID: 7, Namespace: "ns", Time: now, Body: body})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, []int64{41, 42}, []int64{got[0].Seq, got[1].Seq})
	want0, want1 := *run[0], *run[1]
	want0.Seq, want1.Seq = 41, 42
	require.Equal(t, &want0, got[0])
	require.Equal(t, &want1, got[1])

	_, err = DecodeEventRun(EventRow{First: 5, Body: []byte(`{"type":"task.completed"}`)})
	require.ErrorContains(t, err, "event 5: a row without events")
	_, err = DecodeEventRun(EventRow{First: 5, Body: []byte(`[]`)})
	require.ErrorContains(t, err, "event 5: a row without events")
	_, err = DecodeEventRun(EventRow{First: 5, Body: []byte(`[{"type":"task.completed"},null]`)})
	require.ErrorContains(t, err, "event 6: null")
}

// A run's events share the write's instant and their task (as every run
// the builders make does): the body says those once, and reads back the
// same events.
func TestSharedEventRun(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 10, 0, 0, 123000, time.UTC)
	run := []*Event{
		{Type: EventTaskStartRequested, Time: now, TaskID: 7, Namespace: "ns<&>", Workflow: "ns<&>/w"},
		{Type: EventViableStepsDiscovered, Time: now, TaskID: 7, Namespace: "ns<&>", Workflow: "ns<&>/w", StepNames: []string{"a"}},
		{Type: EventStepExecutionRequested, Time: now, TaskID: 7, Namespace: "ns<&>", Workflow: "ns<&>/w", StepID: 3, StepName: "a", ReadyAt: &now},
	}
	body, err := EncodeEventRun(run)
	require.NoError(t, err)
	for _, key := range []string{`"timestamp"`, `"task_id"`, `"namespace"`} {
		require.NotContains(t, string(body), key, "the row's columns hold it")
	}
	require.Equal(t, 1, strings.Count(string(body), `"workflow"`), "said once: %s", body)
	got, err := DecodeEventRun(EventRow{First: 10, TaskID: 7, Namespace: "ns<&>", Time: now, Body: body})
	require.NoError(t, err)
	for i, ev := range run {
		want := *ev
		want.Seq = int64(10 + i)
		require.Equal(t, &want, got[i])
	}
	mixed, err := EncodeEventRun([]*Event{run[0], {Type: EventTaskCompleted, Time: now.Add(time.Microsecond), TaskID: 7}})
	require.NoError(t, err)
	require.Equal(t, byte('['), mixed[0], "events that differ are stored whole")
}

// Rows selected by last seq above After, in order: AppendEventRows keeps
// what is after After, up to the limit, across rows.
func TestAppendEventRows(t *testing.T) {
	t.Parallel()
	rows := []struct {
		first int64
		n     int
	}{{1, 3}, {4, 1}, {5, 4}}
	bodies := make([][]byte, len(rows))
	for i, r := range rows {
		run := make([]*Event, r.n)
		for j := range run {
			run[j] = &Event{Type: EventStepCompleted, TaskID: int64(i + 1)}
		}
		var err error
		bodies[i], err = EncodeEventRun(run)
		require.NoError(t, err)
	}
	for after := int64(0); after <= 8; after++ {
		for limit := 0; limit <= 9; limit++ {
			q := &EventQuery{After: after, Limit: limit}
			var got []*Event
			for i, r := range rows {
				if r.first+int64(r.n)-1 <= after {
					continue // a store selects rows by last seq > After
				}
				var err error
				got, err = AppendEventRows(got, q, EventRow{First: r.first, TaskID: int64(i + 1), Body: bodies[i]})
				require.NoError(t, err)
			}
			var want []int64
			for seq := after + 1; seq <= 8 && len(want) < q.LimitOrDefault(); seq++ {
				want = append(want, seq)
			}
			var seqs []int64
			for _, ev := range got {
				seqs = append(seqs, ev.Seq)
			}
			require.Equal(t, want, seqs, "after %d limit %d", after, limit)
		}
	}
}
