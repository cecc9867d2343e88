// Package plugintest runs a taskerd step handler (a plugin.HandlerFunc, or
// one plugin.Typed built) in a unit test, without taskerd and without a
// plugin process:
//
//	func TestCharge(t *testing.T) {
//		out := plugintest.Call(t, plugin.Typed(charge), plugintest.Request{
//			Context: map[string]any{"order_id": "A-1"},
//			Config:  map[string]any{"currency": "EUR"},
//		})
//		require.Nil(t, out.Failure)
//		got := plugintest.Decode[Charge](t, out)
//		...
//	}
//
// The handler runs through the same code as in a served plugin's Execute
// (the SDK's gRPC server, called in-process): its panics are recovered, its
// error is classified (retryable, permanent, retry-after, kind) by the
// SDK's own rules, its result is encoded, and its custom events are
// collected and checked against the SDK's limits. What the Outcome holds is
// what taskerd receives from the plugin, with the defaults taskerd applies
// when it records it (an empty result is {}, a failure without a kind is
// handler_error when retryable and permanent otherwise).
//
// Not reproduced: taskerd's own checks after the call (an event name the
// step does not declare, a result against the step's result_schema, a
// failure after the step's deadline recorded as a timeout).
package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/plugin"
	"github.com/taskerd/taskerd/plugin/internal/sdkbridge"
	pb "github.com/taskerd/taskerd/plugin/proto"
)

// Request is the attempt to run. Every field is optional.
type Request struct {
	// Context is the task context: a json.RawMessage (used as it is) or a
	// value json.Marshal encodes. nil is {}.
	Context any
	// Config is the step's config, encoded like Context; nil: the step has
	// none.
	Config any
	// Parents are the results of the step's parents by step name, each
	// encoded like Context (nil is {}).
	Parents map[string]any
	// TaskID and StepID default to 1.
	TaskID, StepID int64
	// StepName defaults to "step"; Handler (the HANDLER of PLUGIN.HANDLER)
	// to "handler".
	StepName, Handler string
	// Attempt defaults to 1.
	Attempt int
	// Deadline is the step's deadline, also set on the handler's ctx; zero
	// is none.
	Deadline time.Time
}

// Outcome is what one attempt ended with.
type Outcome struct {
	// Result is the result on success, as taskerd records it; nil after a
	// failure.
	Result json.RawMessage
	// Failure is the failure, or nil after a success.
	Failure *Failure
	// Events are the custom events the handler emitted (plugin.Emit), in
	// order; taskerd writes them with either outcome. An event the SDK
	// refused (bad name, over a limit) fails the attempt and none is kept.
	Events []Event
	// Logs are the lines the handler logged with its ctx
	// (plugin.Logger().InfoContext(ctx, ...)), in order. Lines logged
	// without the handler's ctx are written to stderr as usual.
	Logs []Log
}

// Failure is a failed attempt as taskerd records it.
type Failure struct {
	Message   string
	Retryable bool
	// Backoff is the wait asked for before the next attempt, in the whole
	// seconds taskerd keeps (plugin.RetryAfter rounds up); 0 for none.
	Backoff time.Duration
	// Kind is the handler's kind (plugin.WithKind), else handler_error for
	// a retryable failure and permanent for one that is not.
	Kind string
}

func (f *Failure) Error() string {
	return fmt.Sprintf("%s (kind %s, retryable %t)", f.Message, f.Kind, f.Retryable)
}

// Event is an emitted custom event.
type Event struct {
	Name    string
	Payload json.RawMessage
}

// Log is a line the handler logged. Attrs holds its attributes by key
// (group.key inside a group), each the slog.Value's Any().
type Log struct {
	Level   slog.Level
	Message string
	Attrs   map[string]any
}

// Call runs h for req under t.Context() and fails the test if req cannot
// be encoded.
func Call(t testing.TB, h plugin.HandlerFunc, req Request) *Outcome {
	t.Helper()
	out, err := CallContext(t.Context(), h, req)
	if err != nil {
		t.Fatalf("plugintest.Call: %v", err)
	}
	return out
}

// CallContext runs h for req under ctx (cancel it to test a handler's
// cancellation). Its error is about the call itself (req cannot be
// encoded); the handler's failure is in the Outcome.
func CallContext(ctx context.Context, h plugin.HandlerFunc, req Request) (*Outcome, error) {
	if h == nil {
		return nil, errors.New("the handler is nil")
	}
	in, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		logs []Log
	)
	ctx = sdkbridge.WithLogs(ctx, func(r slog.Record) {
		l := Log{Level: r.Level, Message: r.Message, Attrs: map[string]any{}}
		r.Attrs(func(a slog.Attr) bool {
			l.Attrs[a.Key] = a.Value.Resolve().Any()
			return true
		})
		mu.Lock()
		logs = append(logs, l)
		mu.Unlock()
	})
	resp, err := sdkbridge.Execute(ctx, h, in)
	if err != nil {
		return nil, err
	}
	out := &Outcome{}
	for _, ev := range resp.Events {
		payload := json.RawMessage(ev.PayloadJson)
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		out.Events = append(out.Events, Event{Name: ev.Name, Payload: payload})
	}
	switch o := resp.Outcome.(type) {
	case *pb.ExecuteResponse_Success:
		out.Result = o.Success.ResultJson
		if len(out.Result) == 0 || string(out.Result) == "null" {
			out.Result = json.RawMessage("{}")
		}
	case *pb.ExecuteResponse_Failure:
		f := &Failure{Message: o.Failure.Message, Retryable: o.Failure.Retryable, Kind: o.Failure.Kind}
		if o.Failure.BackoffSeconds != nil && *o.Failure.BackoffSeconds > 0 {
			f.Backoff = time.Duration(*o.Failure.BackoffSeconds) * time.Second
		}
		if f.Kind == "" {
			if f.Retryable {
				f.Kind = backends.ErrorKindHandler
			} else {
				f.Kind = backends.ErrorKindPermanent
			}
		}
		out.Failure = f
	default:
		return nil, fmt.Errorf("the SDK answered with neither a result nor a failure")
	}
	mu.Lock()
	out.Logs = logs
	mu.Unlock()
	return out, nil
}

// Decode decodes the result into v; it is the Failure when the attempt
// failed.
func (o *Outcome) Decode(v any) error {
	if o.Failure != nil {
		return o.Failure
	}
	return json.Unmarshal(o.Result, v)
}

// Decode returns the result decoded as a T, failing the test when the
// attempt failed or the result does not decode.
func Decode[T any](t testing.TB, o *Outcome) T {
	t.Helper()
	var v T
	if err := o.Decode(&v); err != nil {
		t.Fatalf("plugintest.Decode: %v", err)
	}
	return v
}

func encodeRequest(r Request) (*pb.ExecuteRequest, error) {
	in := &pb.ExecuteRequest{
		TaskId:   orDefault(r.TaskID, 1),
		StepId:   orDefault(r.StepID, 1),
		StepName: orDefault(r.StepName, "step"),
		Handler:  orDefault(r.Handler, "handler"),
		Attempt:  int32(orDefault(r.Attempt, 1)),
	}
	in.IdempotencyKey = strconv.FormatInt(in.TaskId, 10) + "/" + in.StepName
	if !r.Deadline.IsZero() {
		in.DeadlineUnixNano = r.Deadline.UnixNano()
	}
	var err error
	if in.ContextJson, err = encode("the context", r.Context, "{}"); err != nil {
		return nil, err
	}
	if r.Config != nil {
		if in.ConfigJson, err = encode("the config", r.Config, ""); err != nil {
			return nil, err
		}
	}
	in.ParentResultsJson = make(map[string][]byte, len(r.Parents))
	for name, v := range r.Parents {
		if in.ParentResultsJson[name], err = encode(fmt.Sprintf("the result of parent %q", name), v, "{}"); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// encode writes v as JSON: a json.RawMessage or []byte as it is (it must
// be valid JSON), nil as ifNil.
func encode(what string, v any, ifNil string) ([]byte, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return []byte(ifNil), nil
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", what, err)
		}
		return b, nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s is not valid JSON: %q", what, b)
	}
	return b, nil
}
