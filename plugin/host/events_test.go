package host_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine/builtin"
)

const emitWF = `workflow "pay" {
  version = "1.2.0"
  retry {
    limit = 2
    base  = "5ms"
    max   = "20ms"
  }
  step "charge" {
    handler = "testp.emit"
    events  = ["payment.captured"]
    config  = %s
  }
}
`

// Events a plugin emits reach the engine's result write, on success and
// on failure; an undeclared one fails the attempt for good.
func TestPluginEvents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		config string
		state  backends.State
		// attempts and the events of each of their writes
		written [][]backends.CustomEvent
		kind    string
		message string
	}{
		{
			name:   "declared",
			config: `{ emit = [{ name = "payment.captured", payload = { amount = 12 } }, { name = "payment.captured" }] }`,
			state:  backends.StateComplete,
			written: [][]backends.CustomEvent{{
				{Name: "payment.captured", Payload: json.RawMessage(`{"amount":12}`)},
				{Name: "payment.captured", Payload: json.RawMessage(`null`)},
			}},
		},
		{
			name:   "declared, then failed",
			config: `{ emit = [{ name = "payment.captured", payload = 1 }], fail = true }`,
			state:  backends.StateError,
			written: [][]backends.CustomEvent{
				{{Name: "payment.captured", Payload: json.RawMessage(`1`)}},
				{{Name: "payment.captured", Payload: json.RawMessage(`1`)}},
			},
			kind:    backends.ErrorKindHandler,
			message: "emit failed as configured",
		},
		{
			name:    "undeclared",
			config:  `{ emit = [{ name = "payment.captured" }, { name = "payment.refunded" }] }`,
			state:   backends.StateError,
			written: [][]backends.CustomEvent{nil},
			kind:    backends.ErrorKindUndeclaredEvent,
			message: `step charge (handler testp.emit) emitted event "payment.refunded", which it does not declare: add it to the step's events in workflow default/pay@1.2.0 (it declares "payment.captured")`,
		},
		{
			name:    "refused by the SDK",
			config:  `{ emit = [{ name = "payment.captured" }, { name = "workflow.done" }] }`,
			state:   backends.StateError,
			written: [][]backends.CustomEvent{nil},
			kind:    backends.ErrorKindUndeclaredEvent,
			message: `event name "workflow.done" is not a valid custom event name, so no step can declare it`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, sc := range storetest.Backends() {
				t.Run(sc.Name, func(t *testing.T) {
					t.Parallel()
					b := startTestPlugin(t, nil)
					reg := builtin.NewRegistry()
					require.NoError(t, b.host.Register(reg))
					rec := storetest.NewEventRecorder(nil)
					open := func(t testing.TB) backends.Store {
						rec.Store = sc.Open(t)
						return rec
					}
					e := startEngineWith(t, open, fmt.Sprintf(emitWF, tc.config), b, reg)
					id := e.create(t, "pay", `{}`)
					charge := e.waitTask(t, id, tc.state)["charge"]
					require.Equal(t, len(tc.written), charge.Attempts)
					require.Equal(t, tc.written, rec.Written(t, charge.ID, len(tc.written)))
					if tc.kind != "" {
						se := stepError(t, charge)
						require.Equal(t, tc.kind, se.Kind)
						require.Contains(t, se.Message, tc.message)
						require.Equal(t, tc.kind == backends.ErrorKindHandler, se.Retryable)
					}
				})
			}
		})
	}
}
