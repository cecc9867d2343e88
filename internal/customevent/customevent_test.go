package customevent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func TestCollectInOrder(t *testing.T) {
	t.Parallel()
	ctx, col := Collect(context.Background())
	require.NoError(t, Emit(ctx, "payment.captured", map[string]any{"amount": 12}))
	require.NoError(t, Emit(ctx, "payment.note", nil))
	require.NoError(t, Emit(ctx, "payment.raw", json.RawMessage(` { "a" : [1, 2] } `)))
	events, refused := col.Close()
	require.Nil(t, refused)
	require.Equal(t, []backends.CustomEvent{
		{Name: "payment.captured", Payload: json.RawMessage(`{"amount":12}`)},
		{Name: "payment.note", Payload: json.RawMessage(`null`)},
		{Name: "payment.raw", Payload: json.RawMessage(`{"a":[1,2]}`)},
	}, events)

	require.ErrorIs(t, Emit(ctx, "payment.late", 1), ErrAttemptEnded)
	again, _ := col.Close()
	require.Len(t, again, 3, "an Emit after Close adds nothing")
}

func TestEmitWithoutCollector(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, Emit(context.Background(), "payment.captured", 1), ErrNoAttempt)
	var col *Collector
	events, refused := col.Close()
	require.Nil(t, events)
	require.Nil(t, refused)
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", MaxPayloadBytes) // its JSON string has two quotes more
	cases := []struct {
		name    string
		emit    func(ctx context.Context) error
		kind    string
		message string
	}{
		{"reserved", func(ctx context.Context) error { return Emit(ctx, "task.completed", nil) },
			backends.ErrorKindUndeclaredEvent, `"task.completed" is not a valid custom event name, so no step can declare it: the task namespace is taskerd's own`},
		{"no dot", func(ctx context.Context) error { return Emit(ctx, "captured", nil) },
			backends.ErrorKindUndeclaredEvent, `"captured" is not a valid custom event name`},
		{"long name", func(ctx context.Context) error { return Emit(ctx, "a."+strings.Repeat("b", MaxNameBytes), nil) },
			backends.ErrorKindUndeclaredEvent, "over the limit of 128"},
		{"payload too large", func(ctx context.Context) error { return Emit(ctx, "a.b", big) },
			backends.ErrorKindInvalidEvent, "its payload is 65538 bytes of JSON, over the limit of 65536"},
		{"not encodable", func(ctx context.Context) error { return Emit(ctx, "a.b", func() {}) },
			backends.ErrorKindInvalidEvent, "cannot be encoded as JSON"},
		{"invalid raw JSON", func(ctx context.Context) error { return Emit(ctx, "a.b", json.RawMessage(`{`)) },
			backends.ErrorKindInvalidEvent, "cannot be encoded as JSON"},
		{"not storable", func(ctx context.Context) error { return Emit(ctx, "a.b", "nul \x00 inside") },
			backends.ErrorKindInvalidEvent, "cannot be stored"},
		{"too many", func(ctx context.Context) error {
			for i := range MaxEvents {
				if err := Emit(ctx, "a.b", i); err != nil {
					return err
				}
			}
			return Emit(ctx, "a.b", "one more")
		}, backends.ErrorKindInvalidEvent, "at most 100 events"},
		{"too much in all", func(ctx context.Context) error {
			half := strings.Repeat("y", MaxPayloadBytes-2)
			for range MaxTotalBytes / MaxPayloadBytes {
				if err := Emit(ctx, "a.b", half); err != nil {
					return err
				}
			}
			return Emit(ctx, "a.b", half)
		}, backends.ErrorKindInvalidEvent, "would exceed 1048576 bytes in all"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, col := Collect(context.Background())
			require.NoError(t, Emit(ctx, "ok.before", 1))
			err := tc.emit(ctx)
			var r *Refusal
			require.True(t, errors.As(err, &r), "want a *Refusal, got %v", err)
			require.Equal(t, tc.kind, r.Kind)
			require.Contains(t, r.Message, tc.message)

			// The refusal sticks, even for a valid event after it, and the
			// attempt's events are dropped, those before it too.
			require.ErrorIs(t, Emit(ctx, "ok.after", 2), r)
			events, refused := col.Close()
			require.Nil(t, events)
			require.Same(t, r, refused)
		})
	}
}

func TestEmitConcurrently(t *testing.T) {
	t.Parallel()
	ctx, col := Collect(context.Background())
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { require.NoError(t, Emit(ctx, "a.b", i)) })
	}
	wg.Wait()
	events, refused := col.Close()
	require.Nil(t, refused)
	require.Len(t, events, 50)
}
