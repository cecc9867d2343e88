package plugin

import (
	"context"

	"github.com/taskerd/taskerd/internal/customevent"
)

// Limits of one attempt's custom events. An Emit past one is refused and
// fails the attempt (kind invalid_event).
const (
	MaxEvents          = customevent.MaxEvents       // events per attempt
	MaxEventPayload    = customevent.MaxPayloadBytes // bytes of one payload, as compact JSON
	MaxEventPayloadAll = customevent.MaxTotalBytes   // bytes of an attempt's payloads together
	MaxEventName       = customevent.MaxNameBytes    // bytes of a name
)

// ErrNoAttempt is Emit's error when ctx is not (derived from) the ctx a
// handler was called with.
var ErrNoAttempt = customevent.ErrNoAttempt

// ErrAttemptEnded is Emit's error once the handler returned (from a
// goroutine that outlived it): the attempt's events were already sent.
var ErrAttemptEnded = customevent.ErrAttemptEnded

// Emit records a custom event of the attempt ctx belongs to (ctx is, or
// derives from, the one the handler was given). taskerd writes the
// attempt's events with its result, success or failure, before the step's
// own event, for webhooks and the event stream to deliver.
//
// name is the event's type, e.g. "payment.captured": dot-separated parts
// of letters, digits, _ and -, with at least one dot, not in the task.,
// step. or workflow. namespaces, at most 128 bytes; the step must declare
// it (events = ["payment.captured"] in its HCL). payload is encoded with
// json.Marshal (a json.RawMessage is used as it is; nil is null).
//
// A refused event (a name no step can declare, more than MaxEvents
// events, a payload over MaxEventPayload, MaxEventPayloadAll in all, a
// payload that cannot be encoded) returns an error and fails the attempt,
// even if the handler ignores the error: not retryable, kind
// undeclared_event for the name, invalid_event otherwise; none of the
// attempt's events is written. So does, on taskerd's side, a valid name the
// step does not declare (undeclared_event).
func Emit(ctx context.Context, name string, payload any) error {
	return customevent.Emit(ctx, name, payload)
}
