package postgres

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// A new task's events take its id in SQL, so its creation is one round
// trip: their body holds the placeholder once per event, and putting the
// id in its place gives the body the events would have had with it (what
// the sink is handed, with the id set, is what a reader gets). The second
// round trip is only for a body without the placeholder.
func TestCreatedEventsTakeTheirIDInSQL(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 123456789, time.FixedZone("x", 3600))
	for _, ns := range []string{"default", "", `"task_id":0,`} {
		events := backends.CreatedEvents(&backends.Task{Namespace: ns, WorkflowName: "wf", State: backends.StatePending}, now)
		args, err := createdEventArgs(events)
		require.NoError(t, err)
		require.NotNil(t, args, "namespace %q: one round trip", ns)
		const id = 4711
		body := strings.ReplaceAll(args[3].(string), `"task_id":0,`, `"task_id":`+strconv.Itoa(id)+`,`)
		for _, ev := range events {
			ev.TaskID = id
		}
		want, err := backends.EncodeEventRun(events)
		require.NoError(t, err)
		require.Equal(t, string(want), body)
		require.Equal(t, len(events), args[0])
		require.Equal(t, ns, args[1])
		require.Equal(t, ts(now), args[2])
	}

	// A body with the placeholder where no event's id is: written once the
	// id is known.
	odd := []*backends.Event{{Type: "x.custom", Time: now, Payload: []byte(`{"task_id":0,"x":1}`)}}
	args, err := createdEventArgs(odd)
	require.NoError(t, err)
	require.Nil(t, args)
}
