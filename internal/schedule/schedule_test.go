package schedule_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/schedule"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t.UTC().Truncate(time.Microsecond)
}

const workflowSrc = `
workflow "report" {
  namespace = "ops"
  context_schema = { type = "object", required = ["region"] }
  step "a" { handler = "builtin.noop" }
}
`

// catalog loads the workflow and one schedule block.
func catalog(t *testing.T, scheduleBlock string) *definition.Catalog {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "wf.hcl")
	require.NoError(t, writeFile(path, workflowSrc+scheduleBlock))
	p := definition.NewParser()
	ws, diags := p.Load(dir)
	require.False(t, diags.HasErrors(), diags.Error())
	require.Len(t, p.Schedules(), 1)
	return definition.NewCatalog(ws).WithSchedules(p.Schedules())
}

type node struct {
	eng   *engine.Engine
	sched *schedule.Scheduler
	clock *fakeClock
	store backends.Store
}

func newNode(t *testing.T, store backends.Store, cat *definition.Catalog, clock *fakeClock) *node {
	t.Helper()
	eng, err := engine.New(engine.Config{Store: store, Catalog: cat, Registry: builtin.NewRegistry(), Clock: clock, NodeID: t.Name()})
	require.NoError(t, err)
	s, err := schedule.New(schedule.Config{Engine: eng, Clock: clock})
	require.NoError(t, err)
	return &node{eng: eng, sched: s, clock: clock, store: store}
}

// firings returns the schedule's firings, oldest first.
func (n *node) firings(t *testing.T) []*backends.ScheduleFiring {
	t.Helper()
	fs, err := n.store.ScheduleFirings(context.Background(), "nightly", 0)
	require.NoError(t, err)
	out := make([]*backends.ScheduleFiring, len(fs))
	for i, f := range fs {
		out[len(fs)-1-i] = f
	}
	return out
}

func (n *node) tasks(t *testing.T) []*backends.Task {
	t.Helper()
	tasks, err := n.store.ListTasks(context.Background(), &backends.ListTasksParams{Tag: "schedule:nightly"})
	require.NoError(t, err)
	return tasks
}

func instants(fs []*backends.ScheduleFiring) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.At.Format(time.RFC3339))
	}
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func block(cron, tz, overlap, catchUp string) string {
	return fmt.Sprintf(`
schedule "nightly" {
  workflow = "ops/report"
  cron     = %q
  timezone = %q
  overlap  = %q
  catch_up = %q
  context  = { region = "eu" }
}
`, cron, tz, overlap, catchUp)
}

// A daily 09:00 Berlin rule fires at 08:00 UTC in winter and 07:00 UTC in
// summer; the hourly rule fires 23 times on the day clocks go forward.
func TestFiresInTimezoneAcrossDST(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		clock := &fakeClock{}
		clock.set(utc("2026-03-27T12:00:00Z"))
		n := newNode(t, open(t), catalog(t, block("0 9 * * *", "Europe/Berlin", "allow", "all")), clock)
		ctx := context.Background()

		next := n.sched.Tick(ctx)
		require.Equal(t, utc("2026-03-28T08:00:00Z"), next, "first sighting: nothing to catch up, next is 09:00 CET")
		require.Empty(t, n.firings(t))
		for range 3 {
			clock.set(next)
			next = n.sched.Tick(ctx)
		}
		require.Equal(t, []string{"2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"}, instants(n.firings(t)))
		require.Equal(t, utc("2026-03-31T07:00:00Z"), next)

		tasks := n.tasks(t)
		require.Len(t, tasks, 3)
		require.Equal(t, "ops", tasks[0].Namespace)
		require.Equal(t, "report", tasks[0].WorkflowName)
		require.JSONEq(t, `{"region":"eu"}`, string(tasks[0].Context))
		require.Equal(t, engine.ScheduleSource, tasks[0].SourceSystem)
		require.Equal(t, "schedule:nightly", tasks[0].Initiator)
	})
}

func TestHourlyOnSpringForwardDay(t *testing.T) {
	t.Parallel()
	cat := catalog(t, block("0 * * * *", "Europe/Berlin", "allow", "all"))
	sc := cat.Schedule("nightly")
	require.NotNil(t, sc)
	// 2026-03-29 in Berlin runs from 23:00 UTC on the 28th to 22:00 UTC.
	var got []time.Time
	for t0 := utc("2026-03-28T22:59:00Z"); ; {
		t0 = sc.Next(t0)
		if !t0.Before(utc("2026-03-29T22:00:00Z")) {
			break
		}
		got = append(got, t0)
	}
	require.Len(t, got, 23, "the hour from 02:00 to 03:00 does not exist")
	for i := 1; i < len(got); i++ {
		require.Equal(t, time.Hour, got[i].Sub(got[i-1]), "one firing per real hour")
	}
}

// On the night clocks go back, 02:30 exists twice in Berlin and fires
// once, at its first occurrence.
func TestDailyOnFallBackNight(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.set(utc("2026-10-24T12:00:00Z"))
	n := newNode(t, storetest.SQLite(t), catalog(t, block("30 2 * * *", "Europe/Berlin", "allow", "all")), clock)
	next := n.sched.Tick(context.Background())
	for range 3 {
		clock.set(next)
		next = n.sched.Tick(context.Background())
	}
	require.Equal(t, []string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"}, instants(n.firings(t)))
}

// downtime: the schedule was seen at 10:00 and fired through 10:05, then
// no node ran until 10:32: 10:10 ... 10:30 were missed.
func downtime(t *testing.T, open func(testing.TB) backends.Store, catchUp string) *node {
	t.Helper()
	clock := &fakeClock{}
	clock.set(utc("2026-12-07T10:00:00Z"))
	n := newNode(t, open(t), catalog(t, block("*/5 * * * *", "UTC", "allow", catchUp)), clock)
	ctx := context.Background()
	require.Equal(t, utc("2026-12-07T10:05:00Z"), n.sched.Tick(ctx))
	clock.set(utc("2026-12-07T10:05:00.002Z"))
	require.Equal(t, utc("2026-12-07T10:10:00Z"), n.sched.Tick(ctx))
	require.Equal(t, []string{"2026-12-07T10:05:00Z"}, instants(n.firings(t)))
	clock.set(utc("2026-12-07T10:32:00Z"))
	require.Equal(t, utc("2026-12-07T10:35:00Z"), n.sched.Tick(ctx))
	return n
}

func TestCatchUp(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		t.Run("none", func(t *testing.T) {
			t.Parallel()
			n := downtime(t, open, "none")
			require.Equal(t, []string{"2026-12-07T10:05:00Z"}, instants(n.firings(t)), "missed firings dropped")
			// They stay dropped, and the next one runs on time.
			n.clock.set(utc("2026-12-07T10:35:00.5Z"))
			n.sched.Tick(context.Background())
			require.Equal(t, []string{"2026-12-07T10:05:00Z", "2026-12-07T10:35:00Z"}, instants(n.firings(t)))
		})
		t.Run("one", func(t *testing.T) {
			t.Parallel()
			n := downtime(t, open, "one")
			require.Equal(t, []string{"2026-12-07T10:05:00Z", "2026-12-07T10:30:00Z"}, instants(n.firings(t)), "the most recent missed runs once")
			n.sched.Tick(context.Background())
			require.Len(t, n.firings(t), 2, "nothing more")
		})
		t.Run("all", func(t *testing.T) {
			t.Parallel()
			n := downtime(t, open, "all")
			require.Equal(t, []string{"2026-12-07T10:05:00Z", "2026-12-07T10:10:00Z", "2026-12-07T10:15:00Z",
				"2026-12-07T10:20:00Z", "2026-12-07T10:25:00Z", "2026-12-07T10:30:00Z"}, instants(n.firings(t)))
			require.Len(t, n.tasks(t), 6)
		})
	})
}

func TestCatchUpAllIsCapped(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.set(utc("2026-12-07T00:00:00Z"))
	n := newNode(t, storetest.SQLite(t), catalog(t, block("* * * * *", "UTC", "skip", "all")), clock)
	ctx := context.Background()
	n.sched.Tick(ctx)
	clock.set(utc("2026-12-08T00:00:30Z")) // 1440 minutes later
	n.sched.Tick(ctx)
	fs := n.firings(t)
	require.Len(t, fs, schedule.MaxCatchUp)
	require.Equal(t, "2026-12-08T00:00:00Z", fs[len(fs)-1].At.Format(time.RFC3339))
	require.Equal(t, backends.FiringCreated, fs[0].Outcome)
	require.Equal(t, backends.FiringSkipped, fs[1].Outcome, "overlap skip: the first task is still pending")
	require.Len(t, n.tasks(t), 1)
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		run := func(t *testing.T, overlap string) *node {
			clock := &fakeClock{}
			clock.set(utc("2026-12-07T10:00:00Z"))
			n := newNode(t, open(t), catalog(t, block("*/5 * * * *", "UTC", overlap, "one")), clock)
			for _, at := range []string{"2026-12-07T10:00:00Z", "2026-12-07T10:05:00Z", "2026-12-07T10:10:00Z"} {
				clock.set(utc(at).Add(time.Millisecond))
				n.sched.Tick(context.Background())
			}
			require.Equal(t, []string{"2026-12-07T10:05:00Z", "2026-12-07T10:10:00Z"}, instants(n.firings(t)))
			return n
		}
		t.Run("allow", func(t *testing.T) {
			t.Parallel()
			n := run(t, "allow")
			tasks := n.tasks(t)
			require.Len(t, tasks, 2)
			for _, task := range tasks {
				require.Equal(t, backends.StatePending, task.State, "both run side by side")
			}
		})
		t.Run("skip", func(t *testing.T) {
			t.Parallel()
			n := run(t, "skip")
			fs := n.firings(t)
			require.Equal(t, backends.FiringCreated, fs[0].Outcome)
			require.Equal(t, backends.FiringSkipped, fs[1].Outcome)
			require.Len(t, n.tasks(t), 1)
		})
		t.Run("cancel_previous", func(t *testing.T) {
			t.Parallel()
			n := run(t, "cancel_previous")
			fs := n.firings(t)
			first, err := n.store.GetTask(context.Background(), fs[0].TaskID)
			require.NoError(t, err)
			require.Equal(t, backends.StateCancelled, first.State)
			second, err := n.store.GetTask(context.Background(), fs[1].TaskID)
			require.NoError(t, err)
			require.Equal(t, backends.StatePending, second.State)
			events, err := n.store.ListEvents(context.Background(), &backends.EventQuery{TaskID: first.ID})
			require.NoError(t, err)
			var types []string
			for _, ev := range events {
				types = append(types, string(ev.Type))
			}
			require.Contains(t, types, "task.cancelled", "cancelled through the engine, with its events")
		})
	})
}

// A cancel_previous firing asked for again (a second node, late) answers
// the firing's task and cancels nothing: not that task, which is no
// "previous" one.
func TestCancelPreviousRepeatedKeepsItsTask(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		clock := &fakeClock{}
		clock.set(utc("2026-12-07T10:05:00Z"))
		n := newNode(t, open(t), catalog(t, block("*/5 * * * *", "UTC", "cancel_previous", "one")), clock)
		sc := n.eng.Catalog().Schedule("nightly")
		ctx := context.Background()
		f1, task, created, err := n.eng.FireSchedule(ctx, engine.FireRequest{Schedule: sc, Kind: backends.FiringScheduled, At: utc("2026-12-07T10:05:00Z")})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, f1.TaskID, task.ID)
		f2, task2, created, err := n.eng.FireSchedule(ctx, engine.FireRequest{Schedule: sc, Kind: backends.FiringScheduled, At: utc("2026-12-07T10:05:00Z")})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, f1.TaskID, f2.TaskID)
		require.Equal(t, backends.StatePending, task2.State, "the repeated firing left its own task alone")
	})
}

func TestPausedScheduleDoesNotFireNorCatchUp(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		clock := &fakeClock{}
		clock.set(utc("2026-12-07T10:00:00Z"))
		n := newNode(t, open(t), catalog(t, block("*/5 * * * *", "UTC", "allow", "all")), clock)
		ctx := context.Background()
		n.sched.Tick(ctx)
		_, _, err := n.store.SetSchedulePaused(ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: true, Actor: "t", Now: clock.Now()})
		require.NoError(t, err)
		clock.set(utc("2026-12-07T10:22:00Z"))
		require.True(t, n.sched.Tick(ctx).IsZero(), "a paused schedule is not due")
		require.Empty(t, n.firings(t))
		_, _, err = n.store.SetSchedulePaused(ctx, &backends.SetSchedulePausedParams{Name: "nightly", Paused: false, Actor: "t", Now: clock.Now()})
		require.NoError(t, err)
		require.Equal(t, utc("2026-12-07T10:25:00Z"), n.sched.Tick(ctx))
		require.Empty(t, n.firings(t), "firings due while paused are not caught up")
	})
}

// Two schedulers (two nodes) on one database, ticking at once at every
// instant, create one task per firing.
func TestTwoNodesFireOnce(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) (backends.Store, backends.Store){
		"sqlite": func(t *testing.T) (backends.Store, backends.Store) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "taskerd.db") + "?synchronous=normal"
			a, err := sqlite.Open(context.Background(), dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })
			b, err := sqlite.Open(context.Background(), dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			return a, b
		},
		"postgres": func(t *testing.T) (backends.Store, backends.Store) {
			dsn := pgtest.NewDatabase(t)
			a, err := postgres.Open(context.Background(), dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })
			b, err := postgres.Open(context.Background(), dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			return a, b
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sa, sb := open(t)
			cat := catalog(t, block("* * * * *", "UTC", "allow", "all"))
			clock := &fakeClock{}
			clock.set(utc("2026-12-07T10:00:00Z"))
			a, b := newNode(t, sa, cat, clock), newNode(t, sb, cat, clock)
			a.sched.Tick(context.Background())
			const minutes = 20
			for i := 1; i <= minutes; i++ {
				clock.set(utc("2026-12-07T10:00:00Z").Add(time.Duration(i)*time.Minute + time.Millisecond))
				var wg sync.WaitGroup
				for _, n := range []*node{a, b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						n.sched.Tick(context.Background())
					}()
				}
				wg.Wait()
			}
			fs := a.firings(t)
			require.Len(t, fs, minutes)
			tasks := a.tasks(t)
			require.Len(t, tasks, minutes, "one task per firing")
			seen := map[int64]bool{}
			for _, f := range fs {
				require.False(t, seen[f.TaskID])
				seen[f.TaskID] = true
			}
		})
	}
}

// staleStates is a store whose reads of the schedules' state are frozen:
// a node that read them, then was slow to fire what it found due.
type staleStates struct {
	backends.Store
	states []*backends.ScheduleState
}

func (s *staleStates) ScheduleStates(context.Context) ([]*backends.ScheduleState, error) {
	return s.states, nil
}

// A slow node fires from a stale read of the schedule's state, after the
// instants it finds due were fired by another node and some of their
// records deleted by retention: the recorded instants are answered, the
// deleted one is refused (not fired again, nor retried), and nothing new
// is recorded.
func TestSlowNodeDoesNotRefireDeletedFirings(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		ctx := context.Background()
		store := open(t)
		cat := catalog(t, block("*/5 * * * *", "UTC", "allow", "all"))
		clock := &fakeClock{}
		clock.set(utc("2026-12-07T10:00:00Z"))
		a := newNode(t, store, cat, clock)
		a.sched.Tick(ctx)
		stale, err := store.ScheduleStates(ctx)
		require.NoError(t, err)
		for _, at := range []string{"2026-12-07T10:05:00Z", "2026-12-07T10:10:00Z", "2026-12-07T10:15:00Z"} {
			clock.set(utc(at).Add(time.Millisecond))
			a.sched.Tick(ctx)
		}
		fs := a.firings(t)
		require.Equal(t, []string{"2026-12-07T10:05:00Z", "2026-12-07T10:10:00Z", "2026-12-07T10:15:00Z"}, instants(fs))
		// The tasks finish; retention deletes the firings before the last.
		for _, f := range fs {
			_, err := store.CancelTask(ctx, &backends.CancelTaskParams{TaskID: f.TaskID, Reason: "test", Now: clock.Now()})
			require.NoError(t, err)
		}
		n, err := store.DeleteScheduleFirings(ctx, clock.Now().Add(time.Second), 100)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, []string{"2026-12-07T10:15:00Z"}, instants(a.firings(t)))

		slow := newNode(t, &staleStates{Store: store, states: stale}, cat, clock)
		require.Equal(t, utc("2026-12-07T10:20:00Z"), slow.sched.Tick(ctx), "nothing to retry")
		require.Equal(t, []string{"2026-12-07T10:15:00Z"}, instants(a.firings(t)), "10:05 and 10:10 not fired again")
		require.Len(t, a.tasks(t), 3)
	})
}

// Run fires when the clock is past a firing and it is woken, and stops
// with its context.
func TestRunWakesAndStops(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.set(utc("2026-12-07T10:00:00Z"))
	n := newNode(t, storetest.SQLite(t), catalog(t, block("*/5 * * * *", "UTC", "allow", "one")), clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.sched.Run(ctx) }()
	require.Eventually(t, func() bool {
		st, err := n.store.ScheduleStates(context.Background())
		return err == nil && len(st) == 1
	}, 10*time.Second, 5*time.Millisecond, "the first pass notes the schedule")
	clock.set(utc("2026-12-07T10:05:00.1Z"))
	n.sched.Wake()
	require.Eventually(t, func() bool { return len(n.tasks(t)) == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// A firing that cannot create its task (here: no node registers the
// workflow's handler) records nothing, and is tried again after RetryDelay.
func TestFailedFiringIsRetried(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.set(utc("2026-12-07T10:00:00Z"))
	reg := engine.NewRegistry()
	eng, err := engine.New(engine.Config{Store: storetest.SQLite(t), Catalog: catalog(t, block("*/5 * * * *", "UTC", "allow", "one")),
		Registry: reg, Clock: clock, NodeID: t.Name()})
	require.NoError(t, err)
	s, err := schedule.New(schedule.Config{Engine: eng, Clock: clock, RetryDelay: 20 * time.Second})
	require.NoError(t, err)
	n := &node{eng: eng, sched: s, clock: clock, store: eng.Store()}
	ctx := context.Background()
	n.sched.Tick(ctx)
	clock.set(utc("2026-12-07T10:05:00.001Z"))
	require.Equal(t, utc("2026-12-07T10:05:20.001Z"), n.sched.Tick(ctx), "retried after RetryDelay")
	require.Empty(t, n.firings(t), "nothing recorded")
	clock.set(utc("2026-12-07T10:05:10Z"))
	require.Equal(t, utc("2026-12-07T10:05:20.001Z"), n.sched.Tick(ctx), "not before")
	require.Empty(t, n.firings(t))

	require.NoError(t, builtin.Register(reg))
	clock.set(utc("2026-12-07T10:05:20.001Z"))
	require.Equal(t, utc("2026-12-07T10:10:00Z"), n.sched.Tick(ctx))
	require.Equal(t, []string{"2026-12-07T10:05:00Z"}, instants(n.firings(t)), "the firing happens once it can")
}
