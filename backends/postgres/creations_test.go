package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// Creations written together are one transaction (one xmin), each caller
// gets its own task and events, numbered in order, as the log has them;
// one that cannot be written gets its error and takes nobody with it.
func TestCreationsTogetherAreOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var ps []*backends.CreateTaskParams
	for i := range 5 {
		p := oneStepTask(now)
		p.Namespace = fmt.Sprint("ns", i%2)
		ps = append(ps, p)
	}
	tasks, events, errs := postgres.CreateTogether(ctx, s, ps)
	var ids []int64
	var all []*backends.Event
	for i := range ps {
		require.NoError(t, errs[i])
		require.Equal(t, ps[i].Namespace, tasks[i].Namespace)
		require.Len(t, events[i], 1)
		require.Equal(t, backends.EventTaskInitializeRequested, events[i][0].Type)
		require.Equal(t, tasks[i].ID, events[i][0].TaskID)
		require.Equal(t, int64(i+1), events[i][0].Seq, "numbered in the callers' order")
		ids = append(ids, tasks[i].ID)
		all = append(all, events[i]...)
	}
	var xmins int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM tasks WHERE id = ANY ($1)`, ids).Scan(&xmins))
	require.Equal(t, 1, xmins, "one transaction")
	listed, err := s.ListEvents(ctx, &backends.EventQuery{})
	require.NoError(t, err)
	want, err := json.Marshal(all)
	require.NoError(t, err)
	got, err := json.Marshal(listed)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got))

	// A creation that cannot be written (a step given twice) fails alone.
	bad := oneStepTask(now)
	bad.Steps = append(bad.Steps, bad.Steps[0])
	tasks, events, errs = postgres.CreateTogether(ctx, s, []*backends.CreateTaskParams{oneStepTask(now), bad, oneStepTask(now)})
	require.NoError(t, errs[0])
	require.ErrorContains(t, errs[1], `step "a" given twice`)
	require.Nil(t, tasks[1])
	require.NoError(t, errs[2])
	require.Equal(t, []int64{6}, []int64{events[0][0].Seq})
	require.Equal(t, []int64{7}, []int64{events[2][0].Seq})
}

// A creation queued behind a batch the database does not answer returns at
// its caller's deadline, and is never written; the batch's own creation is
// written once the database answers again.
func TestQueuedCreationReturnsAtItsDeadlineAndIsNotWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, direct, px, _ := proxiedStore(t)
	_, err := s.LastEventSeq(ctx) // the pool holds a connection
	require.NoError(t, err)

	px.freeze()
	first := make(chan error, 1)
	go func() {
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, _, err := s.CreateTask(fctx, oneStepTask(time.Now().UTC()))
		first <- err
	}()
	require.Eventually(t, func() bool { w, writing := postgres.CreationQueue(s); return w == 0 && writing },
		10*time.Second, time.Millisecond, "the first creation's batch is being written")

	const deadline = 300 * time.Millisecond
	qctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	begun := time.Now()
	_, _, err = s.CreateTask(qctx, oneStepTask(time.Now().UTC()))
	require.ErrorIs(t, err, backends.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(begun), deadline+3*time.Second)
	waiting, _ := postgres.CreationQueue(s)
	require.Zero(t, waiting, "the caller took its creation out of the queue")

	px.thaw()
	select {
	case err := <-first:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first creation was not answered once the database was back")
	}
	var n int
	require.NoError(t, direct.Pool().QueryRow(ctx, `SELECT count(*) FROM tasks`).Scan(&n))
	require.Equal(t, 1, n, "only the first creation was written")
}

// Many callers creating at once, some giving up on the way: every caller
// gets one answer; each success is a task of its own, written once; a
// caller that gave up may or may not have its task written (its batch may
// have been under way), and nothing else is; the log has no gap.
func TestConcurrentCreationsEachAnsweredOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.Open(t)
	const callers = 60
	type answer struct {
		task *backends.Task
		err  error
	}
	answers := make(chan answer, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if i%5 == 0 {
				cancel() // gave up before or while queued
			}
			p := oneStepTask(time.Now().UTC())
			p.Reason = fmt.Sprint("caller ", i)
			task, _, err := s.CreateTask(cctx, p)
			answers <- answer{task, err}
		}()
	}
	wg.Wait()
	close(answers)
	ids := map[int64]bool{}
	failed := 0
	for a := range answers {
		if a.err != nil {
			require.ErrorIs(t, a.err, context.Canceled)
			failed++
			continue
		}
		require.False(t, ids[a.task.ID], "task %d answered twice", a.task.ID)
		ids[a.task.ID] = true
	}
	require.Equal(t, callers, len(ids)+failed, "one answer per caller")
	require.LessOrEqual(t, failed, callers/5)

	var written int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM tasks`).Scan(&written))
	require.GreaterOrEqual(t, written, len(ids))
	require.LessOrEqual(t, written, len(ids)+failed, "only the callers' tasks")
	evs, err := s.ListEvents(ctx, &backends.EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, written, "one event per task written")
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "no gap")
	}
	for id := range ids {
		_, err := s.GetTask(ctx, id)
		require.NoError(t, err)
	}
}
