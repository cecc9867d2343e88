package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/require"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

func TestDecodeHelpers(t *testing.T) {
	t.Parallel()
	req := &Request{
		StepName:      "charge",
		Context:       json.RawMessage(`{"order_id":"A-1"}`),
		ParentResults: map[string]json.RawMessage{"validate": json.RawMessage(`{"total":12}`)},
	}
	var c struct {
		OrderID string `json:"order_id"`
	}
	require.NoError(t, req.DecodeContext(&c))
	require.Equal(t, "A-1", c.OrderID)

	cfg := struct{ Currency string }{Currency: "EUR"}
	require.NoError(t, req.DecodeConfig(&cfg), "empty config leaves v unchanged")
	require.Equal(t, "EUR", cfg.Currency)
	req.Config = json.RawMessage(`{"Currency":"USD"}`)
	require.NoError(t, req.DecodeConfig(&cfg))
	require.Equal(t, "USD", cfg.Currency)
	req.Config = json.RawMessage(`[`)
	require.ErrorContains(t, req.DecodeConfig(&cfg), `config of step "charge"`)

	var p struct{ Total int }
	require.NoError(t, req.DecodeParent("validate", &p))
	require.Equal(t, 12, p.Total)
	require.ErrorContains(t, req.DecodeParent("reserve", &p), `step "charge" has no parent "reserve"`)
}

func TestFailures(t *testing.T) {
	t.Parallel()
	base := errors.New("card declined")
	tests := []struct {
		name      string
		err       error
		retryable bool
		backoff   *int64
		kind      string
	}{
		{"plain", base, true, nil, ""},
		{"retryable", Retryable(base), true, nil, ""},
		{"permanent", Permanent(base), false, nil, ""},
		{"retry after rounds up", RetryAfter(base, 1500*time.Millisecond), true, new(int64(2)), ""},
		{"kind on permanent", WithKind(Permanent(base), "payment_declined"), false, nil, "payment_declined"},
		{"permanent keeps kind", Permanent(WithKind(base, "payment_declined")), false, nil, "payment_declined"},
		{"wrapped", errWrap{Permanent(base)}, false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := failureResponse(failureOf(tt.err)).GetFailure()
			require.Contains(t, f.Message, "card declined")
			require.Equal(t, tt.retryable, f.Retryable)
			require.Equal(t, tt.backoff, f.BackoffSeconds)
			require.Equal(t, tt.kind, f.Kind)
			require.ErrorIs(t, tt.err, base)
		})
	}
}

type errWrap struct{ err error }

func (e errWrap) Error() string { return "charging: " + e.err.Error() }
func (e errWrap) Unwrap() error { return e.err }

// Round trips through a real gRPC connection, in process.
func TestServerOverGRPC(t *testing.T) {
	t.Parallel()
	var got json.RawMessage
	srv := newServer(Handlers{
		"charge": func(ctx context.Context, req *Request) (any, error) {
			_, ok := ctx.Deadline()
			return map[string]any{"attempt": req.Attempt, "has_deadline": ok, "key": req.IdempotencyKey}, nil
		},
		"raw":    func(context.Context, *Request) (any, error) { return json.RawMessage(`[1,2]`), nil },
		"nil":    func(context.Context, *Request) (any, error) { return nil, nil },
		"panics": func(context.Context, *Request) (any, error) { panic("boom") },
		"bad":    func(context.Context, *Request) (any, error) { return func() {}, nil },
	}, &serveOptions{
		descriptions: map[string]string{"charge": "charges a card"},
		configure:    func(_ context.Context, c json.RawMessage) error { got = c; return nil },
	})
	client, server := goplugin.TestPluginGRPCConn(t, true, pb.PluginSet(srv))
	defer client.Close()
	defer server.Stop()
	raw, err := client.Dispense(pb.PluginName)
	require.NoError(t, err)
	c := raw.(pb.StepHandlerClient)
	ctx := context.Background()

	desc, err := c.Describe(ctx, &pb.DescribeRequest{})
	require.NoError(t, err)
	require.Len(t, desc.Handlers, 5)
	require.Equal(t, "bad", desc.Handlers[0].Name)
	require.Equal(t, "charges a card", desc.Handlers[1].Description)

	_, err = c.Configure(ctx, &pb.ConfigureRequest{})
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(got))

	deadline := time.Now().Add(time.Minute)
	resp, err := c.Execute(ctx, &pb.ExecuteRequest{Handler: "charge", Attempt: 2, IdempotencyKey: "1/charge", DeadlineUnixNano: deadline.UnixNano()})
	require.NoError(t, err)
	require.JSONEq(t, `{"attempt":2,"has_deadline":true,"key":"1/charge"}`, string(resp.GetSuccess().ResultJson))

	// A request that arrives after the host's lease ended is not run: the
	// handler would have succeeded.
	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "charge", Attempt: 2, StartByUnixNano: time.Now().Add(-time.Millisecond).UnixNano()})
	require.NoError(t, err)
	require.Nil(t, resp.GetSuccess(), "the handler ran after start_by")
	require.Equal(t, "lease_expired", resp.GetFailure().Kind)
	require.True(t, resp.GetFailure().Retryable)
	require.Contains(t, resp.GetFailure().Message, "not started")
	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "charge", Attempt: 2, StartByUnixNano: time.Now().Add(time.Minute).UnixNano()})
	require.NoError(t, err)
	require.NotNil(t, resp.GetSuccess(), "start_by ahead: the handler runs")

	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "raw"})
	require.NoError(t, err)
	require.Equal(t, `[1,2]`, string(resp.GetSuccess().ResultJson))
	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "nil"})
	require.NoError(t, err)
	require.Equal(t, `{}`, string(resp.GetSuccess().ResultJson))

	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "panics"})
	require.NoError(t, err)
	require.True(t, resp.GetFailure().Retryable)
	require.Contains(t, resp.GetFailure().Message, "panicked: boom")

	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "bad"})
	require.NoError(t, err)
	require.Contains(t, resp.GetFailure().Message, "cannot be encoded as JSON")

	resp, err = c.Execute(ctx, &pb.ExecuteRequest{Handler: "nope"})
	require.NoError(t, err)
	require.False(t, resp.GetFailure().Retryable)
	require.Contains(t, resp.GetFailure().Message, `no handler "nope"`)
}

func TestWatchParentNoticesANewParent(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{})
	// A ppid that is not ours looks like a parent that died.
	go watchParent(os.Getppid()+100000, time.Millisecond, func() { close(gone) })
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("watchParent did not notice")
	}
}

func TestLoggerWritesHCLogShape(t *testing.T) {
	t.Parallel()
	require.Equal(t, "@message", hclogShape(nil, slogAttr("msg")).Key)
	require.Equal(t, "@level", hclogShape(nil, slogAttr("level")).Key)
	require.Equal(t, "warn", hclogLevel(4))
	require.Equal(t, "x", hclogShape([]string{"g"}, slogAttr("x")).Key)

	// Durations, at any depth, as strings.
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: hclogShape}))
	l.Info("slept", "took", 1500*time.Millisecond, slog.Group("g", "wait", 2*time.Second), "n", 3)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "1.5s", rec["took"])
	require.Equal(t, map[string]any{"wait": "2s"}, rec["g"])
	require.Equal(t, float64(3), rec["n"])
	require.Equal(t, "slept", rec["@message"])
}

func slogAttr(key string) slog.Attr { return slog.String(key, "v") }
