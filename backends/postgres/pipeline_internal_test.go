package postgres

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// A new task's events do not hold its id in their body (the row's task_id
// column does, taken from the sequence in SQL), so its creation is one
// round trip: the body is the one the events have with the id set (what
// the sink is handed, with the id set, is what a reader gets). A run whose
// body would hold the id waits for it (a second round trip).
func TestCreatedEventsTakeTheirIDInSQL(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 123456789, time.FixedZone("x", 3600))
	for _, ns := range []string{"default", "", `"task_id":0,`} {
		events := backends.CreatedEvents(&backends.Task{Namespace: ns, WorkflowName: "wf", State: backends.StatePending}, now)
		args, err := createdEventArgs(events)
		require.NoError(t, err)
		require.NotNil(t, args, "namespace %q: one round trip", ns)
		for _, ev := range events {
			ev.TaskID = 4711
		}
		want, err := backends.EncodeEventRun(events)
		require.NoError(t, err)
		require.Equal(t, string(want), args[3].(string))
		require.Equal(t, len(events), args[0])
		require.Equal(t, ns, args[1])
		require.Equal(t, ts(now), args[2])
	}

	// Events that differ in what a run shares are stored whole, ids
	// included: written once the id is known.
	odd := []*backends.Event{{Type: "x.custom", Time: now}, {Type: "x.custom", Time: now.Add(time.Second)}}
	args, err := createdEventArgs(odd)
	require.NoError(t, err)
	require.Nil(t, args)
}
