package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

func execute(t *testing.T, h HandlerFunc) *pb.ExecuteResponse {
	t.Helper()
	s := newServer(Handlers{"h": h}, &serveOptions{})
	resp, err := s.Execute(context.Background(), &pb.ExecuteRequest{Handler: "h", StepName: "charge", Attempt: 1})
	require.NoError(t, err)
	return resp
}

func eventsOf(resp *pb.ExecuteResponse) map[string]string {
	out := map[string]string{}
	for _, ev := range resp.Events {
		out[ev.Name] += string(ev.PayloadJson)
	}
	return out
}

func TestEmitCollectsWithTheResult(t *testing.T) {
	t.Parallel()
	resp := execute(t, func(ctx context.Context, req *Request) (any, error) {
		require.NoError(t, Emit(ctx, "payment.captured", map[string]any{"amount": 12}))
		// A ctx derived from the handler's carries the attempt too.
		sub, cancel := context.WithCancel(ctx)
		defer cancel()
		require.NoError(t, Emit(sub, "payment.audit", json.RawMessage(`"raw"`)))
		require.NoError(t, Emit(ctx, "payment.note", nil))
		return map[string]bool{"ok": true}, nil
	})
	require.JSONEq(t, `{"ok":true}`, string(resp.GetSuccess().GetResultJson()))
	require.Len(t, resp.Events, 3)
	require.Equal(t, []string{"payment.captured", "payment.audit", "payment.note"},
		[]string{resp.Events[0].Name, resp.Events[1].Name, resp.Events[2].Name}, "in the order emitted")
	require.Equal(t, map[string]string{"payment.captured": `{"amount":12}`, "payment.audit": `"raw"`, "payment.note": "null"}, eventsOf(resp))
}

func TestEmitOnAFailure(t *testing.T) {
	t.Parallel()
	resp := execute(t, func(ctx context.Context, req *Request) (any, error) {
		require.NoError(t, Emit(ctx, "payment.attempted", 1))
		return nil, RetryAfter(errors.New("gateway down"), 0)
	})
	require.Equal(t, "gateway down", resp.GetFailure().GetMessage())
	require.True(t, resp.GetFailure().GetRetryable())
	require.Equal(t, map[string]string{"payment.attempted": "1"}, eventsOf(resp), "a failed attempt reports what it emitted")
}

func TestEmitRefusedFailsTheAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, event, kind, message string
		payload                    any
		handlerErr                 error
	}{
		{"reserved name", "task.completed", "undeclared_event", `event name "task.completed" is not a valid custom event name, so no step can declare it: the task namespace is taskerd's own`, nil, nil},
		{"no dot", "captured", "undeclared_event", `event name "captured" is not a valid custom event name`, nil, nil},
		{"unencodable", "payment.captured", "invalid_event", `event "payment.captured": its payload cannot be encoded as JSON`, make(chan int), nil},
		{"large", "payment.captured", "invalid_event", `over the limit of 65536`, make([]byte, MaxEventPayload), nil},
		{"with a failure", "captured", "undeclared_event", `(the handler failed too: card declined)`, nil, errors.New("card declined")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var emitErr error
			resp := execute(t, func(ctx context.Context, req *Request) (any, error) {
				require.NoError(t, Emit(ctx, "payment.before", 1))
				emitErr = Emit(ctx, tc.event, tc.payload)
				return "ignored the error", tc.handlerErr
			})
			require.Error(t, emitErr)
			f := resp.GetFailure()
			require.NotNil(t, f, "a refused event fails the attempt even though the handler ignored the error")
			require.Equal(t, tc.kind, f.Kind)
			require.False(t, f.Retryable)
			require.Contains(t, f.Message, tc.message)
			require.Contains(t, f.Message, emitErr.Error(), "the handler's Emit said why")
			require.Empty(t, resp.Events, "none of the attempt's events is sent")
		})
	}
}

func TestEmitOutsideAHandler(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, Emit(context.Background(), "payment.captured", 1), ErrNoAttempt)

	// A goroutine that outlives its handler's call.
	var (
		leaked context.Context
		wg     sync.WaitGroup
	)
	resp := execute(t, func(ctx context.Context, req *Request) (any, error) {
		leaked = ctx
		return nil, nil
	})
	require.Empty(t, resp.Events)
	wg.Go(func() { require.ErrorIs(t, Emit(leaked, "payment.captured", 1), ErrAttemptEnded) })
	wg.Wait()
}
