package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// Many tasks at once on few workers: every one completes, in order, with
// its events told once.
func TestManyTasksAtOnce(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, treeHCL, parallelMergeHCL, fourStepHCL), func(c *engine.Config) { c.Workers = 4 })
		b.start()
		var tasks []*backends.Task
		for i := 0; i < 10; i++ {
			for _, wf := range []string{"tree", "parallel_merge", "four"} {
				tasks = append(tasks, b.create(wf, ""))
			}
		}
		for _, task := range tasks {
			b.waitTask(task.ID, backends.StateComplete)
		}
		for _, task := range tasks {
			b.checkOrdering(task.ID)
			b.checkEvents(task.ID)
		}
		require.Zero(t, b.eng.DroppedEvents())
	})
}

// A handler that ignores its context still cannot hold its step past the
// timeout (plus a short grace).
func TestTimeoutOfAHandlerThatIgnoresItsContext(t *testing.T) {
	t.Parallel()
	const src = `
workflow "stubborn" {
  retry {
    limit = 1
  }
  step "stubborn" {
    handler = "test.stubborn"
    timeout = "50ms"
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		require.NoError(t, reg.Register("test.stubborn", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			<-release
			return nil, nil
		})))
		b := setup(t, open(t), parseWorkflows(t, src), withRegistry(reg))
		b.start()
		task := b.create("stubborn", "")
		b.waitTask(task.ID, backends.StateError)
		s := b.steps(task.ID)["stubborn"]
		require.Equal(t, backends.ErrorKindTimeout, stepError(t, s).Kind)
		require.Less(t, s.LastAttemptedAt.Sub(*s.StartedAt), 10*time.Second)
		b.checkEvents(task.ID)
	})
}

// A workflow naming a handler this node does not have is unavailable: the
// engine refuses to create its tasks. A task created before (or by a node
// that has the handler) does not burn its attempts on this node: the step
// blocks at once, kind handler_missing, until an operator retries it once
// the handler is there.
func TestUnregisteredHandler(t *testing.T) {
	t.Parallel()
	const src = `
workflow "orphan" {
  retry {
    limit = 3
    base  = "1ms"
    max   = "1ms"
  }
  step "first" {
    handler = "builtin.noop"
  }
  step "pay" {
    handler    = "payments.charge"
    depends_on = [step.first]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		catalog := parseWorkflows(t, src)
		runnerReg := builtin.NewRegistry()
		runner := setup(t, store, catalog, withRegistry(runnerReg), func(c *engine.Config) { c.NodeID = "runner" })
		runner.start()

		_, _, err := runner.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: "orphan"})
		var unavailable *engine.UnavailableError
		require.ErrorAs(t, err, &unavailable)
		require.Equal(t, []string{"payments.charge"}, unavailable.Missing)
		require.Equal(t, []string{"payments.charge"}, runner.eng.MissingHandlers(catalog.All()[0]))
		require.Contains(t, err.Error(), `configure plugin "payments"`)

		creatorReg := builtin.NewRegistry()
		require.NoError(t, creatorReg.Register("payments.charge", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return nil, nil
		})))
		creator := setup(t, store, catalog, withRegistry(creatorReg), func(c *engine.Config) { c.NodeID = "creator" }) // never runs
		require.Empty(t, creator.eng.MissingHandlers(catalog.All()[0]))
		task := creator.create("orphan", "")

		runner.waitTask(task.ID, backends.StateError)
		steps := runner.steps(task.ID)
		require.Equal(t, backends.StateComplete, steps["first"].State)
		s := steps["pay"]
		require.Equal(t, 1, s.Attempts, "one attempt, not the retry limit's three")
		se := stepError(t, s)
		require.False(t, se.Retryable)
		require.Equal(t, backends.ErrorKindHandlerMissing, se.Kind)
		require.Contains(t, se.Message, `no handler "payments.charge" is registered on node runner`)
		ev := runner.waitEvent(isEvent(engine.EventStepFailed, task.ID, "pay"), "pay failed")
		require.False(t, ev.Retryable)
		require.Equal(t, backends.ErrorKindHandlerMissing, ev.Error.Kind)

		// The plugin is configured: an operator's retry runs the step.
		require.NoError(t, runnerReg.Register("payments.charge", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
			return json.RawMessage(`{"charged":true}`), nil
		})))
		_, err = runner.eng.RetryStep(context.Background(), s.ID, "plugin configured")
		require.NoError(t, err)
		runner.waitTask(task.ID, backends.StateComplete)
	})
}

// offsetClock is a controllable clock: the real time shifted by an offset
// the test sets.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.offset).Truncate(time.Microsecond)
}

// Every instant the engine writes comes from its Clock.
func TestEngineTimesComeFromItsClock(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		clock := &offsetClock{offset: 72 * time.Hour}
		b := setup(t, open(t), parseWorkflows(t, fourStepHCL), func(c *engine.Config) { c.Clock = clock })
		b.start()
		before := time.Now().Add(71 * time.Hour)
		task := b.create("four", "")
		b.waitTask(task.ID, backends.StateComplete)
		require.True(t, task.RequestedAt.After(before) || task.CreatedAt.After(before))
		for _, s := range b.steps(task.ID) {
			require.True(t, s.StartedAt.After(before), "%s started %s", s.Name, s.StartedAt)
			require.True(t, s.LastAttemptedAt.After(before))
		}
		for _, ev := range b.taskEvents(task.ID) {
			require.True(t, ev.Time.After(before), "%s at %s", ev.Type, ev.Time)
		}
	})
}

// A short requested backoff is waited out exactly (the engine wakes for
// it, with no poll to help), and the next claim clears it.
func TestRequestedBackoffIsWaitedOutAndCleared(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "1ms"
    max = "1ms"`, "builtin.fail", `{ times = 1, backoff_seconds = 1 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src), func(c *engine.Config) { c.SafetyPoll = time.Hour })
		b.start()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateComplete)
		s3 := b.steps(task.ID)["step_3"]
		require.Equal(t, 2, s3.Attempts)
		require.Nil(t, s3.BackoffRequestSeconds, "cleared by the retry's claim")
		failed := b.waitEvent(isEvent(engine.EventStepFailed, task.ID, "step_3"), "step_3 failed")
		require.False(t, s3.StartedAt.Before(failed.Time.Add(time.Second)), "retry claimed at %s, failure at %s", s3.StartedAt, failed.Time)
		require.Less(t, s3.StartedAt.Sub(failed.Time), 5*time.Second)
		b.checkEvents(task.ID)
	})
}
