package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

const typedHCL = `
workflow "typed" {
  namespace = "shop"
  version   = "1.0.0"
  context_schema = {
    type     = "object"
    required = ["order_id"]
    properties = {
      order_id = { type = "integer" }
      email    = { type = "string" }
    }
  }
  step "charge" {
    handler = "builtin.noop"
  }
  step "notify" {
    handler    = "builtin.noop"
    depends_on = [step.charge]
    skippable  = true
  }
}
workflow "typed" {
  namespace = "shop"
  version   = "2.0.0"
  step "charge" {
    handler = "builtin.noop"
  }
}
`

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, typedHCL))
		ctx := context.Background()
		create := func(req engine.CreateRequest) (*backends.Task, bool, error) {
			return b.eng.CreateTask(ctx, req)
		}

		// Schema violations, each with its pointer.
		_, _, err := create(engine.CreateRequest{Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"email": 5}`)})
		var cve *engine.ContextValidationError
		require.ErrorAs(t, err, &cve)
		pointers := map[string]string{}
		for _, v := range cve.Violations {
			pointers[v.Pointer] = v.Message
		}
		require.Contains(t, pointers, "", "missing order_id is reported at the root: %v", cve.Violations)
		require.Contains(t, pointers[""], "order_id")
		require.Contains(t, pointers, "/email", "%v", cve.Violations)
		require.Len(t, cve.Violations, 2, "%v", cve.Violations)

		// Not an object.
		for _, bad := range []string{`[1]`, `"x"`, `{`} {
			_, _, err = create(engine.CreateRequest{Workflow: "shop/typed@2.0.0", Context: json.RawMessage(bad)})
			require.ErrorAs(t, err, &cve, bad)
			require.Equal(t, "", cve.Violations[0].Pointer)
		}

		// Unknown workflow and version.
		_, _, err = create(engine.CreateRequest{Workflow: "shop/nope"})
		require.ErrorIs(t, err, engine.ErrUnknownWorkflow)
		var uwe *definition.UnknownWorkflowError
		require.ErrorAs(t, err, &uwe)
		_, _, err = create(engine.CreateRequest{Workflow: "shop/typed@3.0.0"})
		require.ErrorIs(t, err, engine.ErrUnknownWorkflow)
		var re *engine.RequestError
		_, _, err = create(engine.CreateRequest{Workflow: "shop/typed@x"})
		require.ErrorAs(t, err, &re)

		// Bypass only existing skippable steps.
		var be *engine.BypassError
		_, _, err = create(engine.CreateRequest{Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"order_id":1}`), BypassSteps: []string{"charge"}})
		require.ErrorAs(t, err, &be)
		require.False(t, be.Unknown)
		_, _, err = create(engine.CreateRequest{Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"order_id":1}`), BypassSteps: []string{"nope"}})
		require.ErrorAs(t, err, &be)
		require.True(t, be.Unknown)

		// Without a version the highest wins.
		task, created, err := create(engine.CreateRequest{Workflow: "shop/typed"})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "2.0.0", task.WorkflowVersion)

		// Idempotency: same key, same request (key order and spacing
		// aside) returns the task; a different request is a duplicate.
		req := engine.CreateRequest{Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"order_id": 1, "email": "a@b"}`), Tags: []string{"x"}, IdempotencyKey: "k1"}
		first, created, err := create(req)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, []string{"x"}, first.Tags)
		req.Context = json.RawMessage(`{"email":"a@b","order_id":1}`)
		again, created, err := create(req)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first.ID, again.ID)
		req.Context = json.RawMessage(`{"order_id": 2}`)
		_, _, err = create(req)
		require.ErrorIs(t, err, backends.ErrDuplicate)

		// Only created tasks emit task.initialize_requested.
		var inits int
		for _, ev := range b.taskEvents(first.ID) {
			if ev.Type == engine.EventTaskInitializeRequested {
				inits++
			}
		}
		require.Equal(t, 1, inits)

		// Steps go to the store in topological order with their settings.
		steps, err := b.store.ListSteps(ctx, first.ID)
		require.NoError(t, err)
		require.Len(t, steps, 2)
		require.Equal(t, "charge", steps[0].Name)
		require.Equal(t, "builtin.noop", steps[0].Handler)
		require.Equal(t, definition.DefaultRetryLimit, steps[0].RetryLimit)
		require.Equal(t, definition.DefaultRetryBase, steps[0].BackoffBase)
		require.Equal(t, definition.DefaultRetryMax, steps[0].BackoffMax)
		require.True(t, steps[1].Skippable)
	})
}

func TestBypassSteps(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, typedHCL))
		b.start()
		task, created, err := b.eng.CreateTask(context.Background(), engine.CreateRequest{
			Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"order_id": 3}`), BypassSteps: []string{"notify"},
		})
		require.NoError(t, err)
		require.True(t, created)
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, backends.StateResolvedManually, steps["notify"].State)
		require.Equal(t, 0, steps["notify"].Attempts)
		require.JSONEq(t, `{"bypassed": true}`, string(steps["notify"].Results))
		require.Equal(t, backends.StateComplete, steps["charge"].State)
		b.checkOrdering(task.ID)
		b.checkEvents(task.ID)
	})
}

func TestStepTimeout(t *testing.T) {
	t.Parallel()
	const src = `
workflow "slow" {
  retry {
    limit = 2
    base  = "1ms"
    max   = "1ms"
  }
  step "nap" {
    handler = "builtin.sleep"
    config  = { duration = "1m" }
    timeout = "100ms"
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("slow", "")
		b.waitTask(task.ID, backends.StateError)
		nap := b.steps(task.ID)["nap"]
		require.Equal(t, 2, nap.Attempts)
		se := stepError(t, nap)
		require.Equal(t, backends.ErrorKindTimeout, se.Kind)
		require.True(t, se.Retryable)
		// Each attempt ended at its timeout, not after the minute.
		require.Less(t, nap.LastAttemptedAt.Sub(*nap.StartedAt), 5*time.Second)
		b.checkEvents(task.ID)
	})
}

func TestHandlerPanicIsAFailure(t *testing.T) {
	t.Parallel()
	const src = `
workflow "panicky" {
  retry {
    base = "1ms"
    max  = "1ms"
  }
  step "first" {
    handler = "test.panic"
  }
  step "second" {
    handler    = "builtin.noop"
    depends_on = [step.first]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("test.panic", engine.HandlerFunc(func(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			if req.Attempt == 1 {
				panic("kaboom")
			}
			return json.RawMessage(`{"survived": true}`), nil
		})))
		b := setup(t, open(t), parseWorkflows(t, src), withRegistry(reg))
		b.start()
		task := b.create("panicky", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, 2, steps["first"].Attempts)
		failed := b.waitEvent(isEvent(engine.EventStepFailed, task.ID, "first"), "first fails")
		require.Contains(t, failed.Error.Message, "kaboom")
		require.Equal(t, backends.ErrorKindHandler, failed.Error.Kind)
		require.True(t, failed.Retryable)
		b.checkEvents(task.ID)
	})
}

func TestPermanentFailureBlocksAtOnce(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 5
    base = "1ms"
    max = "1ms"`, "builtin.fail", `{ retryable = false, message = "card declined" }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateError)
		s3 := b.steps(task.ID)["step_3"]
		require.Equal(t, 1, s3.Attempts)
		require.False(t, s3.Retryable)
		se := stepError(t, s3)
		require.Equal(t, backends.StepError{Message: "card declined", Retryable: false, Kind: backends.ErrorKindPermanent}, se)
		b.checkEvents(task.ID)
	})
}

func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	const src = `
workflow "long" {
  step "nap" {
    handler = "test.nap"
  }
  step "quick" {
    handler = "builtin.noop"
  }
  step "after" {
    handler    = "builtin.noop"
    depends_on = [step.nap, step.quick]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		var sawCancel atomic.Bool
		require.NoError(t, reg.Register("test.nap", engine.HandlerFunc(func(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			select {
			case <-ctx.Done():
				sawCancel.Store(true)
				return nil, ctx.Err()
			case <-time.After(time.Minute):
				return nil, nil
			}
		})))
		b := setup(t, open(t), parseWorkflows(t, src), withRegistry(reg))
		b.start()
		task := b.create("long", "")
		b.waitEvent(isEvent(engine.EventStepExecutionRequested, task.ID, "nap"), "nap runs")
		b.waitEvent(isEvent(engine.EventStepCompleted, task.ID, "quick"), "quick completes")

		change, err := b.eng.CancelTask(context.Background(), task.ID, "operator says stop")
		require.NoError(t, err)
		require.Equal(t, backends.StateCancelled, change.Task.State)
		require.Len(t, change.CancelRequested, 1)

		b.waitEvent(isEvent(engine.EventStepCancelled, task.ID, "nap"), "nap cancelled")
		require.True(t, sawCancel.Load(), "the handler's context was cancelled")
		steps := b.steps(task.ID)
		require.Equal(t, map[string]backends.State{
			"nap": backends.StateCancelled, "quick": backends.StateComplete, "after": backends.StateCancelled,
		}, states(steps))
		got, err := b.store.GetTask(context.Background(), task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateCancelled, got.State)
		// The stopped handler's error reads as a cancellation.
		se := stepError(t, steps["nap"])
		require.Equal(t, backends.ErrorKindCancelled, se.Kind)
		require.False(t, se.Retryable)
		require.Contains(t, se.Message, "cancelled while running")
		// And so does the task's context.
		ec, err := b.store.TaskExecutionContext(context.Background(), task.ID, time.Now().UTC())
		require.NoError(t, err)
		require.Equal(t, backends.StatusCancelled, ec.ExecutionStatus)
		require.Equal(t, backends.HealthCancelled, ec.HealthStatus)

		// Each cancellation is told once.
		count := map[string]int{}
		for _, ev := range b.taskEvents(task.ID) {
			switch ev.Type {
			case engine.EventStepCancelled:
				count[ev.StepName]++
			case engine.EventTaskCancelled:
				count["task"]++
			}
		}
		require.Equal(t, map[string]int{"nap": 1, "after": 1, "task": 1}, count)

		// A finished task cannot be cancelled again.
		_, err = b.eng.CancelTask(context.Background(), task.ID, "again")
		require.ErrorIs(t, err, backends.ErrInvalidTransition)
		b.checkOrdering(task.ID)
	})
}

func TestRetryAndResolveErroredTasks(t *testing.T) {
	t.Parallel()
	onceHCL := linearHCL("once", `limit = 1
    base = "1ms"
    max = "1ms"`, "builtin.fail", `{ times = 1 }`)
	alwaysHCL := linearHCL("always", `limit = 1
    base = "1ms"
    max = "1ms"`, "builtin.fail", ``)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, onceHCL, alwaysHCL))
		ctx := context.Background()
		b.start()

		// A step that fails once with one attempt allowed: the task errs;
		// an operator's retry grants one more and it completes.
		once := b.create("once", "")
		b.waitTask(once.ID, backends.StateError)
		s3 := b.steps(once.ID)["step_3"]
		change, err := b.eng.RetryStep(ctx, s3.ID, "try again")
		require.NoError(t, err)
		require.Equal(t, backends.StateInProgress, change.Task.State)
		b.waitTask(once.ID, backends.StateComplete)
		require.Equal(t, 2, b.steps(once.ID)["step_3"].Attempts)
		b.waitEvent(isEvent(engine.EventTaskRetryRequested, once.ID, ""), "task.retry_requested")
		b.waitEvent(isEvent(engine.EventStepRetryRequested, once.ID, "step_3"), "step.retry_requested")
		b.checkOrdering(once.ID)

		// A step that always fails: retry the task, it errs again; resolve
		// the step by hand with results, and the rest runs on them.
		always := b.create("always", "")
		b.waitTask(always.ID, backends.StateError)
		_, err = b.eng.RetryTask(ctx, always.ID, "once more")
		require.NoError(t, err)
		eventually(t, func() bool { return b.steps(always.ID)["step_3"].Attempts == 2 }, "second attempt")
		b.waitTask(always.ID, backends.StateError)
		s3 = b.steps(always.ID)["step_3"]
		_, err = b.eng.ResolveStep(ctx, s3.ID, json.RawMessage(`{"fixed": "by hand"}`), "fixed it")
		require.NoError(t, err)
		resolved := b.waitEvent(isEvent(engine.EventStepResolvedManually, always.ID, "step_3"), "step.resolved_manually")
		require.JSONEq(t, `{"fixed": "by hand"}`, string(resolved.Results))
		b.waitTask(always.ID, backends.StateComplete)
		steps := b.steps(always.ID)
		require.Equal(t, backends.StateResolvedManually, steps["step_3"].State)
		var s4 struct {
			Parents map[string]json.RawMessage `json:"parents"`
		}
		require.NoError(t, json.Unmarshal(steps["step_4"].Results, &s4))
		require.JSONEq(t, `{"fixed": "by hand"}`, string(s4.Parents["step_3"]))
		var failedEvents int
		for _, ev := range b.taskEvents(always.ID) {
			if ev.Type == engine.EventTaskFailed {
				failedEvents++
			}
		}
		require.Equal(t, 2, failedEvents, "the task failed twice, each told once")
		b.checkOrdering(always.ID)

		// A task in error resolved as a whole.
		third := b.create("always", "")
		b.waitTask(third.ID, backends.StateError)
		change, err = b.eng.ResolveTask(ctx, third.ID, "not needed")
		require.NoError(t, err)
		require.Equal(t, backends.StateResolvedManually, change.Task.State)
		b.waitEvent(isEvent(engine.EventTaskResolvedManually, third.ID, ""), "task.resolved_manually")

		// Unknown ids are not found.
		_, err = b.eng.RetryStep(ctx, 1<<40, "")
		require.ErrorIs(t, err, backends.ErrNotFound)
	})
}

func TestLeaseRecoveryByAnotherEngine(t *testing.T) {
	t.Parallel()
	const src = `
workflow "recover" {
  retry {
    base = "1ms"
    max  = "1ms"
  }
  step "work" {
    handler = "builtin.sleep"
    config  = { duration = "300ms" }
  }
  step "after" {
    handler    = "builtin.noop"
    depends_on = [step.work]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		catalog := parseWorkflows(t, src)
		// Node A claims the step, then stops dead: cut off from the
		// database (so it cannot release its lease on the way out), no
		// grace, no more heartbeats. Its lease (400ms) is left to expire.
		cut := &partitioned{Store: store}
		a := setup(t, cut, catalog, func(c *engine.Config) {
			c.NodeID = "node-a"
			c.LeaseDuration = 400 * time.Millisecond
			c.ShutdownGrace = -1
		})
		ctxA, stopA := context.WithCancel(context.Background())
		doneA := make(chan error, 1)
		go func() { doneA <- a.eng.Run(ctxA) }()
		task := a.create("recover", "")
		a.waitEvent(isEvent(engine.EventStepExecutionRequested, task.ID, "work"), "node A runs work")
		cut.down.Store(true)
		stopA()
		require.NoError(t, <-doneA)
		work := a.steps(task.ID)["work"]
		require.Equal(t, backends.StateInProgress, work.State)
		require.Equal(t, "node-a", work.LeaseOwner)

		// Node B recovers it once the lease expires and runs it again.
		// With no safety poll to speak of, B must wake at the lease expiry
		// the store announces.
		b := setup(t, store, catalog, func(c *engine.Config) {
			c.NodeID = "node-b"
			c.SafetyPoll = time.Hour
		})
		b.start()
		b.waitTask(task.ID, backends.StateComplete)
		expired := b.waitEvent(isEvent(engine.EventStepLeaseExpired, task.ID, "work"), "step.lease_expired")
		require.Equal(t, backends.ErrorKindLeaseExpired, expired.Error.Kind)
		require.True(t, expired.Retryable)
		work = b.steps(task.ID)["work"]
		require.Equal(t, 2, work.Attempts)
		require.Equal(t, backends.StateComplete, work.State)
		// Recovered no earlier than the lease allowed.
		trs, err := store.ListTransitions(context.Background(), task.ID)
		require.NoError(t, err)
		var sawLeaseError bool
		for _, tr := range trs {
			if tr.StepID == work.ID && tr.To == backends.StateError {
				sawLeaseError = true
			}
		}
		require.True(t, sawLeaseError)
		b.checkOrdering(task.ID)
	})
}

func TestEventsOfASimpleRun(t *testing.T) {
	t.Parallel()
	const src = `
workflow "pair" {
  step "a" {
    handler = "builtin.noop"
    config  = { result = { n = 1 } }
  }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [step.a]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("pair", "")
		b.waitEvent(isEvent(engine.EventTaskCompleted, task.ID, ""), "task.completed")
		b.waitTask(task.ID, backends.StateComplete)

		type seen struct {
			Type     engine.EventType
			Step     string
			Attempt  int
			Status   string
			Decision backends.FinalizeDecision
			Names    []string
		}
		var got []seen
		for _, ev := range b.taskEvents(task.ID) {
			require.Equal(t, task.ID, ev.TaskID)
			require.False(t, ev.Time.IsZero())
			got = append(got, seen{ev.Type, ev.StepName, ev.Attempt, ev.ExecutionStatus, ev.Decision, ev.StepNames})
		}
		require.Equal(t, []seen{
			{Type: engine.EventTaskInitializeRequested},
			{Type: engine.EventTaskStartRequested},
			{Type: engine.EventViableStepsDiscovered, Names: []string{"a"}},
			{Type: engine.EventStepExecutionRequested, Step: "a", Attempt: 1},
			{Type: engine.EventStepCompleted, Step: "a", Attempt: 1},
			{Type: engine.EventTaskFinalized, Status: backends.StatusHasReadySteps, Decision: backends.DecisionContinue},
			{Type: engine.EventViableStepsDiscovered, Names: []string{"b"}},
			{Type: engine.EventStepExecutionRequested, Step: "b", Attempt: 1},
			{Type: engine.EventStepCompleted, Step: "b", Attempt: 1},
			{Type: engine.EventTaskFinalized, Status: backends.StatusAllComplete, Decision: backends.DecisionComplete},
			{Type: engine.EventTaskCompleted},
		}, got)
		for _, ev := range b.taskEvents(task.ID) {
			if ev.Type == engine.EventStepCompleted && ev.StepName == "a" {
				require.JSONEq(t, `{"n":1}`, string(ev.Results))
				require.GreaterOrEqual(t, ev.DurationMs, int64(0))
			}
		}
		require.Zero(t, b.eng.DroppedEvents())
	})
}

// A step's retry: events carry what a CLI prints ("retry 2/3 in 4s").
func TestRetryEventsCarryAttemptAndBackoff(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "5ms"
    max = "1s"`, "builtin.fail", `{ times = 2 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src))
		b.start()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateComplete)
		var backoffs []engine.Event
		var retries int
		for _, ev := range b.taskEvents(task.ID) {
			switch {
			case ev.Type == engine.EventStepBackoff:
				backoffs = append(backoffs, ev)
			case ev.Type == engine.EventStepRetryRequested:
				retries++
			}
		}
		require.Len(t, backoffs, 2)
		require.Equal(t, 2, retries)
		for i, ev := range backoffs {
			require.Equal(t, "step_3", ev.StepName)
			require.Equal(t, i+1, ev.Attempt)
			require.Equal(t, 3, ev.RetryLimit)
			require.Equal(t, engine.BackoffExponential, ev.BackoffKind)
			require.NotNil(t, ev.NextRetryAt)
		}
		// backoff(n) = base × 2^n: 10ms after the first failure, 20ms after the second.
		require.InDelta(t, 0.010, backoffs[0].BackoffSeconds, 0.002)
		require.InDelta(t, 0.020, backoffs[1].BackoffSeconds, 0.002)
	})
}

func TestWaitTask(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, fourStepHCL))
		task := b.create("four", "")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := b.eng.WaitTask(ctx, task.ID)
		require.ErrorIs(t, err, context.DeadlineExceeded, "nothing runs the task yet")

		b.start()
		done, err := b.eng.WaitTask(context.Background(), task.ID)
		require.NoError(t, err)
		require.Equal(t, backends.StateComplete, done.State)
		_, err = b.eng.WaitTask(context.Background(), 1<<40)
		require.ErrorIs(t, err, backends.ErrNotFound)
	})
}

// Retries run when their backoff ends, found through the store's next
// wake-up instant, not by polling: with the safety poll at an hour the
// task still finishes at once.
func TestBackoffWakesTheEngineOnTime(t *testing.T) {
	t.Parallel()
	src := linearHCL("linear", `limit = 3
    base = "20ms"
    max = "1s"`, "builtin.fail", `{ times = 2 }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src), func(c *engine.Config) { c.SafetyPoll = time.Hour })
		b.start()
		start := time.Now()
		task := b.create("linear", "")
		b.waitTask(task.ID, backends.StateComplete)
		// Backoffs of 40ms and 80ms; well under the hour-long poll.
		require.Less(t, time.Since(start), 10*time.Second)
		s3 := b.steps(task.ID)["step_3"]
		require.Equal(t, 3, s3.Attempts)
		b.checkEvents(task.ID)
	})
}

func TestBypassingEveryStepCompletesAtOnce(t *testing.T) {
	t.Parallel()
	const src = `
workflow "optional" {
  step "a" {
    handler   = "builtin.noop"
    skippable = true
  }
  step "b" {
    handler    = "builtin.noop"
    skippable  = true
    depends_on = [step.a]
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, src)) // no Run: nothing to execute
		task, created, err := b.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: "optional", BypassSteps: []string{"b", "a"}})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, backends.StateComplete, task.State)
		var types []engine.EventType
		for _, ev := range b.taskEvents(task.ID) {
			types = append(types, ev.Type)
		}
		require.Equal(t, []engine.EventType{engine.EventTaskInitializeRequested, engine.EventTaskCompleted}, types)
		for _, s := range b.steps(task.ID) {
			require.Equal(t, backends.StateResolvedManually, s.State)
		}
	})
}

// A reload swaps the workflows new tasks may use; created tasks are not
// affected.
func TestSetCatalog(t *testing.T) {
	t.Parallel()
	store := storetest.SQLite(t)
	b := setup(t, store, parseWorkflows(t, `workflow "one" {
  step "a" { handler = "builtin.noop" }
}`))
	before := b.create("one", `{}`)
	b.eng.SetCatalog(parseWorkflows(t, `workflow "two" {
  step "b" { handler = "builtin.noop" }
}`))
	_, _, err := b.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: "one"})
	require.ErrorIs(t, err, engine.ErrUnknownWorkflow)
	after := b.create("two", `{}`)
	b.start()
	b.waitTask(before.ID, backends.StateComplete)
	b.waitTask(after.ID, backends.StateComplete)
	require.Len(t, b.eng.Catalog().All(), 1)
}

// A handler gets one idempotency key per step, "task_id/step_name", on every
// attempt: after a timeout, after a failure, after an operator's retry. A
// payment retried after a timeout must not be charged twice.
func TestIdempotencyKeyIsStablePerStep(t *testing.T) {
	t.Parallel()
	const src = `
workflow "pay" {
  retry {
    limit = 3
    base  = "1ms"
    max   = "1ms"
  }
  step "charge" {
    handler = "test.charge"
    timeout = "50ms"
  }
}
`
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		type call struct {
			key     string
			attempt int
		}
		calls := make(chan call, 10)
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("test.charge", engine.HandlerFunc(func(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			calls <- call{req.IdempotencyKey, req.Attempt}
			switch req.Attempt {
			case 1: // the provider is slow: the attempt times out
				<-ctx.Done()
				return nil, ctx.Err()
			case 2, 3:
				return nil, engine.Retryable(errors.New("provider busy"))
			}
			return json.RawMessage(`{"charged": true}`), nil
		})))
		b := setup(t, open(t), parseWorkflows(t, src), withRegistry(reg))
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateError)
		charge := b.steps(task.ID)["charge"]
		require.Equal(t, backends.ErrorKindHandler, stepError(t, charge).Kind)
		_, err := b.eng.RetryStep(context.Background(), charge.ID, "provider is back")
		require.NoError(t, err)
		b.waitTask(task.ID, backends.StateComplete)

		want := fmt.Sprintf("%d/charge", task.ID)
		require.Equal(t, want, engine.IdempotencyKey(task.ID, "charge"))
		for attempt := 1; attempt <= 4; attempt++ {
			require.Equal(t, call{want, attempt}, <-calls)
		}
	})
}

// A result no backend can hold the same way (not JSON, a NUL, bytes that
// are not UTF-8, a lone surrogate) fails its attempt with kind
// invalid_result on every store, rather than failing the write on one and
// being kept by the other; a failure message with such bytes is stored
// with them replaced.
func TestUnstorableResultsFailTheAttempt(t *testing.T) {
	t.Parallel()
	results := map[string]string{
		"not_json":       `not json`,
		"nul_escape":     `{"a": "\u0000"}`,
		"raw_nul":        "{\"a\": \"x\x00\"}",
		"bad_utf8":       "{\"a\": \"\xff\"}",
		"lone_surrogate": `{"a": "\ud800"}`,
	}
	src := `workflow "bad" {
  retry {
    limit = 1
  }
  step "bad_message" {
    handler = "test.bad"
  }
`
	for name := range results {
		src += fmt.Sprintf("  step %q {\n    handler = \"test.bad\"\n  }\n", name)
	}
	src += "}\n"
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("test.bad", engine.HandlerFunc(func(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			if req.StepName == "bad_message" {
				return nil, errors.New("boom\x00\xff")
			}
			return json.RawMessage(results[req.StepName]), nil
		})))
		b := setup(t, open(t), parseWorkflows(t, src), withRegistry(reg))
		b.start()
		task := b.create("bad", "")
		b.waitTask(task.ID, backends.StateError)
		steps := b.steps(task.ID)
		for name := range results {
			require.Equal(t, backends.StateError, steps[name].State, name)
			se := stepError(t, steps[name])
			require.Equal(t, backends.ErrorKindInvalidResult, se.Kind, name)
			require.Contains(t, se.Message, "cannot be stored", name)
			require.Nil(t, steps[name].Results, name)
		}
		se := stepError(t, steps["bad_message"])
		require.Equal(t, backends.ErrorKindHandler, se.Kind)
		require.Equal(t, "boom\uFFFD\uFFFD", se.Message)
		b.checkEvents(task.ID)
	})
}
