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
		WHEN EXISTS (SELECT 1 FROM json_each(NEW.body, '$.events')
			WHERE value->>'type' = 'step.completed' AND value->>'step_name' LIKE 'doomed%')
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
// events are never handed out again (event_seq counts on).
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
// whole log by seq, the row holding After by the primary key; never a
// sort.
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
		{backends.EventQuery{After: 5, Namespaces: []string{"a"}}, "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"},
	} {
		query, args, err := listEventsSQL(&tc.q)
		require.NoError(t, err)
		plan := queryPlan(t, s, query, args...)
		require.Contains(t, plan, tc.want, "%+v", tc.q)
		require.Contains(t, plan, "SCALAR SUBQUERY 1\nSEARCH events USING INTEGER PRIMARY KEY (rowid<?)", "%+v", tc.q)
		require.NotContains(t, plan, "TEMP B-TREE", "%+v", tc.q)
	}
}

// A write with more events than one INSERT takes (a claim of 20 tasks:
// 60 events) stores them in order, numbered without a gap, and hands them
// all to its sink at once.
func TestManyEventsInOneWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	const n = 20
	for i := range n {
		_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0",
			Steps: []backends.NewStep{{Name: fmt.Sprint("s", i), Handler: "builtin.noop", RetryLimit: 3}}, Now: eventsNow})
		require.NoError(t, err)
	}
	var batches [][]*backends.Event
	sinkCtx := backends.WithEventSink(ctx, func(evs []*backends.Event) { batches = append(batches, evs) })
	cs, err := s.ClaimSteps(sinkCtx, &backends.ClaimStepsParams{Owner: "n", Limit: n, LeaseDuration: time.Minute, Now: eventsNow})
	require.NoError(t, err)
	require.Len(t, cs, n)
	require.Len(t, batches, 1)
	require.Len(t, batches[0], 3*n)
	listed, err := s.ListEvents(ctx, &backends.EventQuery{After: n})
	require.NoError(t, err)
	require.Len(t, listed, 3*n)
	for i, ev := range listed {
		require.Equal(t, int64(n+i+1), ev.Seq)
		require.Equal(t, batches[0][i].Seq, ev.Seq)
		require.Equal(t, batches[0][i].Type, ev.Type)
		require.Equal(t, cs[i/3].Step.TaskID, ev.TaskID, "event %d: per task, in claim order", i)
	}
}

// Migration 0008 turns each event of the old log (one row each, numbered
// by AUTOINCREMENT) into a run of one: the log reads the same, and new
// events are numbered after the old ones, even after the newest of them
// went with their task.
func TestMigration0008KeepsTheLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, path := openFile(t, "?synchronous=normal")
	cs := createAndClaim(t, s, "a", "b", "c")
	before, err := s.ListEvents(ctx, &backends.EventQuery{})
	require.NoError(t, err)
	require.Len(t, before, 3+3*3)

	// Back to schema version 7: one row per event, as 0007 wrote them.
	_, err = s.writer.Exec(`DROP TABLE schedule_firings; DROP TABLE schedules;
		DROP TABLE events; DROP TABLE event_seq;
		CREATE TABLE events (
			seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,
			task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
			step_id INTEGER, namespace TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL) STRICT;
		CREATE INDEX events_task ON events (task_id, seq);
		CREATE INDEX events_namespace ON events (namespace, seq);
		DELETE FROM taskerd_schema_migrations WHERE version > 7`)
	require.NoError(t, err)
	for _, ev := range before {
		body := *ev
		body.Seq = 0
		b, err := json.Marshal(&body)
		require.NoError(t, err)
		_, err = s.writer.Exec(`INSERT INTO events (seq, type, task_id, step_id, namespace, created_at, body) VALUES (?, ?, ?, NULLIF(?, 0), ?, ?, ?)`,
			ev.Seq, string(ev.Type), ev.TaskID, ev.StepID, ev.Namespace, micros(ev.Time), string(b))
		require.NoError(t, err)
	}
	// The newest task goes, and its events with it: AUTOINCREMENT still
	// remembers their numbers.
	_, err = s.writer.Exec(`DELETE FROM tasks WHERE id = ?`, cs[2].Step.TaskID)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s2, err := Open(ctx, "sqlite:"+path+"?synchronous=normal")
	require.NoError(t, err)
	defer s2.Close()
	after, err := s2.ListEvents(ctx, &backends.EventQuery{})
	require.NoError(t, err)
	var kept []*backends.Event
	for _, ev := range before {
		if ev.TaskID != cs[2].Step.TaskID {
			kept = append(kept, ev)
		}
	}
	require.Equal(t, kept, after)
	mid, err := s2.ListEvents(ctx, &backends.EventQuery{After: 4, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []int64{5, 6}, []int64{mid[0].Seq, mid[1].Seq})
	last, err := s2.LastEventSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, before[len(before)-1].Seq, last, "the deleted events' numbers are not handed out again")

	_, err = s2.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: eventsNow})
	require.NoError(t, err)
	next, err := s2.ListEvents(ctx, &backends.EventQuery{After: last})
	require.NoError(t, err)
	require.NotEmpty(t, next)
	require.Equal(t, last+1, next[0].Seq)
}
