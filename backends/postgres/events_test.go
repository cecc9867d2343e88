package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// sinkLog collects what the stores hand to sinks.
type sinkLog struct {
	mu     sync.Mutex
	events []*backends.Event
}

func (l *sinkLog) ctx(ctx context.Context) context.Context {
	return backends.WithEventSink(ctx, func(evs []*backends.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, evs...)
	})
}

func eventJSON(t *testing.T, ev *backends.Event) string {
	t.Helper()
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return string(b)
}

// Writers on many connections — creating tasks, claiming, completing,
// failing, cancelling — while a reader tails the log with ListEvents(After
// = the last seq it saw), in small pages: the reader meets every seq once,
// in order, without a gap (a gap would be a number taken by a transaction
// that commits later, which the reader, already past it, would never
// read). And every event a sink was handed is in the log, as handed.
func TestEventSeqFollowsCommitOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t, postgres.WithMaxConns(12))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var sunk sinkLog
	wctx := sunk.ctx(ctx)

	const writers, rounds = 6, 12
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("w%d", w)
			for r := range rounds {
				task, _, err := s.CreateTask(wctx, &backends.CreateTaskParams{Namespace: fmt.Sprintf("ns%d", w%2),
					WorkflowName: "wf", WorkflowVersion: "1", Steps: []backends.NewStep{
						{Name: "a", Handler: "h", Retryable: true, RetryLimit: 2, BackoffBase: time.Second, BackoffMax: time.Second},
						{Name: "b", Handler: "h", Retryable: true, RetryLimit: 2, BackoffBase: time.Second, BackoffMax: time.Second},
					}, Now: now})
				if !assert.NoError(t, err) {
					return
				}
				claims, err := s.ClaimSteps(wctx, &backends.ClaimStepsParams{Owner: owner, Limit: 2, LeaseDuration: time.Minute, Now: now})
				if !assert.NoError(t, err) {
					return
				}
				for i, c := range claims {
					if (i+r)%3 == 0 {
						_, err = s.FailStep(wctx, &backends.FailStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
							Error: backends.StepError{Message: "no", Retryable: false, Kind: "handler"}, Now: now})
					} else {
						_, err = s.CompleteStep(wctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
							Events: []backends.CustomEvent{{Name: "x.done", Payload: json.RawMessage(`{"r":1}`)}}, Now: now})
					}
					assert.NoError(t, err)
				}
				if r%4 == 0 {
					// An operator action on a task that may be finished by now
					// (a refusal writes nothing).
					_, _ = s.CancelTask(wctx, &backends.CancelTaskParams{TaskID: task.ID, Reason: "test", Now: now})
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	var (
		read     []*backends.Event
		last     int64
		finished bool
	)
	deadline := time.Now().Add(time.Minute)
	for {
		page, err := s.ListEvents(ctx, &backends.EventQuery{After: last, Limit: 7})
		require.NoError(t, err)
		for _, ev := range page {
			require.Equal(t, last+1, ev.Seq, "the event after %d", last)
			last = ev.Seq
		}
		read = append(read, page...)
		if len(page) > 0 {
			continue
		}
		if finished {
			break
		}
		select {
		case <-done:
			finished = true // one more pass: what committed last
		default:
		}
		require.True(t, time.Now().Before(deadline), "writers did not finish")
	}
	top, err := s.LastEventSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, last, top)

	sunk.mu.Lock()
	defer sunk.mu.Unlock()
	require.Len(t, sunk.events, len(read), "every event written was handed to a sink once")
	bySeq := map[int64]string{}
	for _, ev := range read {
		bySeq[ev.Seq] = eventJSON(t, ev)
	}
	for _, ev := range sunk.events {
		require.Equal(t, bySeq[ev.Seq], eventJSON(t, ev), "event %d as handed and as stored", ev.Seq)
	}
	// Each task's creation comes before its other events.
	first := map[int64]backends.EventType{}
	for _, ev := range read {
		if _, ok := first[ev.TaskID]; !ok {
			first[ev.TaskID] = ev.Type
		}
	}
	require.Len(t, first, writers*rounds)
	for id, typ := range first {
		require.Equal(t, backends.EventTaskInitializeRequested, typ, "task %d", id)
	}
}

// A writer that took its numbers holds the counter until it commits: a
// second writer waits, numbers after it, and a reader meanwhile sees
// neither (no number is visible before every number below it is).
func TestEventNumbersWaitForTheWriterBefore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "wf", WorkflowVersion: "1",
		Steps: []backends.NewStep{{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second}}, Now: now})
	require.NoError(t, err)
	start, err := s.LastEventSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), start, "task.initialize_requested")

	custom := func(name string) []*backends.Event {
		return []*backends.Event{{Type: backends.EventType(name), Time: now, TaskID: task.ID, Namespace: "default", Workflow: "default/wf"}}
	}
	first, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	defer first.Rollback(ctx)
	args, err := postgres.EventArgs(custom("t.first"))
	require.NoError(t, err)
	var firstLast int64
	require.NoError(t, first.QueryRow(ctx, postgres.AppendEventsSQL, args...).Scan(&firstLast))
	require.Equal(t, start+1, firstLast)

	// The second writer: a store call (an operator action) on another
	// connection.
	second := make(chan error, 1)
	var sunk sinkLog
	go func() {
		_, err := s.CancelTask(sunk.ctx(ctx), &backends.CancelTaskParams{TaskID: task.ID, Reason: "r", Now: now})
		second <- err
	}()
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%event_seq%'`).Scan(&waiting))
		return waiting == 1
	}, 10*time.Second, 5*time.Millisecond, "the second writer waits for the counter")
	evs, err := s.ListEvents(ctx, &backends.EventQuery{After: start})
	require.NoError(t, err)
	require.Empty(t, evs, "nothing committed yet")

	require.NoError(t, first.Commit(ctx))
	require.NoError(t, <-second)
	evs, err = s.ListEvents(ctx, &backends.EventQuery{After: start})
	require.NoError(t, err)
	var types []backends.EventType
	for i, ev := range evs {
		require.Equal(t, start+1+int64(i), ev.Seq)
		types = append(types, ev.Type)
	}
	require.Equal(t, []backends.EventType{"t.first", backends.EventStepCancelled, backends.EventTaskCancelled}, types)
	require.Len(t, sunk.events, 2)
	require.Equal(t, start+2, sunk.events[0].Seq, "the sink's events carry their numbers")
}

// Two nodes (stores on one database) ask for the same cursors at the same
// instant: exactly one gets each lease; once it expires, of two nodes
// taking it over at once, exactly one does, and the former holder's
// advance is refused.
func TestCursorLeaseRaceBetweenNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgtest.Open(t)
	b, err := postgres.Open(ctx, a.Pool().Config().ConnString(), postgres.WithoutMigrate())
	require.NoError(t, err)
	defer b.Close()
	c, err := postgres.Open(ctx, a.Pool().Config().ConnString(), postgres.WithoutMigrate())
	require.NoError(t, err)
	defer c.Close()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	race := func(name string, at time.Time, nodes map[string]*postgres.Store) map[string]bool {
		t.Helper()
		var (
			mu  sync.Mutex
			won = map[string]bool{}
			wg  sync.WaitGroup
		)
		go_ := make(chan struct{})
		for owner, s := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-go_
				cur, ok, err := s.AcquireCursor(ctx, &backends.AcquireCursorParams{Name: name, Owner: owner, Start: 5, Lease: time.Minute, Now: at})
				if !assert.NoError(t, err) {
					return
				}
				if ok {
					assert.Equal(t, owner, cur.Owner)
				} else {
					assert.NotEqual(t, owner, cur.Owner, "refused: another holds it")
				}
				mu.Lock()
				won[owner] = ok
				mu.Unlock()
			}()
		}
		close(go_)
		wg.Wait()
		return won
	}
	winner := func(won map[string]bool) string {
		t.Helper()
		var winners []string
		for o, ok := range won {
			if ok {
				winners = append(winners, o)
			}
		}
		require.Len(t, winners, 1, "%v", won)
		return winners[0]
	}
	nodes := map[string]*postgres.Store{"a": a, "b": b, "c": c}
	for i := range 15 {
		name := fmt.Sprintf("hook-%d", i)
		holder := winner(race(name, now, nodes))
		cur := cursorNamed(t, a, name)
		require.Equal(t, int64(5), cur.Seq)
		require.Equal(t, holder, cur.Owner)
		require.NoError(t, nodes[holder].AdvanceCursor(ctx, name, holder, 9, now.Add(time.Second)))

		// The lease expires (at its instant, as a step's): the others race.
		expired := now.Add(time.Minute)
		others := map[string]*postgres.Store{}
		for o, s := range nodes {
			if o != holder {
				others[o] = s
			}
		}
		next := winner(race(name, expired, others))
		require.ErrorIs(t, nodes[holder].AdvanceCursor(ctx, name, holder, 12, expired), backends.ErrLeaseLost)
		cur = cursorNamed(t, a, name)
		require.Equal(t, int64(9), cur.Seq, "the taken-over cursor keeps its position")
		require.Equal(t, next, cur.Owner)
	}
}

func cursorNamed(t *testing.T, s *postgres.Store, name string) *backends.EventCursor {
	t.Helper()
	cs, err := s.ListCursors(context.Background())
	require.NoError(t, err)
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "no cursor", "%s", name)
	return nil
}

// A result batch writes many callers' events in one transaction, numbered
// by one counter update in batch order, and gives each caller exactly its
// own (with the failed task's steps in error and its state before); two
// results of one task, written in rounds, get theirs too.
func TestResultBatchEventsPerCaller(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	two := []backends.NewStep{
		{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second},
		{Name: "b", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second},
	}
	var tasks []*backends.Task
	for range 3 {
		task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "wf", WorkflowVersion: "1",
			Steps: two[:1], Now: now})
		require.NoError(t, err)
		tasks = append(tasks, task)
	}
	pair, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "pair", WorkflowVersion: "1",
		Steps: two, Now: now})
	require.NoError(t, err)
	claims, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 10, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, claims, 5)
	before, err := s.LastEventSeq(ctx)
	require.NoError(t, err)

	later := now.Add(time.Second)
	complete := func(c *backends.Claim, custom ...backends.CustomEvent) postgres.BatchItem {
		return postgres.BatchItem{Complete: &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Events: custom, Now: later}}
	}
	fail := postgres.BatchItem{Fail: &backends.FailStepParams{StepID: claims[1].Step.ID, LeaseToken: claims[1].Step.LeaseToken,
		Error: backends.StepError{Message: "boom", Kind: "handler"}, Now: later,
		Events: []backends.CustomEvent{{Name: "x.tried"}}}}
	// Claim order: tasks[0..2]'s a, then pair's a and b.
	rrs, events, errs := postgres.RecordBatch(ctx, s, []postgres.BatchItem{
		complete(claims[0], backends.CustomEvent{Name: "x.one", Payload: json.RawMessage(`1`)}),
		fail,
		complete(claims[2]),
		complete(claims[3]),
		complete(claims[4]),
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	types := func(evs []*backends.Event) []backends.EventType {
		var out []backends.EventType
		for _, ev := range evs {
			out = append(out, ev.Type)
		}
		return out
	}
	require.Equal(t, []backends.EventType{"x.one", backends.EventStepCompleted, backends.EventTaskFinalized, backends.EventTaskCompleted}, types(events[0]))
	require.Equal(t, []backends.EventType{"x.tried", backends.EventStepFailed, backends.EventTaskFinalized, backends.EventTaskFailed}, types(events[1]))
	require.Equal(t, []string{"a"}, events[1][3].StepNames)
	require.Equal(t, backends.StateInProgress, rrs[1].TaskBefore)
	require.Equal(t, []string{"a"}, rrs[1].ErrorSteps)
	require.Equal(t, backends.StateError, rrs[1].Task.State)
	require.Nil(t, rrs[0].ErrorSteps)
	require.Equal(t, []backends.EventType{backends.EventStepCompleted, backends.EventTaskFinalized, backends.EventTaskCompleted}, types(events[2]))
	// pair's two results: a's finalize sees b running, b's completes it.
	require.Equal(t, []backends.EventType{backends.EventStepCompleted, backends.EventTaskFinalized}, types(events[3]))
	require.Equal(t, []backends.EventType{backends.EventStepCompleted, backends.EventTaskFinalized, backends.EventTaskCompleted}, types(events[4]))
	require.Equal(t, backends.StateInProgress, rrs[4].TaskBefore)

	owners := []int64{tasks[0].ID, tasks[1].ID, tasks[2].ID, pair.ID, pair.ID}
	var all []*backends.Event
	for i, evs := range events {
		for _, ev := range evs {
			require.Equal(t, owners[i], ev.TaskID, "caller %d gets its own task's events", i)
		}
		all = append(all, evs...)
	}
	stored, err := s.ListEvents(ctx, &backends.EventQuery{After: before})
	require.NoError(t, err)
	require.Len(t, stored, len(all))
	seen := map[int64]bool{}
	for _, ev := range all {
		require.False(t, seen[ev.Seq], "seq %d handed twice", ev.Seq)
		seen[ev.Seq] = true
		require.Greater(t, ev.Seq, before)
		require.LessOrEqual(t, ev.Seq, before+int64(len(all)))
	}
	// Numbered in batch order: the first round (one result per task), then
	// the second (pair's b).
	for i := 1; i < len(all); i++ {
		require.Equal(t, all[i-1].Seq+1, all[i].Seq)
	}
	for _, ev := range stored {
		require.Equal(t, eventJSON(t, ev), func() string {
			for _, h := range all {
				if h.Seq == ev.Seq {
					return eventJSON(t, h)
				}
			}
			return ""
		}())
	}
}

// Concurrent CompleteStep callers, batched together by the store: each
// caller's sink gets its own step's events and nobody else's.
func TestConcurrentResultsSinkTheirOwnEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 24
	for range n {
		_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "wf", WorkflowVersion: "1",
			Steps: []backends.NewStep{{Name: "a", Handler: "h", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second}}, Now: now})
		require.NoError(t, err)
	}
	claims, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: n, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, claims, n)
	got := make([][]*backends.Event, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx := backends.WithEventSink(ctx, func(evs []*backends.Event) { got[i] = append(got[i], evs...) })
			<-start
			_, err := s.CompleteStep(sctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now})
			assert.NoError(t, err)
		}()
	}
	close(start)
	wg.Wait()
	seqs := map[int64]bool{}
	for i, evs := range got {
		require.Len(t, evs, 3, "caller %d", i)
		require.Equal(t, backends.EventStepCompleted, evs[0].Type)
		require.Equal(t, claims[i].Step.ID, evs[0].StepID)
		for j, ev := range evs {
			require.Equal(t, claims[i].Task.ID, ev.TaskID)
			require.Equal(t, evs[0].Seq+int64(j), ev.Seq, "a caller's events are contiguous")
			seqs[ev.Seq] = true
		}
	}
	require.Len(t, seqs, 3*n)
}

// The counter is one row: the migration allows no second.
func TestEventCounterIsOneRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	_, err := s.Pool().Exec(ctx, `INSERT INTO event_seq (last) VALUES (0)`)
	require.Error(t, err)
	var rows int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM event_seq`).Scan(&rows))
	require.Equal(t, 1, rows)
}

// A cursor gives up on an event again (after a replay): one letter, the
// latest, as on SQLite.
func TestDeadLetterGivenAgainReplacesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, s.AddDeadLetter(ctx, &backends.DeadLetter{Cursor: "hook", Seq: 3, Attempts: 5, LastError: "HTTP 500", CreatedAt: now}))
	require.NoError(t, s.AddDeadLetter(ctx, &backends.DeadLetter{Cursor: "hook", Seq: 3, Attempts: 2, LastError: "timeout", CreatedAt: now.Add(time.Hour)}))
	ds, err := s.ListDeadLetters(ctx, "hook", 0)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, 2, ds[0].Attempts)
	require.Equal(t, "timeout", ds[0].LastError)
	require.True(t, now.Add(time.Hour).Equal(ds[0].CreatedAt))
	require.Error(t, s.AddDeadLetter(ctx, &backends.DeadLetter{Seq: 3}), "a letter needs its cursor")
}

// Migration 0010 turns each event of the old log (one row per event) into a
// run of one: a reader gets the same events with the same numbers, from
// any point and through any filter, the counter is where it was, and the
// next write numbers after it, in the new layout.
func TestEventRunsMigrationKeepsTheLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	applied, err := postgres.MigrateTo(ctx, dsn, 9)
	require.NoError(t, err)
	require.Len(t, applied, 9)
	require.Equal(t, "0009_events.sql", applied[8])

	// Two tasks and their events as 0009 stored them: each its own row,
	// its body the event's JSON without its seq.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	now := time.Date(2030, 1, 1, 0, 0, 0, 123000, time.UTC)
	taskIn := func(ns string) int64 {
		var id int64
		require.NoError(t, conn.QueryRow(ctx, `INSERT INTO tasks (namespace, workflow_name, workflow_version, context,
				requested_at, created_at, updated_at) VALUES ($1, 'wf', '1', '{}', $2, $2, $2) RETURNING id`, ns, now).Scan(&id))
		return id
	}
	a, b := taskIn("alpha"), taskIn("beta")
	old := []*backends.Event{
		{Type: backends.EventTaskInitializeRequested, Time: now, TaskID: a, Namespace: "alpha", Workflow: "alpha/wf"},
		{Type: backends.EventTaskInitializeRequested, Time: now, TaskID: b, Namespace: "beta", Workflow: "beta/wf"},
		{Type: backends.EventStepExecutionRequested, Time: now, TaskID: a, Namespace: "alpha", Workflow: "alpha/wf", StepID: 7, StepName: "s"},
		{Type: "x.custom", Time: now.Add(time.Second), TaskID: a, Namespace: "alpha", Workflow: "alpha/wf", Payload: json.RawMessage(`{"k":[1,2]}`)},
	}
	for i, ev := range old {
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		var step *int64
		if ev.StepID != 0 {
			step = &ev.StepID
		}
		_, err = conn.Exec(ctx, `INSERT INTO events (seq, type, task_id, step_id, namespace, created_at, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, i+1, string(ev.Type), ev.TaskID, step, ev.Namespace, ev.Time, string(body))
		require.NoError(t, err)
		ev.Seq = int64(i + 1)
	}
	_, err = conn.Exec(ctx, `UPDATE event_seq SET last = $1`, len(old))
	require.NoError(t, err)

	applied, err = postgres.MigrateTo(ctx, dsn, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"0010_event_runs.sql"}, applied)
	var indexes []string
	require.NoError(t, conn.QueryRow(ctx, `SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes
		WHERE tablename = 'events'`).Scan(&indexes))
	require.Equal(t, []string{"events_pkey", "events_task"}, indexes)
	var leftover bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT to_regclass('events_0009') IS NOT NULL`).Scan(&leftover))
	require.False(t, leftover, "the old table is gone")

	// The later migrations leave the log alone; the store reads it at the
	// latest schema.
	_, err = postgres.Migrate(ctx, dsn)
	require.NoError(t, err)
	s, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	require.NoError(t, err)
	defer s.Close()
	jsonOf := func(evs []*backends.Event) []string {
		out := []string{}
		for _, ev := range evs {
			out = append(out, eventJSON(t, ev))
		}
		return out
	}
	list := func(q backends.EventQuery) []string {
		t.Helper()
		evs, err := s.ListEvents(ctx, &q)
		require.NoError(t, err)
		return jsonOf(evs)
	}
	require.Equal(t, jsonOf(old), list(backends.EventQuery{}))
	require.Equal(t, jsonOf(old[1:3]), list(backends.EventQuery{After: 1, Limit: 2}))
	require.Equal(t, jsonOf([]*backends.Event{old[0], old[2], old[3]}), list(backends.EventQuery{TaskID: a}))
	require.Equal(t, jsonOf(old[1:2]), list(backends.EventQuery{Namespaces: []string{"beta"}}))
	last, err := s.LastEventSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(len(old)), last)

	// A write after the migration numbers on.
	var sunk sinkLog
	_, err = s.CancelTask(sunk.ctx(ctx), &backends.CancelTaskParams{TaskID: b, Reason: "r", Now: now})
	require.NoError(t, err)
	require.NotEmpty(t, sunk.events)
	for i, ev := range sunk.events {
		require.Equal(t, int64(len(old)+1+i), ev.Seq)
	}
	require.Equal(t, jsonOf(sunk.events), list(backends.EventQuery{After: int64(len(old))}))
	require.Equal(t, jsonOf(append(old[1:2:2], sunk.events...)), list(backends.EventQuery{TaskID: b}))
}
