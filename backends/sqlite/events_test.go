package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

var eventsNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// createAndClaim creates a one-step task per name (the step named so) and
// claims them all.
func createAndClaim(t *testing.T, s *Store, names ...string) []*backends.Claim {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0",
			Steps: []backends.NewStep{{Name: name, Handler: "builtin.noop", RetryLimit: 3}}, Now: eventsNow})
		require.NoError(t, err)
	}
	cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: len(names), LeaseDuration: time.Minute, Now: eventsNow})
	require.NoError(t, err)
	require.Len(t, cs, len(names))
	return cs
}

// A write whose events cannot be stored is rolled back as a whole, and its
// sink is not called, though its events were already built; inside a
// group (Store.write) it takes nothing of the others with it, and the seqs
// it had taken are given to the next events: the log has no gap.
func TestEventsOfAFailedWriteReachNoSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	const n = 16
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ok%d", i)
		if i%3 == 1 {
			names[i] = fmt.Sprintf("doomed%d", i)
		}
	}
	cs := createAndClaim(t, s, names...)
	start, err := s.LastEventSeq(ctx)
	require.NoError(t, err)
	// The event insert of a doomed step's completion fails.
	_, err = s.writer.Exec(`CREATE TRIGGER doom BEFORE INSERT ON events
		WHEN NEW.type = 'step.completed' AND NEW.body->>'step_name' LIKE 'doomed%'
		BEGIN SELECT RAISE(ABORT, 'no room for this event'); END`)
	require.NoError(t, err)

	// Hold the writer while the completions queue up, so that (most
	// likely) they run as one group; the outcome must not depend on it.
	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(ctx, func(querier) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	logs := make([][][]*backends.Event, n)
	errs := make([]error, n)
	var wg, started sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			sinkCtx := backends.WithEventSink(ctx, func(evs []*backends.Event) { logs[i] = append(logs[i], evs) })
			started.Done()
			_, errs[i] = s.CompleteStep(sinkCtx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
				Events: []backends.CustomEvent{{Name: "test.before", Payload: json.RawMessage(`1`)}}, Now: eventsNow.Add(time.Second)})
		}()
	}
	started.Wait()
	close(release)
	wg.Wait()
	require.NoError(t, <-held)

	var seqs []int64
	for i, c := range cs {
		if i%3 == 1 {
			require.ErrorContains(t, errs[i], "no room for this event")
			require.Empty(t, logs[i], "the sink of failed write %d was called", i)
			st, err := s.GetStep(ctx, c.Step.ID)
			require.NoError(t, err)
			require.Equal(t, backends.StateInProgress, st.State, "nothing of write %d was applied", i)
			continue
		}
		require.NoError(t, errs[i])
		require.Len(t, logs[i], 1)
		evs := logs[i][0]
		require.Len(t, evs, 4) // test.before, step.completed, workflow.task_finalized, task.completed
		for _, ev := range evs {
			require.Equal(t, c.Step.TaskID, ev.TaskID)
			seqs = append(seqs, ev.Seq)
		}
	}
	listed, err := s.ListEvents(ctx, &backends.EventQuery{After: start})
	require.NoError(t, err)
	require.Len(t, listed, len(seqs))
	for i, ev := range listed {
		require.Equal(t, start+int64(i)+1, ev.Seq, "a gap in the log")
		require.False(t, strings.HasPrefix(ev.StepName, "doomed"), "event %d of a failed write", ev.Seq)
	}
	require.ElementsMatch(t, seqs, func() []int64 {
		var out []int64
		for _, ev := range listed {
			out = append(out, ev.Seq)
		}
		return out
	}())
}

// A task's events go with it (ON DELETE CASCADE); the numbers of deleted
// events are never handed out again (AUTOINCREMENT).
func TestEventsGoWithTheirTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	cs := createAndClaim(t, s, "a", "b")
	last, err := s.LastEventSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(8), last) // 2 created, 3 per task claimed

	// The newest task holds the newest events.
	_, err = s.writer.Exec(`DELETE FROM tasks WHERE id = ?`, cs[1].Step.TaskID)
	require.NoError(t, err)
	evs, err := s.ListEvents(ctx, &backends.EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, 4)
	for _, ev := range evs {
		require.Equal(t, cs[0].Step.TaskID, ev.TaskID)
	}
	gone, err := s.ListEvents(ctx, &backends.EventQuery{TaskID: cs[1].Step.TaskID})
	require.NoError(t, err)
	require.Empty(t, gone)

	_, err = s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: eventsNow})
	require.NoError(t, err)
	evs, err = s.ListEvents(ctx, &backends.EventQuery{After: 6})
	require.NoError(t, err)
	require.Equal(t, int64(9), evs[0].Seq, "seq 7 and 8 are not reused")
}

// ListEvents reads by its index: a task's events by events_task, the
// whole log by seq; never a sort.
func TestListEventsPlans(t *testing.T) {
	t.Parallel()
	s, _ := openFile(t, "?synchronous=normal")
	for _, tc := range []struct {
		q    backends.EventQuery
		want string
	}{
		{backends.EventQuery{After: 5}, "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"},
		{backends.EventQuery{After: 5, TaskID: 3}, "SEARCH events USING INDEX events_task (task_id=? AND seq>?)"},
		{backends.EventQuery{TaskID: 3, Namespaces: []string{"a"}}, "SEARCH events USING INDEX events_task (task_id=? AND seq>?)"},
	} {
		query, args, err := listEventsSQL(&tc.q)
		require.NoError(t, err)
		plan := queryPlan(t, s, query, args...)
		require.Contains(t, plan, tc.want, "%+v", tc.q)
		require.NotContains(t, plan, "TEMP B-TREE", "%+v", tc.q)
	}
}
