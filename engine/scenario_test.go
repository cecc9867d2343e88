package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// Scenarios of SEMANTICS §5 run end to end: real workflows parsed from HCL,
// built-in handlers, each store in stores. Retry bases are milliseconds so
// that backoffs pass quickly; tests wait on store state or events with a
// deadline, never a fixed sleep.

const fourStepHCL = `
workflow "four" {
  retry {
    base = "1ms"
    max  = "10ms"
  }
  step "s1" {
    handler = "builtin.noop"
  }
  step "s2" {
    handler = "builtin.noop"
  }
  step "s3" {
    handler    = "builtin.echo"
    depends_on = [step.s2]
  }
  step "s4" {
    handler    = "builtin.echo"
    depends_on = [step.s3]
  }
}
`

func TestFourStepWorkflow(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, fourStepHCL))
		ctx := context.Background()
		task := b.create("four", `{"order": 7}`)
		require.Equal(t, backends.StatePending, task.State)

		// Before anything runs: the two roots are ready.
		now := time.Now().UTC().Truncate(time.Microsecond)
		rows, err := b.store.StepReadiness(ctx, task.ID, now)
		require.NoError(t, err)
		var ready []string
		for _, r := range rows {
			if r.ReadyForExecution {
				ready = append(ready, r.Name)
			}
		}
		require.ElementsMatch(t, []string{"s1", "s2"}, ready)
		ec, err := b.store.TaskExecutionContext(ctx, task.ID, now)
		require.NoError(t, err)
		require.Equal(t, 4, ec.TotalSteps)
		require.Equal(t, 2, ec.ReadySteps)
		require.Equal(t, backends.StatusHasReadySteps, ec.ExecutionStatus)
		require.Equal(t, backends.HealthHealthy, ec.HealthStatus)
		require.Equal(t, 0.0, ec.CompletionPercentage)

		b.start()
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		for _, s := range steps {
			require.Equal(t, backends.StateComplete, s.State, s.Name)
			require.Equal(t, 1, s.Attempts, s.Name)
			require.True(t, s.Processed, s.Name)
		}
		// echo passes the parent's result on: s4 sees s3's, which saw s2's.
		var s4 struct {
			Context map[string]any             `json:"context"`
			Parents map[string]json.RawMessage `json:"parents"`
		}
		require.NoError(t, json.Unmarshal(steps["s4"].Results, &s4))
		require.Equal(t, map[string]any{"order": 7.0}, s4.Context)
		require.Contains(t, s4.Parents, "s3")

		ec, err = b.store.TaskExecutionContext(ctx, task.ID, time.Now().UTC())
		require.NoError(t, err)
		require.Equal(t, backends.StatusAllComplete, ec.ExecutionStatus)
		require.Equal(t, 100.0, ec.CompletionPercentage)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

func TestIndependentStepsRunConcurrently(t *testing.T) {
	t.Parallel()
	const src = `
workflow "concurrent" {
  step "s1" {
    handler = "builtin.sleep"
    config  = { duration = "200ms" }
  }
  step "s2" {
    handler = "builtin.sleep"
    config  = { duration = "200ms" }
  }
  step "s3" {
    handler    = "builtin.noop"
    depends_on = [step.s1, step.s2]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("concurrent", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		s1, s2, s3 := steps["s1"], steps["s2"], steps["s3"]
		// The two sleeps overlap: each started before the other ended.
		require.True(t, s1.StartedAt.Before(*s2.LastAttemptedAt), "s1 started %s, s2 ended %s", s1.StartedAt, s2.LastAttemptedAt)
		require.True(t, s2.StartedAt.Before(*s1.LastAttemptedAt), "s2 started %s, s1 ended %s", s2.StartedAt, s1.LastAttemptedAt)
		require.GreaterOrEqual(t, s1.LastAttemptedAt.Sub(*s1.StartedAt), 200*time.Millisecond)
		// s3 starts after both ended.
		require.False(t, s3.StartedAt.Before(*s1.LastAttemptedAt))
		require.False(t, s3.StartedAt.Before(*s2.LastAttemptedAt))
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

// linearHCL is six steps in a line; step_3 gets the given handler and
// config, and the workflow the given retry block body.
func linearHCL(name, retry, step3Handler, step3Config string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "workflow %q {\n  retry {\n%s\n  }\n", name, retry)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&sb, "  step \"step_%d\" {\n", i)
		if i == 3 {
			fmt.Fprintf(&sb, "    handler = %q\n", step3Handler)
			if step3Config != "" {
				fmt.Fprintf(&sb, "    config = %s\n", step3Config)
			}
		} else {
			sb.WriteString("    handler = \"builtin.echo\"\n")
		}
		if i > 1 {
			fmt.Fprintf(&sb, "    depends_on = [step.step_%d]\n", i-1)
		}
		sb.WriteString("  }\n")
	}
	sb.WriteString("}\n")
	return sb.String()
}

func TestLinearStepFailsOnce(t *testing.T) {
	t.Parallel()
	// backoff(1) = 2 × 400ms: long enough to look at the task while step_3
	// waits for its retry.
	src := linearHCL("linear", `limit = 3
    base = "400ms"
    max = "10s"`, "builtin.fail", `{ times = 1 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		ctx := context.Background()
		b.start()
		task := b.create("linear", "")

		failed := b.waitEvent(isEvent(engine.EventStepFailed, task.ID, "step_3"), "step_3 fails")
		require.True(t, failed.Retryable)
		require.Equal(t, 1, failed.Attempt)
		require.Equal(t, backends.ErrorKindHandler, failed.Error.Kind)
		backoff := b.waitEvent(isEvent(engine.EventStepBackoff, task.ID, "step_3"), "step_3 backs off")
		require.Equal(t, engine.BackoffExponential, backoff.BackoffKind)
		require.InDelta(t, 0.8, backoff.BackoffSeconds, 0.05)

		// While step_3 waits out its backoff the task is waiting, not
		// blocked (the bug Tasker once had).
		s3 := b.steps(task.ID)["step_3"]
		require.Equal(t, backends.StateError, s3.State)
		for _, at := range []time.Duration{time.Microsecond, 400 * time.Millisecond, 799 * time.Millisecond} {
			now := s3.LastFailureAt.Add(at)
			ec, err := b.store.TaskExecutionContext(ctx, task.ID, now)
			require.NoError(t, err)
			require.Equal(t, backends.StatusWaitingForDependencies, ec.ExecutionStatus, "at failure+%s", at)
			require.Equal(t, backends.HealthRecovering, ec.HealthStatus)
			require.Equal(t, 0, ec.BlockedSteps)
			require.Equal(t, 1, ec.FailedSteps)
		}
		ec, err := b.store.TaskExecutionContext(ctx, task.ID, s3.LastFailureAt.Add(800*time.Millisecond))
		require.NoError(t, err)
		require.Equal(t, backends.StatusHasReadySteps, ec.ExecutionStatus)
		cur, err := b.store.GetTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateInProgress, cur.State)

		b.waitTask(task.ID, backends.StateComplete)
		require.Equal(t, map[string]int{"step_1": 1, "step_2": 1, "step_3": 2, "step_4": 1, "step_5": 1, "step_6": 1}, attempts(b.steps(task.ID)))
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

func TestLinearStepExhaustsRetries(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "1ms"
    max = "10ms"`, "builtin.fail", `{ times = 5 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateError)
		steps := b.steps(task.ID)
		require.Equal(t, map[string]int{"step_1": 1, "step_2": 1, "step_3": 3, "step_4": 0, "step_5": 0, "step_6": 0}, attempts(steps))
		require.Equal(t, map[string]backends.State{
			"step_1": backends.StateComplete, "step_2": backends.StateComplete, "step_3": backends.StateError,
			"step_4": backends.StatePending, "step_5": backends.StatePending, "step_6": backends.StatePending,
		}, states(steps))
		ec, err := b.store.TaskExecutionContext(context.Background(), task.ID, time.Now().UTC())
		require.NoError(t, err)
		require.Equal(t, backends.StatusBlockedByFailures, ec.ExecutionStatus)
		require.Equal(t, backends.HealthBlocked, ec.HealthStatus)

		failed := b.waitEvent(isEvent(engine.EventTaskFailed, task.ID, ""), "task.failed")
		require.Equal(t, []string{"step_3"}, failed.StepNames)
		last := b.waitEvent(func(ev engine.Event) bool {
			return ev.Type == engine.EventStepFailed && ev.StepName == "step_3" && ev.Attempt == 3
		}, "third failure")
		require.False(t, last.Retryable)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

func TestLinearStepFailsTwiceThenSucceeds(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "1ms"
    max = "10ms"`, "builtin.fail", `{ times = 2, result = { third = "time" } }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, 3, steps["step_3"].Attempts)
		require.JSONEq(t, `{"third":"time"}`, string(steps["step_3"].Results))
		for _, n := range []string{"step_1", "step_2", "step_4", "step_5", "step_6"} {
			require.Equal(t, 1, steps[n].Attempts, n)
		}
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

func TestRequestedBackoff(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "1ms"
    max = "10ms"`, "builtin.fail", `{ times = 1, backoff_seconds = 120 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		ctx := context.Background()
		b.start()
		task := b.create("linear", "")
		backoff := b.waitEvent(isEvent(engine.EventStepBackoff, task.ID, "step_3"), "step_3 backs off")
		require.Equal(t, engine.BackoffRequested, backoff.BackoffKind)
		require.InDelta(t, 120, backoff.BackoffSeconds, 1)

		s3 := b.steps(task.ID)["step_3"]
		require.Equal(t, backends.StateError, s3.State)
		require.NotNil(t, s3.BackoffRequestSeconds)
		require.Equal(t, 120, *s3.BackoffRequestSeconds)
		want := s3.LastAttemptedAt.Add(120 * time.Second)

		readiness := func(at time.Time) backends.ReadinessRow {
			rows, err := b.store.StepReadiness(ctx, task.ID, at)
			require.NoError(t, err)
			for _, r := range rows {
				if r.Name == "step_3" {
					return r
				}
			}
			t.Fatal("no readiness row for step_3")
			return backends.ReadinessRow{}
		}
		r := readiness(s3.LastAttemptedAt.Add(time.Second))
		require.NotNil(t, r.NextRetryAt)
		require.True(t, want.Equal(*r.NextRetryAt), "next_retry_at %s, want %s", r.NextRetryAt, want)
		require.False(t, r.ReadyForExecution)
		require.False(t, readiness(want.Add(-time.Microsecond)).ReadyForExecution)
		require.True(t, readiness(want).ReadyForExecution)

		ec, err := b.store.TaskExecutionContext(ctx, task.ID, want.Add(-time.Second))
		require.NoError(t, err)
		require.Equal(t, backends.StatusWaitingForDependencies, ec.ExecutionStatus)
		// The store tells the engine when to wake for it.
		next, err := b.store.NextWakeup(ctx, s3.LastAttemptedAt.Add(time.Second))
		require.NoError(t, err)
		require.NotNil(t, next)
		require.True(t, want.Equal(*next), "next wake-up %s, want %s", next, want)
	})
}

const diamondHCL = `
workflow "diamond" {
  retry {
    limit = 3
    base  = "1ms"
    max   = "10ms"
  }
  step "start" {
    handler = "builtin.noop"
  }
  step "branch_a1" {
    handler    = "builtin.fail"
    config     = { times = 5 }
    depends_on = [step.start]
  }
  step "branch_a2" {
    handler    = "builtin.echo"
    depends_on = [step.branch_a1]
  }
  step "branch_b1" {
    handler    = "builtin.echo"
    depends_on = [step.start]
  }
  step "branch_b2" {
    handler    = "builtin.sleep"
    config     = { duration = "50ms" }
    depends_on = [step.branch_b1]
  }
  step "merge" {
    handler    = "builtin.echo"
    depends_on = [step.branch_a2, step.branch_b2]
  }
}
`

func TestDiamondWithFailingBranch(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, diamondHCL))
		b.start()
		task := b.create("diamond", "")
		b.waitTask(task.ID, backends.StateError)
		steps := b.steps(task.ID)
		require.Equal(t, map[string]backends.State{
			"start": backends.StateComplete, "branch_a1": backends.StateError, "branch_a2": backends.StatePending,
			"branch_b1": backends.StateComplete, "branch_b2": backends.StateComplete, "merge": backends.StatePending,
		}, states(steps))
		require.Equal(t, 3, steps["branch_a1"].Attempts)
		require.Equal(t, 0, steps["merge"].Attempts)
		require.Equal(t, 0, steps["branch_a2"].Attempts)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

// A branch blocked for good does not stop a step that waits out its
// backoff beside it (SEMANTICS §4): the task stays in progress, the
// waiting step runs again and completes, and only then, with nothing left
// that can run, does the task go to error.
func TestBlockedBranchBesideAWaitingOne(t *testing.T) {
	t.Parallel()
	const src = `
workflow "split" {
  retry {
    base = "1ms"
    max  = "10ms"
  }
  step "start" {
    handler = "builtin.noop"
  }
  step "doomed" {
    handler    = "builtin.fail"
    config     = { retryable = false }
    depends_on = [step.start]
  }
  step "patient" {
    handler    = "builtin.fail"
    config     = { times = 1, backoff_seconds = 1 }
    depends_on = [step.start]
  }
  step "merge" {
    handler    = "builtin.noop"
    depends_on = [step.doomed, step.patient]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("split", "")
		b.waitTask(task.ID, backends.StateError)
		steps := b.steps(task.ID)
		require.Equal(t, map[string]backends.State{
			"start": backends.StateComplete, "doomed": backends.StateError,
			"patient": backends.StateComplete, "merge": backends.StatePending,
		}, states(steps))
		require.Equal(t, 2, steps["patient"].Attempts)
		ec, err := b.store.TaskExecutionContext(context.Background(), task.ID, time.Now().UTC())
		require.NoError(t, err)
		require.Equal(t, backends.StatusBlockedByFailures, ec.ExecutionStatus)
		// Events reach subscribers after the commit that waitTask saw.
		failed := func() int {
			n := 0
			for _, ev := range b.taskEvents(task.ID) {
				if ev.Type == engine.EventTaskFailed {
					n++
				}
			}
			return n
		}
		require.Eventually(t, func() bool { return failed() > 0 }, 5*time.Second, 5*time.Millisecond, "task.failed is published")
		require.Equal(t, 1, failed(), "the task failed once, when nothing could run any more")
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

const parallelMergeHCL = `
workflow "parallel_merge" {
  retry {
    base = "1ms"
    max  = "10ms"
  }
  step "root_1" {
    handler = "builtin.fail"
    config  = { times = 1 }
  }
  step "root_2" {
    handler = "builtin.noop"
  }
  step "root_3" {
    handler = "builtin.fail"
    config  = { times = 1 }
  }
  step "root_4" {
    handler = "builtin.noop"
  }
  step "child_1" {
    handler    = "builtin.echo"
    depends_on = [step.root_1]
  }
  step "child_2" {
    handler    = "builtin.fail"
    config     = { times = 1 }
    depends_on = [step.root_2]
  }
  step "merge_all" {
    handler    = "builtin.echo"
    depends_on = [step.child_1, step.child_2, step.root_3, step.root_4]
  }
}
`

func TestParallelMergeWithFailures(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, parallelMergeHCL))
		b.start()
		task := b.create("parallel_merge", "")
		b.waitTask(task.ID, backends.StateComplete)
		require.Equal(t, map[string]int{
			"root_1": 2, "root_2": 1, "root_3": 2, "root_4": 1, "child_1": 1, "child_2": 2, "merge_all": 1,
		}, attempts(b.steps(task.ID)))
		var merge struct {
			Parents map[string]json.RawMessage `json:"parents"`
		}
		require.NoError(t, json.Unmarshal(b.steps(task.ID)["merge_all"].Results, &merge))
		require.Len(t, merge.Parents, 4)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

const treeHCL = `
workflow "tree" {
  retry {
    base = "1ms"
    max  = "10ms"
  }
  step "root" {
    handler = "builtin.noop"
  }
  step "setup_a" {
    handler    = "builtin.echo"
    depends_on = [step.root]
  }
  step "setup_b" {
    handler    = "builtin.fail"
    config     = { times = 1 }
    depends_on = [step.root]
  }
  step "leaf_a1" {
    handler    = "builtin.echo"
    depends_on = [step.setup_a]
  }
  step "leaf_a2" {
    handler    = "builtin.fail"
    config     = { times = 2 }
    depends_on = [step.setup_a]
  }
  step "leaf_b1" {
    handler    = "builtin.echo"
    depends_on = [step.setup_b]
  }
  step "leaf_b2" {
    handler    = "builtin.echo"
    depends_on = [step.setup_b]
  }
  step "aggregate" {
    handler    = "builtin.echo"
    depends_on = [step.leaf_a1, step.leaf_a2, step.leaf_b1, step.leaf_b2]
  }
}
`

func TestTreeWithFailures(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, treeHCL))
		b.start()
		task := b.create("tree", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, map[string]int{
			"root": 1, "setup_a": 1, "setup_b": 2, "leaf_a1": 1, "leaf_a2": 3, "leaf_b1": 1, "leaf_b2": 1, "aggregate": 1,
		}, attempts(steps))
		agg := steps["aggregate"]
		for _, leaf := range []string{"leaf_a1", "leaf_a2", "leaf_b1", "leaf_b2"} {
			require.False(t, agg.StartedAt.Before(*steps[leaf].LastAttemptedAt), "aggregate started before %s ended", leaf)
		}
		var execs int
		for _, ev := range b.taskEvents(task.ID) {
			if ev.Type == engine.EventStepExecutionRequested && ev.StepName == "aggregate" {
				execs++
			}
		}
		require.Equal(t, 1, execs)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}
