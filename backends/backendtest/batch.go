package backendtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// testBatch: each batch read equals the one-task reads of its tasks, in
// task order, whatever order and repeats the ids come in; an unknown id
// yields nothing.
func testBatch(t *testing.T, newStore func(t *testing.T) backends.Store) {
	b := setup(t, newStore)
	diamond := []backends.NewStep{step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")}
	t1, t2, t3 := b.create(diamond...), b.create(diamond...), b.create(step("solo"))
	// Give the tasks different histories: completions, a failure waiting
	// for its retry, and a task left untouched.
	cs := b.claim(2, at(time.Second))
	require.Len(t, cs, 2)
	b.complete(cs[0], at(time.Second))
	b.fail(cs[1], true, nil, at(time.Second))
	for _, c := range b.claim(10, at(2*time.Second)) {
		b.complete(c, at(2*time.Second))
	}
	ids := []int64{t3.ID, t1.ID, 1 << 40, t1.ID, t2.ID}
	known := []int64{t1.ID, t2.ID, t3.ID}

	tasks, err := b.store.GetTasks(b.ctx, ids)
	require.NoError(t, err)
	require.Equal(t, ofEach(known, func(id int64) []*backends.Task { return []*backends.Task{b.task(id)} }), tasks)

	steps, err := b.store.ListStepsOfTasks(b.ctx, ids)
	require.NoError(t, err)
	require.Equal(t, ofEach(known, b.steps), steps)

	edges, err := b.store.ListEdgesOfTasks(b.ctx, ids)
	require.NoError(t, err)
	require.Equal(t, ofEach(known, func(id int64) []backends.Edge {
		e, err := b.store.ListEdges(b.ctx, id)
		require.NoError(t, err)
		return e
	}), edges)

	trs, err := b.store.ListTransitionsOfTasks(b.ctx, ids)
	require.NoError(t, err)
	require.Equal(t, ofEach(known, b.transitions), trs)
	// Events: every page shape, including an after inside a task's history
	// and a limit that cuts some tasks' lists.
	all, err := b.store.ListEvents(b.ctx, &backends.EventQuery{TaskID: t1.ID})
	require.NoError(t, err)
	require.Greater(t, len(all), 3)
	for _, q := range []struct {
		after int64
		limit int
	}{{0, 0}, {0, 2}, {all[1].Seq, 0}, {all[1].Seq, 1}, {all[len(all)-1].Seq, 5}} {
		evs, err := b.store.ListEventsOfTasks(b.ctx, ids, q.after, q.limit)
		require.NoError(t, err)
		want := []*backends.Event{}
		for _, id := range known {
			e, err := b.store.ListEvents(b.ctx, &backends.EventQuery{TaskID: id, After: q.after, Limit: q.limit})
			require.NoError(t, err)
			want = append(want, e...)
		}
		require.Equal(t, want, evs, "after %d, limit %d", q.after, q.limit)
	}

	for _, none := range [][]int64{nil, {1 << 40}} {
		tasks, err := b.store.GetTasks(b.ctx, none)
		require.NoError(t, err)
		require.Empty(t, tasks)
		steps, err := b.store.ListStepsOfTasks(b.ctx, none)
		require.NoError(t, err)
		require.Empty(t, steps)
		evs, err := b.store.ListEventsOfTasks(b.ctx, none, 0, 0)
		require.NoError(t, err)
		require.Empty(t, evs)
	}
}

// ofEach is the one-task reads of the tasks ids, one after the other.
func ofEach[T any](ids []int64, read func(id int64) []T) []T {
	var out []T
	for _, id := range ids {
		out = append(out, read(id)...)
	}
	return out
}
