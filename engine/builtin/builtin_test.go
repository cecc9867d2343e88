package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/customevent"
)

func TestBuiltinsMatchDefinition(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, definition.BuiltinHandlers, builtin.Names())
	var want []string
	for _, n := range definition.BuiltinHandlers {
		want = append(want, definition.BuiltinPlugin+"."+n)
	}
	require.ElementsMatch(t, want, builtin.NewRegistry().Names())
}

func req(attempt int, config string) *engine.StepRequest {
	r := &engine.StepRequest{TaskID: 1, StepID: 2, StepName: "s", Handler: "builtin.x", Attempt: attempt, Context: json.RawMessage(`{"k":"v"}`)}
	if config != "" {
		r.Config = json.RawMessage(config)
	}
	return r
}

func TestNoop(t *testing.T) {
	t.Parallel()
	out, err := builtin.Noop(context.Background(), req(1, ""))
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(out))
	out, err = builtin.Noop(context.Background(), req(1, `{"result": {"a": [1, 2]}}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"a": [1, 2]}`, string(out))
	_, err = builtin.Noop(context.Background(), req(1, `[1]`))
	var f *engine.StepFailure
	require.ErrorAs(t, err, &f)
	require.False(t, f.Retryable)
}

func TestNoopEmits(t *testing.T) {
	t.Parallel()
	ctx, col := customevent.Collect(context.Background())
	out, err := builtin.Noop(ctx, req(1, `{"emit": [{"name": "order.validated", "payload": {"id": 7}}, {"name": "order.noted"}]}`))
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(out))
	events, refused := col.Close()
	require.Nil(t, refused)
	require.Equal(t, []backends.CustomEvent{
		{Name: "order.validated", Payload: json.RawMessage(`{"id":7}`)},
		{Name: "order.noted", Payload: json.RawMessage(`null`)},
	}, events)

	ctx, _ = customevent.Collect(context.Background())
	_, err = builtin.Noop(ctx, req(1, `{"emit": [{"name": "step.completed"}]}`))
	require.ErrorContains(t, err, `emitting "step.completed"`)
	_, err = builtin.Noop(context.Background(), req(1, `{"emit": [{"name": "order.validated"}]}`))
	require.ErrorIs(t, err, engine.ErrNoAttempt)
}

func TestEcho(t *testing.T) {
	t.Parallel()
	r := req(1, `{"x": 1}`)
	r.ParentResults = map[string]json.RawMessage{"p": json.RawMessage(`{"y": 2}`)}
	out, err := builtin.Echo(context.Background(), r)
	require.NoError(t, err)
	require.JSONEq(t, `{"context": {"k": "v"}, "parents": {"p": {"y": 2}}, "config": {"x": 1}}`, string(out))
	out, err = builtin.Echo(context.Background(), req(1, ""))
	require.NoError(t, err)
	require.JSONEq(t, `{"context": {"k": "v"}, "parents": {}, "config": null}`, string(out))
}

func TestFail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Default: every attempt fails, retryably.
	for attempt := 1; attempt <= 5; attempt++ {
		_, err := builtin.Fail(ctx, req(attempt, ""))
		var f *engine.StepFailure
		require.ErrorAs(t, err, &f)
		require.True(t, f.Retryable)
		require.Nil(t, f.BackoffSeconds)
	}
	// times: fails that many attempts, then succeeds with result.
	cfg := `{"times": 2, "result": {"ok": true}, "message": "nope", "backoff_seconds": 7, "retryable": true}`
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := builtin.Fail(ctx, req(attempt, cfg))
		var f *engine.StepFailure
		require.ErrorAs(t, err, &f)
		require.Equal(t, "nope", f.Message)
		require.Equal(t, 7, *f.BackoffSeconds)
	}
	out, err := builtin.Fail(ctx, req(3, cfg))
	require.NoError(t, err)
	require.JSONEq(t, `{"ok": true}`, string(out))
	// retryable = false: a permanent failure.
	_, err = builtin.Fail(ctx, req(1, `{"retryable": false}`))
	var f *engine.StepFailure
	require.ErrorAs(t, err, &f)
	require.False(t, f.Retryable)
	// times = 0 succeeds at once with {}.
	out, err = builtin.Fail(ctx, req(1, `{"times": 0}`))
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(out))
}

func TestSleep(t *testing.T) {
	t.Parallel()
	start := time.Now()
	out, err := builtin.Sleep(context.Background(), req(1, `{"duration": "30ms"}`))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	require.JSONEq(t, `{"slept": "30ms"}`, string(out))

	// Cancellation and deadlines stop it early.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start = time.Now()
	_, err = builtin.Sleep(ctx, req(1, `{"duration": "1m"}`))
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 10*time.Second)

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err = builtin.Sleep(dctx, req(1, `{"duration": "1m"}`))
	require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	_, err = builtin.Sleep(context.Background(), req(1, `{"duration": "soon"}`))
	var f *engine.StepFailure
	require.ErrorAs(t, err, &f)
	require.False(t, f.Retryable)
	require.Equal(t, backends.ErrorKindPermanent, f.Kind)
}
