package backendtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// createTask creates a one-step task with the given namespace, workflow name
// and tags at now.
func (b *bundle) createTask(namespace, workflow string, tags []string, now time.Time) *backends.Task {
	b.t.Helper()
	task, _, err := b.store.CreateTask(b.ctx, &backends.CreateTaskParams{
		Namespace: namespace, WorkflowName: workflow, WorkflowVersion: "1.0.0",
		Context: json.RawMessage(`{}`), Tags: tags, Steps: []backends.NewStep{step("a")}, Now: now,
	})
	require.NoError(b.t, err)
	return task
}

func (b *bundle) listIDs(p backends.ListTasksParams) []int64 {
	b.t.Helper()
	tasks, err := b.store.ListTasks(b.ctx, &p)
	require.NoError(b.t, err)
	ids := []int64{}
	for _, t := range tasks {
		ids = append(ids, t.ID)
	}
	return ids
}

func testList(t *testing.T, newStore func(t *testing.T) backends.Store) {
	// Every path that creates a task notes its namespace: the one-statement
	// create, an idempotent one, and one whose steps are all bypassed.
	t.Run("TaskNamespaces", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		ns, err := b.store.TaskNamespaces(b.ctx)
		require.NoError(t, err)
		require.Equal(t, []string{}, ns)

		b.createTask("shop", "orders", nil, at(0))
		b.createTask("billing", "invoices", nil, at(time.Second))
		b.createTask("shop", "refunds", nil, at(2*time.Second))
		for range 2 { // the second is a replay: nothing new
			_, _, err = b.store.CreateTask(b.ctx, &backends.CreateTaskParams{
				Namespace: "keyed", WorkflowName: "w", WorkflowVersion: "1.0.0", Context: json.RawMessage(`{}`),
				IdempotencyKey: "k1", RequestHash: "h1", Steps: []backends.NewStep{step("a")}, Now: at(3 * time.Second),
			})
			require.NoError(t, err)
		}
		skipped := step("a")
		skipped.Skippable, skipped.Bypass = true, true
		_, _, err = b.store.CreateTask(b.ctx, &backends.CreateTaskParams{
			Namespace: "bypassed", WorkflowName: "w", WorkflowVersion: "1.0.0", Context: json.RawMessage(`{}`),
			Steps: []backends.NewStep{skipped}, Now: at(4 * time.Second),
		})
		require.NoError(t, err)

		ns, err = b.store.TaskNamespaces(b.ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"billing", "bypassed", "keyed", "shop"}, ns)
	})

	t.Run("FiltersAndPages", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		t1 := b.createTask("shop", "orders", []string{"eu", "vip"}, at(0))
		t2 := b.createTask("shop", "refunds", []string{"eu"}, at(time.Second))
		t3 := b.createTask("billing", "orders", nil, at(2*time.Second))
		t4 := b.createTask("shop", "orders", []string{"us"}, at(3*time.Second))
		// The claim takes the oldest task's step: t1 is in_progress.
		b.claimOne("a", at(4*time.Second))
		_, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: t2.ID, Now: at(5 * time.Second)})
		require.NoError(t, err)

		require.Equal(t, []int64{t4.ID, t3.ID, t2.ID, t1.ID}, b.listIDs(backends.ListTasksParams{}), "newest first")
		require.Equal(t, []int64{t4.ID, t2.ID, t1.ID}, b.listIDs(backends.ListTasksParams{Namespaces: []string{"shop"}}))
		require.Equal(t, []int64{t4.ID, t3.ID, t2.ID, t1.ID}, b.listIDs(backends.ListTasksParams{Namespaces: []string{"shop", "billing"}}))
		require.Empty(t, b.listIDs(backends.ListTasksParams{Namespaces: []string{"nobody"}}))
		require.Equal(t, []int64{t4.ID, t3.ID, t1.ID}, b.listIDs(backends.ListTasksParams{WorkflowName: "orders"}))
		require.Equal(t, []int64{t2.ID}, b.listIDs(backends.ListTasksParams{States: []backends.State{backends.StateCancelled}}))
		require.Equal(t, []int64{t4.ID, t3.ID}, b.listIDs(backends.ListTasksParams{States: []backends.State{backends.StatePending}}))
		require.Equal(t, []int64{t2.ID, t1.ID}, b.listIDs(backends.ListTasksParams{States: []backends.State{backends.StateInProgress, backends.StateCancelled}}))
		require.Equal(t, []int64{t2.ID, t1.ID}, b.listIDs(backends.ListTasksParams{Tag: "eu"}))
		require.Equal(t, []int64{t1.ID}, b.listIDs(backends.ListTasksParams{Tag: "vip", Namespaces: []string{"shop"}, WorkflowName: "orders"}))
		after, before := at(0), at(3*time.Second)
		require.Equal(t, []int64{t3.ID, t2.ID}, b.listIDs(backends.ListTasksParams{CreatedAfter: &after, CreatedBefore: &before}), "both bounds exclusive")

		// Pages of two, by cursor.
		page1 := b.listIDs(backends.ListTasksParams{Limit: 2})
		require.Equal(t, []int64{t4.ID, t3.ID}, page1)
		page2 := b.listIDs(backends.ListTasksParams{Limit: 2, BeforeID: page1[1]})
		require.Equal(t, []int64{t2.ID, t1.ID}, page2)
		require.Empty(t, b.listIDs(backends.ListTasksParams{Limit: 2, BeforeID: page2[1]}))

		tasks, err := b.store.ListTasks(b.ctx, &backends.ListTasksParams{Tag: "vip"})
		require.NoError(t, err)
		require.Len(t, tasks, 1)
		require.Equal(t, b.task(t1.ID), tasks[0], "rows are whole tasks")
	})

	t.Run("UpdateTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		reason := "re-run for audit"
		got, err := b.store.UpdateTask(b.ctx, &backends.UpdateTaskParams{TaskID: task.ID, Reason: &reason, Now: at(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, reason, got.Reason)
		require.Equal(t, []string{"a", "b"}, got.Tags, "tags unchanged when nil")
		require.Equal(t, at(time.Minute), got.UpdatedAt)
		require.Equal(t, got, b.task(task.ID))

		got, err = b.store.UpdateTask(b.ctx, &backends.UpdateTaskParams{TaskID: task.ID, Tags: []string{}, Now: at(2 * time.Minute)})
		require.NoError(t, err)
		require.Equal(t, reason, got.Reason, "reason unchanged when nil")
		require.Equal(t, []string{}, got.Tags)
		require.Equal(t, backends.StatePending, got.State)

		_, err = b.store.UpdateTask(b.ctx, &backends.UpdateTaskParams{TaskID: task.ID + 100, Reason: &reason, Now: at(0)})
		require.ErrorIs(t, err, backends.ErrNotFound)
	})

	t.Run("Stats", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		empty, err := b.store.Stats(b.ctx, at(0))
		require.NoError(t, err)
		for _, s := range backends.AllStates {
			require.Zero(t, empty.Tasks[s])
			require.Zero(t, empty.Steps[s])
			require.Contains(t, empty.Tasks, s)
		}

		// Four one-step tasks: one completes, one fails retryably (backoff
		// 2s from 10s), one fails permanently, one stays pending.
		for range 4 {
			b.create(step("a"))
		}
		now := at(10 * time.Second)
		b.complete(b.claimOne("a", now), now)
		b.fail(b.claimOne("a", now), true, nil, now)
		b.fail(b.claimOne("a", now), false, nil, now)

		st, err := b.store.Stats(b.ctx, now)
		require.NoError(t, err)
		require.Equal(t, 1, st.Tasks[backends.StateComplete])
		require.Equal(t, 1, st.Tasks[backends.StateError], "the permanent failure blocks its task")
		require.Equal(t, 1, st.Tasks[backends.StateInProgress], "the retryable one waits")
		require.Equal(t, 1, st.Tasks[backends.StatePending])
		require.Equal(t, 1, st.Steps[backends.StateComplete])
		require.Equal(t, 2, st.Steps[backends.StateError])
		require.Equal(t, 1, st.Steps[backends.StatePending])
		require.Equal(t, 1, st.RetryableErrors)
		require.Equal(t, 1, st.InBackoff)
		require.Equal(t, 1, st.Exhausted)
		require.Equal(t, 1, st.ReadySteps, "the pending task's step; the retry waits for its backoff")

		// Once the backoff is over the retryable step is no longer in it.
		st, err = b.store.Stats(b.ctx, now.Add(2*time.Second))
		require.NoError(t, err)
		require.Equal(t, 1, st.RetryableErrors)
		require.Zero(t, st.InBackoff)
		require.Equal(t, 2, st.ReadySteps, "and now the retry too")
	})
}
