package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// A workflow with concurrency = 1 runs one step at a time across all its
// tasks, though the node has 8 workers and every step is ready at once;
// another workflow's steps run beside it meanwhile. Each limited step
// blocks until the test hands it a token, so two of them running at once
// would both be seen running (max).
func TestConcurrencyLimitOfAWorkflow(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		var running, maxRunning, calls atomic.Int32
		tokens := make(chan struct{})
		reg := engine.NewRegistry()
		require.NoError(t, reg.Register("test.limited", engine.HandlerFunc(func(ctx context.Context, _ *engine.StepRequest) (json.RawMessage, error) {
			n := running.Add(1)
			defer running.Add(-1)
			calls.Add(1)
			for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
			}
			select {
			case <-tokens:
				return json.RawMessage(`{}`), nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})))
		require.NoError(t, reg.Register("test.free", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		})))
		cat := parseWorkflows(t, `workflow "limited" {
  concurrency = 1
  step "a" { handler = "test.limited" }
  step "b" { handler = "test.limited" }
}
workflow "free" {
  step "only" { handler = "test.free" }
}`)
		b := setup(t, open(t), cat, withRegistry(reg))
		var tasks []*backends.Task
		for range 3 {
			tasks = append(tasks, b.create("default/limited", ""))
		}
		b.start()
		const steps = 6
		for i := range steps {
			eventually(t, func() bool { return running.Load() == 1 && calls.Load() == int32(i+1) }, "limited step %d running", i+1)
			if i == 0 {
				// While it runs, other work goes on: this task is claimed
				// after the limited step and completes.
				free := b.create("default/free", "")
				b.waitTask(free.ID, backends.StateComplete)
				require.Equal(t, 1, countInProgress(t, b.store, tasks), "limited steps in_progress")
			}
			tokens <- struct{}{}
		}
		for _, task := range tasks {
			b.waitTask(task.ID, backends.StateComplete)
		}
		require.Equal(t, int32(steps), calls.Load())
		require.Equal(t, int32(1), maxRunning.Load(), "limited steps running at once")
	})
}

// A task created while a wide fan-out keeps every worker busy runs in the
// first place a worker frees, not after the fan-out's other ready steps:
// with 2 workers, 100 ready steps of the wide task and one token handed to
// its handlers, the later task completes.
func TestLaterTaskIsNotStarvedByAFanOut(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		var running atomic.Int32
		tokens, release := make(chan struct{}), make(chan struct{})
		reg := engine.NewRegistry()
		require.NoError(t, reg.Register("test.wide", engine.HandlerFunc(func(ctx context.Context, _ *engine.StepRequest) (json.RawMessage, error) {
			running.Add(1)
			defer running.Add(-1)
			select {
			case <-tokens:
			case <-release:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			return json.RawMessage(`{}`), nil
		})))
		require.NoError(t, reg.Register("test.free", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		})))
		var src strings.Builder
		src.WriteString("workflow \"wide\" {\n")
		for i := range 100 {
			fmt.Fprintf(&src, "  step \"s%03d\" { handler = \"test.wide\" }\n", i)
		}
		src.WriteString("}\nworkflow \"late\" {\n  step \"only\" { handler = \"test.free\" }\n}\n")
		b := setup(t, open(t), parseWorkflows(t, src.String()), withRegistry(reg), func(c *engine.Config) {
			c.Workers, c.ClaimAhead = 2, -1
		})
		wide := b.create("default/wide", "")
		b.start()
		eventually(t, func() bool { return running.Load() == 2 }, "both workers busy with the wide task")
		late := b.create("default/late", "")
		tokens <- struct{}{} // one wide step ends: one worker is free
		b.waitTask(late.ID, backends.StateComplete)
		steps := b.steps(wide.ID)
		pending := 0
		for _, s := range steps {
			if s.State == backends.StatePending {
				pending++
			}
		}
		require.GreaterOrEqual(t, pending, 96, "the wide task's steps still waiting when the later task completed")
		close(release)
		b.waitTask(wide.ID, backends.StateComplete)
	})
}
