package plugintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin"
	"github.com/taskerd/taskerd/plugin/plugintest"
)

type input struct {
	OrderID string `json:"order_id"`
	Mode    string `json:"mode"`
}

type result struct {
	OrderID string `json:"order_id"`
	Attempt int    `json:"attempt"`
	Key     string `json:"key"`
	Parent  int    `json:"parent"`
}

func handle(ctx context.Context, req *plugin.Request, in input) (result, error) {
	plugin.Logger().InfoContext(ctx, "handling", "order_id", in.OrderID)
	var p struct {
		Total int `json:"total"`
	}
	switch in.Mode {
	case "permanent":
		return result{}, plugin.Permanent(errors.New("declined"))
	case "kind":
		return result{}, plugin.WithKind(fmt.Errorf("wrapped: %w", plugin.Permanent(errors.New("declined"))), "payment_declined")
	case "retry_after":
		return result{}, plugin.RetryAfter(errors.New("busy"), 1500*time.Millisecond)
	case "plain":
		return result{}, errors.New("flaky")
	case "panic":
		panic("boom")
	case "emit":
		if err := plugin.Emit(ctx, "payment.captured", map[string]int{"amount": 12}); err != nil {
			return result{}, err
		}
		if err := plugin.Emit(ctx, "payment.note", nil); err != nil {
			return result{}, err
		}
	case "bad_event":
		_ = plugin.Emit(ctx, "task.mine", nil) // refused: fails the attempt even though ignored
	case "deadline":
		d, ok := ctx.Deadline()
		if !ok || !d.Equal(req.Deadline) {
			return result{}, errors.New("no deadline")
		}
	case "wait":
		<-ctx.Done()
		return result{}, ctx.Err()
	}
	if err := req.DecodeParent("validate", &p); err != nil {
		return result{}, plugin.Permanent(err)
	}
	return result{OrderID: in.OrderID, Attempt: req.Attempt, Key: req.IdempotencyKey, Parent: p.Total}, nil
}

func TestCallSuccess(t *testing.T) {
	t.Parallel()
	out := plugintest.Call(t, plugin.Typed(handle), plugintest.Request{
		Context:  map[string]any{"order_id": "A-1"},
		Parents:  map[string]any{"validate": json.RawMessage(`{"total": 42}`)},
		TaskID:   7,
		StepName: "charge",
		Attempt:  2,
	})
	require.Nil(t, out.Failure)
	require.JSONEq(t, `{"order_id":"A-1","attempt":2,"key":"7/charge","parent":42}`, string(out.Result))
	require.Equal(t, result{OrderID: "A-1", Attempt: 2, Key: "7/charge", Parent: 42}, plugintest.Decode[result](t, out))
	require.Len(t, out.Logs, 1)
	require.Equal(t, "handling", out.Logs[0].Message)
	require.Equal(t, "A-1", out.Logs[0].Attrs["order_id"])
}

func TestCallClassifiesFailuresAsTaskerdDoes(t *testing.T) {
	t.Parallel()
	h := plugin.Typed(handle)
	for _, tc := range []struct {
		mode string
		want plugintest.Failure
	}{
		{"permanent", plugintest.Failure{Message: "declined", Kind: "permanent"}},
		{"kind", plugintest.Failure{Message: "wrapped: declined", Kind: "payment_declined"}},
		{"retry_after", plugintest.Failure{Message: "busy", Retryable: true, Backoff: 2 * time.Second, Kind: "handler_error"}},
		{"plain", plugintest.Failure{Message: "flaky", Retryable: true, Kind: "handler_error"}},
		{"missing_parent", plugintest.Failure{Message: `step "step" has no parent "validate" (parents with results: [])`, Kind: "permanent"}},
	} {
		out := plugintest.Call(t, h, plugintest.Request{Context: map[string]any{"mode": tc.mode}})
		require.Nil(t, out.Result, tc.mode)
		require.NotNil(t, out.Failure, tc.mode)
		require.Equal(t, tc.want, *out.Failure, tc.mode)
		var v result
		require.ErrorContains(t, out.Decode(&v), tc.want.Message)
	}

	out := plugintest.Call(t, h, plugintest.Request{Context: map[string]any{"mode": "panic"}, Handler: "charge"})
	require.True(t, out.Failure.Retryable)
	require.Equal(t, "handler_error", out.Failure.Kind)
	require.Contains(t, out.Failure.Message, `handler "charge" panicked: boom`)

	out = plugintest.Call(t, h, plugintest.Request{Context: map[string]any{"mode": 3}})
	require.Equal(t, plugin.KindInvalidInput, out.Failure.Kind)
	require.False(t, out.Failure.Retryable)
}

func TestCallCollectsEvents(t *testing.T) {
	t.Parallel()
	h := plugin.Typed(handle)
	out := plugintest.Call(t, h, plugintest.Request{
		Context: map[string]any{"mode": "emit"},
		Parents: map[string]any{"validate": nil},
	})
	require.Nil(t, out.Failure)
	require.Equal(t, []plugintest.Event{
		{Name: "payment.captured", Payload: json.RawMessage(`{"amount":12}`)},
		{Name: "payment.note", Payload: json.RawMessage(`null`)},
	}, out.Events)

	out = plugintest.Call(t, h, plugintest.Request{Context: map[string]any{"mode": "bad_event"}})
	require.NotNil(t, out.Failure)
	require.Equal(t, "undeclared_event", out.Failure.Kind)
	require.False(t, out.Failure.Retryable)
	require.Empty(t, out.Events)
}

func TestCallDeadlineAndCancellation(t *testing.T) {
	t.Parallel()
	h := plugin.Typed(handle)
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	out := plugintest.Call(t, h, plugintest.Request{
		Context:  map[string]any{"mode": "deadline"},
		Parents:  map[string]any{"validate": map[string]int{"total": 1}},
		Deadline: deadline,
	})
	require.Nil(t, out.Failure)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, err := plugintest.CallContext(ctx, h, plugintest.Request{Context: map[string]any{"mode": "wait"}})
	require.NoError(t, err)
	require.Equal(t, context.Canceled.Error(), out.Failure.Message)
}

func TestCallPlainHandlerAndEmptyResult(t *testing.T) {
	t.Parallel()
	out := plugintest.Call(t, func(_ context.Context, req *plugin.Request) (any, error) {
		if string(req.Config) != `{"a":1}` || string(req.Context) != `{}` {
			return nil, fmt.Errorf("got config %s, context %s", req.Config, req.Context)
		}
		return nil, nil
	}, plugintest.Request{Config: json.RawMessage(`{"a":1}`)})
	require.Nil(t, out.Failure)
	require.Equal(t, `{}`, string(out.Result))

	typedNil := plugin.Typed(func(context.Context, *plugin.Request, struct{}) (*result, error) { return nil, nil })
	out = plugintest.Call(t, typedNil, plugintest.Request{})
	require.Equal(t, `{}`, string(out.Result), "null is recorded as {}")
}

func TestCallContextRefusesBadRequests(t *testing.T) {
	t.Parallel()
	h := plugin.Typed(handle)
	_, err := plugintest.CallContext(context.Background(), h, plugintest.Request{Context: json.RawMessage(`{`)})
	require.ErrorContains(t, err, "the context is not valid JSON")
	_, err = plugintest.CallContext(context.Background(), h, plugintest.Request{Config: func() {}})
	require.ErrorContains(t, err, "encoding the config")
	_, err = plugintest.CallContext(context.Background(), nil, plugintest.Request{})
	require.ErrorContains(t, err, "the handler is nil")
}

func TestCallCapturesLogsWithTheHandlersCtx(t *testing.T) {
	t.Parallel()
	out := plugintest.Call(t, func(ctx context.Context, _ *plugin.Request) (any, error) {
		l := plugin.Logger().With("order_id", "A-1").WithGroup("gw")
		l.DebugContext(ctx, "calling", "try", 1)
		l.WarnContext(ctx, "slow", slog.Duration("took", 2*time.Second))
		plugin.Logger().Info("no ctx: to stderr, not captured")
		return nil, nil
	}, plugintest.Request{})
	require.Equal(t, []plugintest.Log{
		{Level: slog.LevelDebug, Message: "calling", Attrs: map[string]any{"order_id": "A-1", "gw.try": int64(1)}},
		{Level: slog.LevelWarn, Message: "slow", Attrs: map[string]any{"order_id": "A-1", "gw.took": 2 * time.Second}},
	}, out.Logs)
}
