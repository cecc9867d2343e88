package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// emitConfig drives the test.emit handler: it emits each event, then fails
// (retryable, once per attempt while attempt <= fail_attempts) or succeeds.
type emitConfig struct {
	Emit []struct {
		Name    string          `json:"name"`
		Payload json.RawMessage `json:"payload"`
	} `json:"emit"`
	FailAttempts int `json:"fail_attempts"`
}

// emitHandler is test.emit. Emit's errors are ignored on purpose: a
// refused event must fail the attempt anyway.
func emitHandler(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	var cfg emitConfig
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, engine.Permanent(err)
	}
	for _, ev := range cfg.Emit {
		_ = engine.Emit(ctx, ev.Name, ev.Payload)
	}
	if req.Attempt <= cfg.FailAttempts {
		return nil, errors.New("failing as configured")
	}
	return json.RawMessage(`{"done":true}`), nil
}

func emitSetup(t *testing.T, open func(testing.TB) backends.Store, srcs ...string) (*testBundle, *storetest.EventRecorder) {
	t.Helper()
	reg := builtin.NewRegistry()
	require.NoError(t, reg.Register("test.emit", engine.HandlerFunc(emitHandler)))
	rec := storetest.NewEventRecorder(open(t))
	b := setup(t, rec, parseWorkflows(t, srcs...), withRegistry(reg))
	return b, rec
}

const paymentWF = `workflow "pay" {
  version = "1.0.0"
  retry {
    limit = 3
    base  = "1ms"
    max   = "5ms"
  }
  step "charge" {
    handler = "test.emit"
    events  = ["payment.captured", "payment.audit"]
    config  = %s
  }
  step "ship" {
    handler    = "builtin.noop"
    depends_on = [step.charge]
  }
}
`

func payment(config string) string { return fmt.Sprintf(paymentWF, config) }

func TestDeclaredEventsGoWithTheResult(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b, rec := emitSetup(t, open, payment(`{
      emit = [
        { name = "payment.captured", payload = { amount = 12, currency = "EUR" } },
        { name = "payment.audit" },
        { name = "payment.captured", payload = [1, 2] },
      ]
    }`))
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.Equal(t, [][]backends.CustomEvent{{
			{Name: "payment.captured", Payload: json.RawMessage(`{"amount":12,"currency":"EUR"}`)},
			{Name: "payment.audit", Payload: json.RawMessage(`null`)},
			{Name: "payment.captured", Payload: json.RawMessage(`[1,2]`)},
		}}, rec.Written(t, steps["charge"].ID, 1))
		require.Equal(t, [][]backends.CustomEvent{nil}, rec.Written(t, steps["ship"].ID, 1), "a step that emits nothing writes no events")
	})
}

// An attempt that emitted and then failed still reports what it emitted;
// the retry's events are its own.
func TestEventsOfAFailedAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b, rec := emitSetup(t, open, payment(`{
      emit          = [{ name = "payment.audit", payload = "tried" }]
      fail_attempts = 1
    }`))
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateComplete)
		charge := b.steps(task.ID)["charge"]
		require.Equal(t, 2, charge.Attempts)
		audit := []backends.CustomEvent{{Name: "payment.audit", Payload: json.RawMessage(`"tried"`)}}
		require.Equal(t, [][]backends.CustomEvent{audit, audit}, rec.Written(t, charge.ID, 2))

		// In the log: each attempt's event just before the step's own.
		evs, err := b.store.ListEvents(context.Background(), &backends.EventQuery{TaskID: task.ID})
		require.NoError(t, err)
		var charges []string
		for _, ev := range evs {
			if ev.StepName == "charge" && ev.Type != backends.EventStepExecutionRequested && ev.Type != backends.EventStepBackoff &&
				ev.Type != backends.EventStepRetryRequested {
				charges = append(charges, fmt.Sprintf("%s %d %s", ev.Type, ev.Attempt, ev.Payload))
			}
		}
		require.Equal(t, []string{`payment.audit 1 "tried"`, "step.failed 1 ", `payment.audit 2 "tried"`, "step.completed 2 "}, charges)
	})
}

func TestUndeclaredEventFailsTheAttempt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, config, kind, message string
	}{
		{
			name:    "undeclared",
			config:  `{ emit = [{ name = "payment.captured" }, { name = "payment.refunded", payload = 1 }] }`,
			kind:    backends.ErrorKindUndeclaredEvent,
			message: `step charge (handler test.emit) emitted event "payment.refunded", which it does not declare: add it to the step's events in workflow default/pay@1.0.0 (it declares "payment.captured", "payment.audit")`,
		},
		{
			name:    "undeclared after a failure",
			config:  `{ emit = [{ name = "shipping.sent" }], fail_attempts = 3 }`,
			kind:    backends.ErrorKindUndeclaredEvent,
			message: `emitted event "shipping.sent", which it does not declare: add it to the step's events in workflow default/pay@1.0.0 (it declares "payment.captured", "payment.audit") (the attempt had failed too: handler_error: failing as configured)`,
		},
		{
			name:    "reserved name",
			config:  `{ emit = [{ name = "payment.captured" }, { name = "step.completed" }] }`,
			kind:    backends.ErrorKindUndeclaredEvent,
			message: `step charge (handler test.emit): event name "step.completed" is not a valid custom event name, so no step can declare it`,
		},
		{
			name:    "payload too large",
			config:  `{ emit = [{ name = "payment.captured", payload = "` + longString(64<<10) + `" }] }`,
			kind:    backends.ErrorKindInvalidEvent,
			message: `event "payment.captured": its payload is 65538 bytes of JSON, over the limit of 65536`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
				b, rec := emitSetup(t, open, payment(tc.config))
				b.start()
				task := b.create("pay", "")
				b.waitTask(task.ID, backends.StateError)
				charge := b.steps(task.ID)["charge"]
				require.Equal(t, backends.StateError, charge.State)
				require.Equal(t, 1, charge.Attempts, "not retried: retrying cannot help")
				se := stepError(t, charge)
				require.Equal(t, tc.kind, se.Kind)
				require.False(t, se.Retryable)
				require.Contains(t, se.Message, tc.message)
				require.Equal(t, [][]backends.CustomEvent{nil}, rec.Written(t, charge.ID, 1), "none of the attempt's events is written")
				evs, err := b.store.ListEvents(context.Background(), &backends.EventQuery{TaskID: task.ID})
				require.NoError(t, err)
				for _, ev := range evs {
					require.False(t, backends.ValidCustomEventName(string(ev.Type)), "custom event %s in the log", ev.Type)
				}
				require.Equal(t, backends.StatePending, b.steps(task.ID)["ship"].State)
			})
		})
	}
}

func longString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}

// A task checks its events against the workflow version it runs, not the
// newest one loaded; once its version is unloaded, an event cannot be
// checked and fails closed.
func TestEventsCheckedAgainstTheTasksVersion(t *testing.T) {
	t.Parallel()
	const v2 = `workflow "pay" {
  version = "2.0.0"
  step "charge" {
    handler = "test.emit"
    config  = { emit = [{ name = "payment.captured" }] }
  }
}
`
	v1 := payment(`{ emit = [{ name = "payment.captured" }] }`)
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b, rec := emitSetup(t, open, v1, v2)
		b.start()
		old := b.create("pay@1.0.0", "")
		b.waitTask(old.ID, backends.StateComplete)
		require.Equal(t, [][]backends.CustomEvent{{{Name: "payment.captured", Payload: json.RawMessage(`null`)}}},
			rec.Written(t, b.steps(old.ID)["charge"].ID, 1))

		newer := b.create("pay", "")
		b.waitTask(newer.ID, backends.StateError)
		se := stepError(t, b.steps(newer.ID)["charge"])
		require.Equal(t, backends.ErrorKindUndeclaredEvent, se.Kind)
		require.Contains(t, se.Message, "in workflow default/pay@2.0.0 (it declares none)")
	})
}

func TestEventsOfAnUnloadedVersionFailClosed(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		release := make(chan struct{})
		started := make(chan struct{})
		require.NoError(t, reg.Register("test.emit", engine.HandlerFunc(func(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			close(started)
			<-release
			if err := engine.Emit(ctx, "payment.captured", 1); err != nil {
				return nil, engine.Permanent(err)
			}
			return nil, nil
		})))
		rec := storetest.NewEventRecorder(open(t))
		b := setup(t, rec, parseWorkflows(t, payment(`{}`)), withRegistry(reg))
		b.start()
		task := b.create("pay@1.0.0", "")
		<-started
		// A reload that drops the version while the attempt runs.
		b.eng.SetCatalog(definition.NewCatalog(nil))
		close(release)
		b.waitTask(task.ID, backends.StateError)
		charge := b.steps(task.ID)["charge"]
		se := stepError(t, charge)
		require.Equal(t, backends.ErrorKindUndeclaredEvent, se.Kind)
		require.False(t, se.Retryable)
		require.Contains(t, se.Message, `step charge emitted event "payment.captured", but workflow default/pay@1.0.0, which its task runs, is not loaded on node`)
		require.Equal(t, [][]backends.CustomEvent{nil}, rec.Written(t, charge.ID, 1))
	})
}

func TestEmitOutsideAHandler(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, engine.Emit(context.Background(), "payment.captured", 1), engine.ErrNoAttempt)
}
