package backendtest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// fireParams is a scheduled firing of schedule "nightly" at instant at,
// recorded at now, whose task is one noop step.
func fireParams(at, now time.Time) *backends.FireScheduleParams {
	return fireParamsOf("nightly", at, now)
}

// fireParamsOf is fireParams for the schedule name.
func fireParamsOf(name string, at, now time.Time) *backends.FireScheduleParams {
	return &backends.FireScheduleParams{
		Schedule: name, Kind: backends.FiringScheduled, At: at,
		Task: &backends.CreateTaskParams{
			Namespace: "default", WorkflowName: "test", WorkflowVersion: "0.1.0",
			Context: json.RawMessage(`{}`), Initiator: "schedule:" + name, SourceSystem: "taskerd-scheduler",
			Tags: []string{"schedule:" + name}, IdempotencyKey: "schedule/" + name + "/" + at.Format(time.RFC3339Nano),
			RequestHash: "h-" + at.Format(time.RFC3339Nano), Steps: []backends.NewStep{step("a")}, Now: now,
		},
	}
}

// finishing makes the firing's task one bypassed step: it is finished
// (resolved_manually) as soon as it is created.
func finishing(p *backends.FireScheduleParams) *backends.FireScheduleParams {
	p.Task.Steps = []backends.NewStep{{Name: "x", Handler: "builtin.noop", Bypass: true}}
	return p
}

func (b *bundle) scheduleTasks() []*backends.Task {
	b.t.Helper()
	tasks, err := b.store.ListTasks(b.ctx, &backends.ListTasksParams{Tag: "schedule:nightly"})
	require.NoError(b.t, err)
	return tasks
}

func testSchedules(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("EnsureKeepsFirstSeen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.Equal(t, "nightly", st.Name)
		require.True(t, st.FirstSeenAt.Equal(base))
		require.False(t, st.Paused)
		require.Nil(t, st.HandledThrough)
		require.True(t, st.Baseline().Equal(base))
		st, err = b.store.EnsureSchedule(b.ctx, "nightly", at(time.Hour))
		require.NoError(t, err)
		require.True(t, st.FirstSeenAt.Equal(base), "a later node does not move the first sighting")
	})

	t.Run("FiringRecordsItsTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		fireAt := at(time.Minute)
		f, created, err := b.store.FireSchedule(b.ctx, fireParams(fireAt, at(time.Minute+time.Second)))
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, backends.FiringCreated, f.Outcome)
		require.Equal(t, backends.FiringScheduled, f.Kind)
		require.True(t, f.At.Equal(fireAt))
		require.NotZero(t, f.TaskID)
		task := b.task(f.TaskID)
		require.Equal(t, []string{"schedule:nightly"}, task.Tags)
		require.Equal(t, backends.StatePending, task.State)

		st, err := b.store.EnsureSchedule(b.ctx, "nightly", at(time.Hour))
		require.NoError(t, err)
		require.NotNil(t, st.HandledThrough)
		require.True(t, st.HandledThrough.Equal(fireAt))
		require.True(t, st.FirstSeenAt.Equal(at(time.Minute+time.Second)), "firing first sees the schedule")

		// The same firing again: nothing written, the first's task answered.
		again, created, err := b.store.FireSchedule(b.ctx, fireParams(fireAt, at(2*time.Minute)))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, f.TaskID, again.TaskID)
		require.Len(t, b.scheduleTasks(), 1)

		firings, err := b.store.ScheduleFirings(b.ctx, "nightly", 0)
		require.NoError(t, err)
		require.Len(t, firings, 1)
		require.Equal(t, f.TaskID, firings[0].TaskID)
	})

	t.Run("FiringWithoutItsTaskIsNotRecorded", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		p := fireParams(at(time.Minute), at(time.Minute))
		// A step depending on a later one: the task's insert fails.
		p.Task.Steps = []backends.NewStep{step("a", "b"), step("b")}
		_, _, err := b.store.FireSchedule(b.ctx, p)
		require.Error(t, err)
		firings, err := b.store.ScheduleFirings(b.ctx, "nightly", 0)
		require.NoError(t, err)
		require.Empty(t, firings, "the firing went with its task")
		require.Empty(t, b.scheduleTasks())
		states, err := b.store.ScheduleStates(b.ctx)
		require.NoError(t, err)
		for _, st := range states {
			require.Nil(t, st.HandledThrough)
		}
		// The firing can then happen.
		f, created, err := b.store.FireSchedule(b.ctx, fireParams(at(time.Minute), at(time.Minute)))
		require.NoError(t, err)
		require.True(t, created)
		require.NotZero(t, f.TaskID)
	})

	t.Run("ConcurrentFiringsCreateOneTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners int
			taskIDs = map[int64]bool{}
		)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, created, err := b.store.FireSchedule(b.ctx, fireParams(at(time.Minute), at(time.Minute)))
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				taskIDs[f.TaskID] = true
				if created {
					winners++
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, winners)
		require.Len(t, taskIDs, 1, "every caller is answered the one task")
		require.Len(t, b.scheduleTasks(), 1)
	})

	t.Run("SkipIfRunning", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		first, _, err := b.store.FireSchedule(b.ctx, fireParams(at(time.Minute), at(time.Minute)))
		require.NoError(t, err)
		unfinished, err := b.store.UnfinishedScheduleTasks(b.ctx, "nightly", at(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, []int64{first.TaskID}, unfinished)
		unfinished, err = b.store.UnfinishedScheduleTasks(b.ctx, "nightly", at(time.Minute))
		require.NoError(t, err)
		require.Empty(t, unfinished, "only firings before the instant")

		p := fireParams(at(2*time.Minute), at(2*time.Minute))
		p.SkipIfRunning = true
		skipped, created, err := b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		require.True(t, created, "the skip is recorded")
		require.Equal(t, backends.FiringSkipped, skipped.Outcome)
		require.Zero(t, skipped.TaskID)
		require.Len(t, b.scheduleTasks(), 1)
		st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.True(t, st.HandledThrough.Equal(at(2*time.Minute)), "a skipped firing is handled")

		_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: first.TaskID, Reason: "test", Now: at(3 * time.Minute)})
		require.NoError(t, err)
		unfinished, err = b.store.UnfinishedScheduleTasks(b.ctx, "nightly", at(time.Hour))
		require.NoError(t, err)
		require.Empty(t, unfinished)
		p = fireParams(at(4*time.Minute), at(4*time.Minute))
		p.SkipIfRunning = true
		f, created, err := b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, backends.FiringCreated, f.Outcome)
		require.NotZero(t, f.TaskID)

		firings, err := b.store.ScheduleFirings(b.ctx, "nightly", 2)
		require.NoError(t, err)
		require.Len(t, firings, 2)
		require.True(t, firings[0].At.Equal(at(4*time.Minute)), "newest first")
		require.True(t, firings[1].At.Equal(at(2*time.Minute)))
	})

	t.Run("ManualFiringLeavesCatchUpAlone", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		p := fireParams(at(time.Minute), at(time.Minute))
		p.Kind, p.Actor = backends.FiringManual, "alice"
		p.Task.IdempotencyKey = "schedule/nightly/manual/1"
		f, created, err := b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "alice", f.Actor)
		require.Equal(t, backends.FiringManual, f.Kind)
		// A scheduled firing at the same instant is another firing.
		g, created, err := b.store.FireSchedule(b.ctx, fireParams(at(time.Minute), at(time.Minute)))
		require.NoError(t, err)
		require.True(t, created)
		require.NotEqual(t, f.TaskID, g.TaskID)
		st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.True(t, st.HandledThrough.Equal(at(time.Minute)))

		p = fireParams(at(time.Hour), at(time.Hour))
		p.Kind, p.Task.IdempotencyKey = backends.FiringManual, "schedule/nightly/manual/2"
		_, _, err = b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		st, err = b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.True(t, st.HandledThrough.Equal(at(time.Minute)), "a manual firing does not count as a scheduled one")
	})

	// An instant at or before the last one handled that has no record
	// (passed over by a later firing, dropped, or its record deleted) is
	// refused: only the record of a firing, while it exists, is answered.
	t.Run("HandledInstantIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		later, created, err := b.store.FireSchedule(b.ctx, fireParams(at(2*time.Minute), at(2*time.Minute)))
		require.NoError(t, err)
		require.True(t, created)

		// A slow node asks for an earlier instant, passed over meanwhile.
		f, created, err := b.store.FireSchedule(b.ctx, fireParams(at(time.Minute), at(3*time.Minute)))
		require.ErrorIs(t, err, backends.ErrFiringHandled)
		require.Nil(t, f)
		require.False(t, created)
		// The recorded instant is still answered.
		again, created, err := b.store.FireSchedule(b.ctx, fireParams(at(2*time.Minute), at(3*time.Minute)))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, later.TaskID, again.TaskID)

		// Instants dropped by catch_up are handled too.
		require.NoError(t, b.store.SkipScheduleThrough(b.ctx, "nightly", at(10*time.Minute), at(10*time.Minute)))
		for _, d := range []time.Duration{5 * time.Minute, 10 * time.Minute} {
			_, _, err = b.store.FireSchedule(b.ctx, fireParams(at(d), at(11*time.Minute)))
			require.ErrorIs(t, err, backends.ErrFiringHandled, d)
		}
		firings, err := b.store.ScheduleFirings(b.ctx, "nightly", 0)
		require.NoError(t, err)
		require.Len(t, firings, 1, "nothing recorded by the refusals")
		require.Len(t, b.scheduleTasks(), 1)
		st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.True(t, st.HandledThrough.Equal(at(10*time.Minute)))

		// A manual firing is not a scheduled instant: it is not refused.
		p := fireParams(at(time.Minute), at(12*time.Minute))
		p.Kind, p.Actor, p.Task.IdempotencyKey = backends.FiringManual, "alice", "schedule/nightly/manual/1"
		_, created, err = b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		// The next instant fires.
		_, created, err = b.store.FireSchedule(b.ctx, fireParams(at(15*time.Minute), at(15*time.Minute)))
		require.NoError(t, err)
		require.True(t, created)
	})

	t.Run("DeleteOldFirings", func(t *testing.T) { testDeleteScheduleFirings(t, newStore) })

	t.Run("SkipThroughOnlyMovesForward", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		require.NoError(t, b.store.SkipScheduleThrough(b.ctx, "nightly", at(time.Hour), at(time.Hour)))
		require.NoError(t, b.store.SkipScheduleThrough(b.ctx, "nightly", at(time.Minute), at(2*time.Hour)))
		st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
		require.NoError(t, err)
		require.True(t, st.HandledThrough.Equal(at(time.Hour)))
		require.True(t, st.Baseline().Equal(at(time.Hour)))
		require.Empty(t, b.scheduleTasks())
	})

	t.Run("PauseAndResumePersist", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		st, changed, err := b.store.SetSchedulePaused(b.ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: true, Actor: "alice", Now: at(time.Minute)})
		require.NoError(t, err)
		require.True(t, changed)
		require.True(t, st.Paused)
		require.Equal(t, "alice", st.PausedBy)
		require.True(t, st.PausedAt.Equal(at(time.Minute)))

		_, changed, err = b.store.SetSchedulePaused(b.ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: true, Actor: "bob", Now: at(2 * time.Minute)})
		require.NoError(t, err)
		require.False(t, changed, "already paused")
		states, err := b.store.ScheduleStates(b.ctx)
		require.NoError(t, err)
		require.Len(t, states, 1)
		require.True(t, states[0].Paused)
		require.Equal(t, "alice", states[0].PausedBy)

		st, changed, err = b.store.SetSchedulePaused(b.ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: false, Actor: "bob", Now: at(time.Hour)})
		require.NoError(t, err)
		require.True(t, changed)
		require.False(t, st.Paused)
		require.True(t, st.ResumedAt.Equal(at(time.Hour)))
		require.True(t, st.Baseline().Equal(at(time.Hour)), "firings due while paused are not caught up")
		_, changed, err = b.store.SetSchedulePaused(b.ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: false, Now: at(2 * time.Hour)})
		require.NoError(t, err)
		require.False(t, changed)
	})
}

// testDeleteScheduleFirings: old firings go, in batches, oldest recorded
// first; the last firing of each schedule and the firings of unfinished
// tasks stay; a deleted instant does not fire again.
func testDeleteScheduleFirings(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	cutoff := at(10 * time.Minute)
	fire := func(p *backends.FireScheduleParams) *backends.ScheduleFiring {
		t.Helper()
		f, created, err := b.store.FireSchedule(b.ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		return f
	}
	manual := func(p *backends.FireScheduleParams) *backends.FireScheduleParams {
		p.Kind, p.Actor = backends.FiringManual, "alice"
		p.Task.IdempotencyKey = "schedule/" + p.Schedule + "/manual/" + p.At.Format(time.RFC3339Nano)
		return p
	}

	// nightly: old and finished (1m), old with its task unfinished (2m),
	// old and skipped, without a task (3m), old manual and finished (4m),
	// old but recorded after the cutoff (5m, caught up late), and its last
	// instant, fired both manually and by the rule (6m).
	fire(finishing(fireParams(at(time.Minute), at(time.Minute))))
	running := fire(fireParams(at(2*time.Minute), at(2*time.Minute)))
	p := fireParams(at(3*time.Minute), at(3*time.Minute))
	p.SkipIfRunning = true
	require.Equal(t, backends.FiringSkipped, fire(p).Outcome)
	fire(finishing(manual(fireParams(at(4*time.Minute), at(4*time.Minute)))))
	fire(finishing(fireParams(at(5*time.Minute), at(30*time.Minute))))
	fire(finishing(manual(fireParams(at(6*time.Minute), at(6*time.Minute)))))
	fire(finishing(fireParams(at(6*time.Minute), at(6*time.Minute))))
	// hourly: one old firing, its last.
	fire(finishing(fireParamsOf("hourly", at(time.Minute), at(time.Minute))))

	instants := func(name string) []string {
		t.Helper()
		fs, err := b.store.ScheduleFirings(b.ctx, name, 0)
		require.NoError(t, err)
		var out []string
		for _, f := range fs {
			out = append(out, string(f.Kind)+"@"+f.At.Sub(base).String())
		}
		return out
	}
	last := func(name string) *backends.ScheduleFiring {
		t.Helper()
		fs, err := b.store.ScheduleFirings(b.ctx, name, 1)
		require.NoError(t, err)
		require.Len(t, fs, 1)
		return fs[0]
	}
	lastNightly, lastHourly := last("nightly"), last("hourly")
	require.Equal(t, []string{"manual@6m0s", "scheduled@6m0s", "scheduled@5m0s", "manual@4m0s", "scheduled@3m0s",
		"scheduled@2m0s", "scheduled@1m0s"}, instants("nightly"))

	// Nothing before a cutoff earlier than every record; a limit of 0
	// deletes nothing.
	n, err := b.store.DeleteScheduleFirings(b.ctx, at(30*time.Second), 10)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = b.store.DeleteScheduleFirings(b.ctx, cutoff, 0)
	require.NoError(t, err)
	require.Zero(t, n)

	// Batches of two, oldest recorded first.
	n, err = b.store.DeleteScheduleFirings(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{"manual@6m0s", "scheduled@6m0s", "scheduled@5m0s", "manual@4m0s", "scheduled@2m0s"}, instants("nightly"),
		"1m and 3m first; 2m's task is unfinished")
	n, err = b.store.DeleteScheduleFirings(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = b.store.DeleteScheduleFirings(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, []string{"manual@6m0s", "scheduled@6m0s", "scheduled@5m0s", "scheduled@2m0s"}, instants("nightly"))
	require.Equal(t, []string{"scheduled@1m0s"}, instants("hourly"), "a schedule's last firing stays, however old")
	require.Equal(t, lastNightly, last("nightly"), "the last firing shown is the same")
	require.Equal(t, lastHourly, last("hourly"))
	require.Len(t, b.scheduleTasks(), 6, "tasks are not touched")

	// Once its task finished, 2m goes too; a cutoff past every record
	// leaves the last instant of each schedule (both its firings).
	_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: running.TaskID, Reason: "test", Now: at(40 * time.Minute)})
	require.NoError(t, err)
	n, err = b.store.DeleteScheduleFirings(b.ctx, at(time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{"manual@6m0s", "scheduled@6m0s"}, instants("nightly"))
	require.Equal(t, []string{"scheduled@1m0s"}, instants("hourly"))
	require.Equal(t, lastNightly, last("nightly"))

	// The deleted instants do not fire again; the schedules' state is as
	// it was.
	for _, d := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute} {
		_, _, err := b.store.FireSchedule(b.ctx, fireParams(at(d), at(time.Hour)))
		require.ErrorIs(t, err, backends.ErrFiringHandled, d)
	}
	require.Len(t, b.scheduleTasks(), 6)
	st, err := b.store.EnsureSchedule(b.ctx, "nightly", base)
	require.NoError(t, err)
	require.True(t, st.HandledThrough.Equal(at(6*time.Minute)))
	fire(fireParams(at(7*time.Minute), at(7*time.Minute)))
}
