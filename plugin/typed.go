package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// KindInvalidInput is the kind of the permanent failure of a Typed handler
// whose input cannot be decoded from the task context and the step config.
const KindInvalidInput = "invalid_input"

// Typed adapts a handler that takes its input as a Go value and returns its
// result as one:
//
//	type ChargeInput struct {
//		OrderID  string `json:"order_id"`  // from the task context
//		Currency string `json:"currency"`  // from the context, or the step config
//	}
//	type Charge struct {
//		PaymentID string `json:"payment_id"`
//	}
//
//	func charge(ctx context.Context, req *plugin.Request, in ChargeInput) (Charge, error) { ... }
//
//	plugin.Serve(plugin.Handlers{"charge": plugin.Typed(charge)})
//
// The input is decoded with encoding/json in two layers: first the task
// context, then the step config over it, so a field the step config sets
// overrides the same field of the context (a nested struct or map is
// merged field by field, as json.Unmarshal merges into a value it already
// holds). Fields that neither sets keep their zero value. The task context
// is shared by every step of the task, so keys of it that In does not have
// are ignored; the step config is written for this step, so a key of it
// that In does not have is an error (a typo would otherwise be silently
// ignored). A failure to decode either is permanent, of kind
// KindInvalidInput, with a message naming the layer and what was wrong.
// Parent results are not part of In: read them with req.DecodeParent.
//
// The result is encoded with json.Marshal, as any handler's (a
// json.RawMessage is used as it is; a nil pointer becomes {}). A returned
// error is classified as any handler's: wrap it with Permanent, Retryable,
// RetryAfter or WithKind.
//
// Describe reports the JSON Schema of Out (ResultSchema) as the handler's
// result schema; taskerd checks results only against the result_schema a
// step declares in its HCL.
//
// Call Typed once per handler, when building Handlers: each call registers
// the handler it returns (for ResultSchema and Describe) for the life of
// the process. A HandlerFunc that wraps a Typed one is a plain handler to
// ResultSchema.
func Typed[In, Out any](fn func(ctx context.Context, req *Request, in In) (Out, error)) HandlerFunc {
	h := HandlerFunc(func(ctx context.Context, req *Request) (any, error) {
		var in In
		if err := decodeInput(req, &in); err != nil {
			return nil, err
		}
		out, err := fn(ctx, req, in)
		if err != nil {
			return nil, err
		}
		return out, nil
	})
	typedHandlers.Store(handlerID(h), typedInfo{
		in:  reflect.TypeFor[In](),
		out: reflect.TypeFor[Out](),
		h:   h,
	})
	return h
}

// decodeInput fills in from the task context, then from the step config
// over it (see Typed).
func decodeInput(req *Request, in any) error {
	fail := func(layer string, err error) error {
		return Permanent(WithKind(fmt.Errorf("step %q: its input (%s) does not decode into %T: %w", req.StepName, layer, in, err), KindInvalidInput))
	}
	if len(req.Context) > 0 && string(req.Context) != "null" {
		if err := json.Unmarshal(req.Context, in); err != nil {
			return fail("the task context", err)
		}
	}
	if len(req.Config) > 0 && string(req.Config) != "null" {
		dec := json.NewDecoder(bytes.NewReader(req.Config))
		dec.DisallowUnknownFields()
		if err := dec.Decode(in); err != nil {
			return fail("the step config", err)
		}
		if dec.More() {
			return fail("the step config", errors.New("more than one JSON value"))
		}
	}
	return nil
}

// typedInfo is what Typed knows of the handler it built.
type typedInfo struct {
	in, out reflect.Type
	h       HandlerFunc // keeps the closure, and so its address, alive
}

// typedHandlers maps the handlers Typed built, by handlerID, to their
// types, for Describe to report their result schemas.
var typedHandlers sync.Map

// handlerID identifies a func value by the address of its closure: a Go
// func value is a pointer to its closure record, and each call to Typed
// allocates a new one (it captures fn). A HandlerFunc Typed did not build
// is simply not found. A nil func has the ID 0.
func handlerID(h HandlerFunc) uintptr {
	return *(*uintptr)(unsafe.Pointer(&h))
}

// typedInfoOf returns what Typed knows of h, if Typed built it.
func typedInfoOf(h HandlerFunc) (typedInfo, bool) {
	if h == nil {
		return typedInfo{}, false
	}
	v, ok := typedHandlers.Load(handlerID(h))
	if !ok {
		return typedInfo{}, false
	}
	return v.(typedInfo), true
}

// ResultSchema returns the JSON Schema of the result of h, a handler that
// Typed built, or false for any other handler: SchemaOf its Out, but for a
// pointer Out that of what it points to, since taskerd records a null
// result as {} (a schema allowing null would promise what no step result
// is). A plugin can print it for its HCL, e.g. from a test (see
// docs/plugins-go.md).
func ResultSchema(h HandlerFunc) (json.RawMessage, bool, error) {
	info, ok := typedInfoOf(h)
	if !ok {
		return nil, false, nil
	}
	out := info.out
	for out.Kind() == reflect.Pointer {
		out = out.Elem()
	}
	s, err := schemaOfType(out)
	return s, true, err
}

// InputSchema is ResultSchema for the input of h (SchemaOf its In): the
// shape Typed decodes from the task context and the step config.
func InputSchema(h HandlerFunc) (json.RawMessage, bool, error) {
	info, ok := typedInfoOf(h)
	if !ok {
		return nil, false, nil
	}
	s, err := schemaOfType(info.in)
	return s, true, err
}
