package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// hookedHandler fails permanently and counts the operator retries it is
// told of.
type hookedHandler struct{ retries atomic.Int32 }

func (h *hookedHandler) Execute(context.Context, *engine.StepRequest) (json.RawMessage, error) {
	return nil, engine.Permanent(errors.New("broken until fixed"))
}

func (h *hookedHandler) OperatorRetry() { h.retries.Add(1) }

// wrapping hides the handler it wraps except through Unwrap, as a timing
// or logging wrapper does.
type wrapping struct{ h engine.Handler }

func (w wrapping) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	return w.h.Execute(ctx, req)
}

func (w wrapping) Unwrap() engine.Handler { return w.h }

const retryHookHCL = `workflow "hooked" {
  retry {
    limit = 1
  }
  step "a" {
    handler = "hook.direct"
  }
  step "a2" {
    handler = "hook.direct"
  }
  step "b" {
    handler = "hook.wrapped"
  }
  step "c" {
    handler    = "builtin.echo"
    depends_on = [step.a, step.a2, step.b]
  }
}
`

// An operator retry tells the RetryHook of each retried step's handler
// (found through Unwrap), once per handler name, before it returns; cancel
// and resolve do not.
func TestOperatorRetryCallsTheRetryHook(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		direct, inner := &hookedHandler{}, &hookedHandler{}
		reg := builtin.NewRegistry()
		require.NoError(t, reg.Register("hook.direct", direct))
		require.NoError(t, reg.Register("hook.wrapped", wrapping{h: inner}))
		b := setup(t, open(t), parseWorkflows(t, retryHookHCL), withRegistry(reg))
		ctx := context.Background()
		b.start()

		task := b.create("hooked", "")
		b.waitTask(task.ID, backends.StateError)
		steps := b.steps(task.ID)
		counts := func() [2]int32 { return [2]int32{direct.retries.Load(), inner.retries.Load()} }
		require.Equal(t, [2]int32{0, 0}, counts(), "no retry yet")

		_, err := b.eng.RetryStep(ctx, steps["b"].ID, "one step")
		require.NoError(t, err)
		require.Equal(t, [2]int32{0, 1}, counts(), "the wrapped handler's hook, through Unwrap")
		eventually(t, func() bool { return b.steps(task.ID)["b"].Attempts == 2 }, "b's second attempt")
		b.waitTask(task.ID, backends.StateError)

		// a and a2 share a handler: told once.
		_, err = b.eng.RetryTask(ctx, task.ID, "the whole task")
		require.NoError(t, err)
		require.Equal(t, [2]int32{1, 2}, counts())
		eventually(t, func() bool {
			s := b.steps(task.ID)
			return s["a"].Attempts == 2 && s["a2"].Attempts == 2 && s["b"].Attempts == 3
		}, "the retried attempts")
		b.waitTask(task.ID, backends.StateError)

		// A refused retry tells nobody.
		_, err = b.eng.RetryStep(ctx, steps["c"].ID, "not in error")
		require.ErrorIs(t, err, backends.ErrInvalidTransition)
		_, err = b.eng.ResolveStep(ctx, steps["a"].ID, nil, "by hand")
		require.NoError(t, err)
		_, err = b.eng.CancelTask(ctx, task.ID, "done")
		require.NoError(t, err)
		require.Equal(t, [2]int32{1, 2}, counts(), "cancel and resolve are not retries")
	})
}
