// Package customevent collects the custom events a step handler emits
// during one attempt (engine.Emit for in-process handlers, plugin.Emit in a
// plugin's process), and holds the rules they must follow. The two Emit
// functions are this package's Emit: one implementation, so that a
// built-in handler and a plugin are held to the same names and limits.
//
// Whoever calls a handler puts a Collector in its ctx (Collect) and takes
// the events once the handler returned (Close). An Emit that breaks a rule
// returns an error and is remembered: the attempt fails, with none of its
// events, even if the handler ignored the error.
package customevent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/taskerd/taskerd/backends"
)

// Limits of one attempt's custom events (docs/plugins.md).
const (
	// MaxEvents is how many events one attempt may emit.
	MaxEvents = 100
	// MaxPayloadBytes bounds one event's payload, as compact JSON.
	MaxPayloadBytes = 64 << 10
	// MaxTotalBytes bounds the payloads of one attempt's events together
	// (they travel in one gRPC message, under its 4 MiB limit).
	MaxTotalBytes = 1 << 20
	// MaxNameBytes bounds an event name (declared or emitted).
	MaxNameBytes = 128
)

// ErrNoAttempt is Emit's error when ctx is not (derived from) the ctx a
// step handler was called with.
var ErrNoAttempt = errors.New("emit: ctx belongs to no step handler call (pass the ctx your handler was given)")

// ErrAttemptEnded is Emit's error once the attempt's result was taken (a
// goroutine of the handler that outlived it).
var ErrAttemptEnded = errors.New("emit: the attempt has ended; its events were already sent")

// ValidName says whether name may be a custom event's:
// backends.ValidCustomEventName, at most MaxNameBytes long.
func ValidName(name string) bool {
	return len(name) <= MaxNameBytes && backends.ValidCustomEventName(name)
}

// NameRule says, for a name that is not ValidName, why.
func NameRule(name string) string {
	if len(name) > MaxNameBytes {
		return fmt.Sprintf("it is %d bytes long, over the limit of %d", len(name), MaxNameBytes)
	}
	for _, p := range backends.ReservedEventPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("the %s namespace is taskerd's own (reserved: %s)", strings.TrimSuffix(p, "."), strings.Join(backends.ReservedEventPrefixes, ", "))
		}
	}
	return `write it as dot-separated parts of letters, digits, _ and -, with at least one dot (e.g. "payment.captured")`
}

// Refusal is why an attempt's events were refused: its Kind is
// backends.ErrorKindUndeclaredEvent for a name no step can declare,
// backends.ErrorKindInvalidEvent otherwise.
type Refusal struct {
	Kind    string
	Message string
}

func (r *Refusal) Error() string { return r.Message }

type key struct{}

// Collector gathers one attempt's events. Safe for concurrent use: a
// handler may emit from several goroutines.
type Collector struct {
	mu      sync.Mutex
	events  []backends.CustomEvent
	total   int
	refused *Refusal
	closed  bool
}

// Collect returns a ctx under which Emit adds to a new Collector.
func Collect(ctx context.Context) (context.Context, *Collector) {
	c := &Collector{}
	return context.WithValue(ctx, key{}, c), c
}

// Emit adds an event to the Collector of ctx: name must be ValidName (a
// step still has to declare it, which the engine checks), payload is
// encoded with json.Marshal (a json.RawMessage is used as it is, once
// validated; nil is null). It fails with ErrNoAttempt without a Collector,
// ErrAttemptEnded after Close, or a *Refusal when the event breaks a rule;
// a refusal also fails the attempt.
func Emit(ctx context.Context, name string, payload any) error {
	c, _ := ctx.Value(key{}).(*Collector)
	if c == nil {
		return ErrNoAttempt
	}
	raw, merr := json.Marshal(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrAttemptEnded
	}
	if c.refused != nil {
		return c.refused
	}
	if r := check(name, raw, merr, len(c.events), c.total); r != nil {
		c.refused = r
		return r
	}
	c.events = append(c.events, backends.CustomEvent{Name: name, Payload: raw})
	c.total += len(raw)
	return nil
}

// check says whether an attempt that emitted n events of total payload
// bytes may emit name with payload raw (merr: raw's encoding error).
func check(name string, raw []byte, merr error, n, total int) *Refusal {
	shown := name
	if len(shown) > MaxNameBytes {
		shown = strings.ToValidUTF8(shown[:MaxNameBytes], "") + "..."
	}
	switch {
	case !ValidName(name):
		return &Refusal{Kind: backends.ErrorKindUndeclaredEvent,
			Message: fmt.Sprintf("event name %q is not a valid custom event name, so no step can declare it: %s", shown, NameRule(name))}
	case n >= MaxEvents:
		return &Refusal{Kind: backends.ErrorKindInvalidEvent,
			Message: fmt.Sprintf("event %q: an attempt may emit at most %d events", shown, MaxEvents)}
	case merr != nil:
		return &Refusal{Kind: backends.ErrorKindInvalidEvent,
			Message: fmt.Sprintf("event %q: its payload cannot be encoded as JSON: %v", shown, merr)}
	case len(raw) > MaxPayloadBytes:
		return &Refusal{Kind: backends.ErrorKindInvalidEvent,
			Message: fmt.Sprintf("event %q: its payload is %d bytes of JSON, over the limit of %d", shown, len(raw), MaxPayloadBytes)}
	case total+len(raw) > MaxTotalBytes:
		return &Refusal{Kind: backends.ErrorKindInvalidEvent,
			Message: fmt.Sprintf("event %q: the attempt's event payloads would exceed %d bytes in all", shown, MaxTotalBytes)}
	}
	if err := backends.CheckJSON(raw); err != nil {
		return &Refusal{Kind: backends.ErrorKindInvalidEvent,
			Message: fmt.Sprintf("event %q: its payload cannot be stored: %v", shown, err)}
	}
	return nil
}

// Close ends the attempt's collection (a later Emit fails with
// ErrAttemptEnded) and returns its events in the order emitted, or none
// and the refusal when an Emit broke a rule. A nil Collector has none.
func (c *Collector) Close() ([]backends.CustomEvent, *Refusal) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.refused != nil {
		return nil, c.refused
	}
	return c.events, nil
}
