package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// resultHandler is test.result: it returns the "result" of its step's
// config, as it is.
func resultHandler(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	var cfg struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, engine.Permanent(err)
	}
	return cfg.Result, nil
}

const chargeWF = `workflow "pay" {
  version = "1.0.0"
  retry {
    limit = 3
    base  = "1ms"
    max   = "5ms"
  }
  step "charge" {
    handler = "test.result"
    config  = { result = %s }
    result_schema = {
      type       = "object"
      required   = ["payment_id", "amount"]
      properties = {
        payment_id = { type = "string" }
        amount     = { type = "integer", minimum = 1 }
      }
    }
  }
  step "ship" {
    handler    = "test.result"
    depends_on = [step.charge]
    config     = { result = { anything = true } }
  }
}
`

func resultSetup(t *testing.T, open func(testing.TB) backends.Store, result string) *testBundle {
	t.Helper()
	reg := builtin.NewRegistry()
	require.NoError(t, reg.Register("test.result", engine.HandlerFunc(resultHandler)))
	return setup(t, open(t), parseWorkflows(t, fmt.Sprintf(chargeWF, result)), withRegistry(reg))
}

func TestResultMatchingItsSchemaIsRecorded(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := resultSetup(t, open, `{ payment_id = "p-1", amount = 12, extra = "allowed" }`)
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateComplete)
		steps := b.steps(task.ID)
		require.JSONEq(t, `{"payment_id":"p-1","amount":12,"extra":"allowed"}`, string(steps["charge"].Results))
		require.JSONEq(t, `{"anything":true}`, string(steps["ship"].Results), "a step without a schema is not checked")
		b.checkEvents(task.ID)
	})
}

// A result that does not match fails the attempt permanently, whatever
// attempts are left, with every violation's path in the message.
func TestResultNotMatchingItsSchemaFailsPermanently(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := resultSetup(t, open, `{ payment_id = 7, amount = 0 }`)
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateError)
		charge := b.steps(task.ID)["charge"]
		require.Equal(t, 1, charge.Attempts, "not retried")
		require.Empty(t, charge.Results)
		se := stepError(t, charge)
		require.Equal(t, backends.ErrorKindInvalidResult, se.Kind)
		require.False(t, se.Retryable)
		require.Contains(t, se.Message, "step charge (handler test.result) returned a result that does not match the step's result_schema in workflow default/pay@1.0.0: ")
		require.Contains(t, se.Message, "at /amount: ")
		require.Contains(t, se.Message, "at /payment_id: ")
		require.Equal(t, backends.StatePending, b.steps(task.ID)["ship"].State, "its child never runs")
		b.checkEvents(task.ID)
	})
}

func TestResultOfTheWrongTypeNamesTheRoot(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := resultSetup(t, open, `["not", "an", "object"]`)
		b.start()
		task := b.create("pay", "")
		b.waitTask(task.ID, backends.StateError)
		se := stepError(t, b.steps(task.ID)["charge"])
		require.Equal(t, backends.ErrorKindInvalidResult, se.Kind)
		require.Contains(t, se.Message, "at /: ")
	})
}

// The schema is the one of the workflow version the task runs, as loaded
// on the node that runs the step: a version no longer loaded has nothing to
// check against, and its results are recorded unchecked (a task of an
// unloaded version keeps running, as before result_schema existed).
func TestResultOfAnUnloadedVersionIsNotChecked(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		reg := builtin.NewRegistry()
		release := make(chan struct{})
		started := make(chan struct{})
		require.NoError(t, reg.Register("test.result", engine.HandlerFunc(func(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
			if req.StepName == "charge" {
				close(started)
				<-release
			}
			return resultHandler(ctx, req)
		})))
		b := setup(t, open(t), parseWorkflows(t, fmt.Sprintf(chargeWF, `{ payment_id = 7 }`)), withRegistry(reg))
		b.start()
		task := b.create("pay@1.0.0", "")
		<-started
		b.eng.SetCatalog(definition.NewCatalog(nil))
		close(release)
		b.waitTask(task.ID, backends.StateComplete)
		require.JSONEq(t, `{"payment_id":7}`, string(b.steps(task.ID)["charge"].Results))
	})
}
