package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

func TestFailureFromError(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	seven := 7
	tests := []struct {
		name    string
		err     error
		want    backends.StepError
		backoff *int
	}{
		{"plain error", base, backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, nil},
		{"wrapped plain", fmt.Errorf("calling api: %w", base), backends.StepError{Message: "calling api: boom", Retryable: true, Kind: backends.ErrorKindHandler}, nil},
		{"retryable", Retryable(base), backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, nil},
		{"permanent", Permanent(base), backends.StepError{Message: "boom", Retryable: false, Kind: backends.ErrorKindPermanent}, nil},
		{"permanent wrapped", fmt.Errorf("x: %w", Permanent(base)), backends.StepError{Message: "boom", Retryable: false, Kind: backends.ErrorKindPermanent}, nil},
		{"retry after", RetryAfter(base, 6500*time.Millisecond), backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, &seven},
		{"retry after nothing", RetryAfter(base, 0), backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, nil},
		{"explicit kind", &StepFailure{Message: "died", Retryable: true, Kind: backends.ErrorKindPluginCrashed}, backends.StepError{Message: "died", Retryable: true, Kind: backends.ErrorKindPluginCrashed}, nil},
		{"non-retryable without kind", &StepFailure{Message: "no"}, backends.StepError{Message: "no", Retryable: false, Kind: backends.ErrorKindPermanent}, nil},
		{"empty message", &StepFailure{Retryable: true}, backends.StepError{Message: "step failed", Retryable: true, Kind: backends.ErrorKindHandler}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, backoff := failureFromError(tt.err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.backoff, backoff)
		})
	}
	require.ErrorIs(t, Permanent(base), base)
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	h := HandlerFunc(func(context.Context, *StepRequest) (json.RawMessage, error) { return nil, nil })
	require.NoError(t, r.Register("pay.charge", h))
	require.Error(t, r.Register("pay.charge", h), "duplicate")
	for _, bad := range []string{"charge", ".charge", "pay.", "a.b.c"} {
		require.Error(t, r.Register(bad, h), bad)
	}
	require.Error(t, r.Register("pay.refund", nil))
	_, ok := r.Lookup("pay.charge")
	require.True(t, ok)
	require.Equal(t, []string{"pay.charge"}, r.Names())
	r.Unregister("pay.charge")
	_, ok = r.Lookup("pay.charge")
	require.False(t, ok)
}

func TestBusNeverBlocksAndCountsDrops(t *testing.T) {
	t.Parallel()
	b := newBus()
	slow, cancelSlow := b.subscribe(2)
	fast, cancelFast := b.subscribe(100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			b.publish(Event{Type: EventStepCompleted, TaskID: int64(i)})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish blocked on a slow subscriber")
	}
	require.Equal(t, int64(8), b.dropped.Load())
	require.Len(t, fast, 10)
	for i := 0; i < 10; i++ {
		require.Equal(t, int64(i), (<-fast).TaskID, "in order")
	}
	require.Equal(t, int64(0), (<-slow).TaskID)
	cancelSlow()
	cancelSlow() // idempotent
	cancelFast()
	b.publish(Event{Type: EventStepCompleted}) // no subscribers: no panic
	_, open := <-fast
	require.False(t, open)
}

func TestRealClockIsMicroseconds(t *testing.T) {
	t.Parallel()
	now := RealClock{}.Now()
	require.Equal(t, time.UTC, now.Location())
	require.Zero(t, now.Nanosecond()%1000)
}

func TestRequestHashIsCanonical(t *testing.T) {
	t.Parallel()
	ref, err := definition.ParseRef("ns/wf")
	require.NoError(t, err)
	a := requestHash(ref, json.RawMessage(`{"a":1,"b":[1,2]}`), CreateRequest{BypassSteps: []string{"y", "x"}})
	b := requestHash(ref, json.RawMessage(`{"b":[1,2],"a":1}`), CreateRequest{BypassSteps: []string{"x", "y"}})
	require.Equal(t, a, b)
	c := requestHash(ref, json.RawMessage(`{"b":[2,1],"a":1}`), CreateRequest{BypassSteps: []string{"x", "y"}})
	require.NotEqual(t, a, c)
	d := requestHash(ref, json.RawMessage(`{"a":1,"b":[1,2]}`), CreateRequest{BypassSteps: []string{"x", "y"}, Reason: "r"})
	require.NotEqual(t, a, d)
}

// nilStore satisfies backends.Store; every method panics. Validation
// failures must be refused before the store is asked anything.
type nilStore struct{ backends.Store }

func TestCreateValidatesBeforeTheStore(t *testing.T) {
	t.Parallel()
	ws, diags := definition.NewParser().ParseSource("v.hcl", []byte(`
workflow "v" {
  context_schema = {
    type = "object"
    properties = {
      n    = { type = "integer", minimum = 1 }
      tags = { type = "array", items = { type = "string" } }
    }
    required = ["n"]
  }
  step "a" {
    handler = "builtin.noop"
  }
}
`))
	require.False(t, diags.HasErrors(), diags.Error())
	reg := NewRegistry()
	require.NoError(t, reg.Register("builtin.noop", HandlerFunc(func(context.Context, *StepRequest) (json.RawMessage, error) { return nil, nil })))
	e, err := New(Config{Store: nilStore{}, Catalog: definition.NewCatalog(ws), Registry: reg})
	require.NoError(t, err)
	_, _, err = e.CreateTask(context.Background(), CreateRequest{Workflow: "v", Context: json.RawMessage(`{"n": 0, "tags": ["a", 3]}`)})
	var cve *ContextValidationError
	require.ErrorAs(t, err, &cve)
	var pointers []string
	for _, v := range cve.Violations {
		pointers = append(pointers, v.Pointer)
		require.NotEmpty(t, v.Message)
	}
	require.ElementsMatch(t, []string{"/n", "/tags/1"}, pointers, "%+v", cve.Violations)
	require.Contains(t, cve.Error(), "/tags/1")
}
