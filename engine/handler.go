package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Handler runs one step (SEMANTICS §5.3). It returns the step's result as
// JSON (nil means {}), or an error. An error is a retryable failure of kind
// handler_error unless it is (or wraps) a *StepFailure that says otherwise.
//
// The context carries the step's deadline (its timeout) and is cancelled
// when an operator cancels the step or its task, or when this node loses
// the step's lease. A handler should return promptly when it is done.
type Handler interface {
	Execute(ctx context.Context, req *StepRequest) (json.RawMessage, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *StepRequest) (json.RawMessage, error)

// Execute calls f.
func (f HandlerFunc) Execute(ctx context.Context, req *StepRequest) (json.RawMessage, error) {
	return f(ctx, req)
}

// RetryHook is an optional interface of a Handler. When an operator
// retries a step (RetryStep, or RetryTask for each step it puts back), the
// engine calls OperatorRetry on the handler this node's Registry holds for
// the step's handler name, once per handler name and action, after the
// retry is recorded and before the action returns. A plugin handler uses
// it to relaunch a crashed plugin now instead of after its restart
// backoff, so that the retry does not fail again for a plugin that may
// have been fixed. It must return promptly and not panic.
//
// A handler that wraps another (to time or log its calls) should have a
// method Unwrap() Handler returning the one it wraps: the engine follows it
// to find a RetryHook.
type RetryHook interface {
	OperatorRetry()
}

// retryHookOf finds the RetryHook of h, or of the handlers it wraps.
func retryHookOf(h Handler) (RetryHook, bool) {
	for range 16 { // a bound against a wrapper that unwraps to itself
		if hook, ok := h.(RetryHook); ok {
			return hook, true
		}
		u, ok := h.(interface{ Unwrap() Handler })
		if !ok {
			return nil, false
		}
		if h = u.Unwrap(); h == nil {
			return nil, false
		}
	}
	return nil, false
}

// StepRequest is everything a handler gets for one attempt of a step.
type StepRequest struct {
	TaskID   int64
	StepID   int64
	StepName string
	// Handler is the PLUGIN.HANDLER string the step names.
	Handler string
	// Attempt counts from 1; a retry has Attempt > 1.
	Attempt int
	// Context is the task's context, a JSON object.
	Context json.RawMessage
	// Config is the step's config, or nil when it has none.
	Config json.RawMessage
	// ParentResults are the results of the step's parents, by step name.
	ParentResults map[string]json.RawMessage
	// Deadline is when the step times out (also the context's deadline).
	Deadline time.Time
	// StartBy is the instant at or after which the handler must not start:
	// this node's own bound on its lease of the step. The engine checks it
	// just before it calls a handler, and a plugin host passes it on, so
	// that a call that arrives later (this node was paused or starved
	// between deciding to start the handler and the call reaching the
	// plugin) is refused there, not run for a step another node may have
	// taken over meanwhile. Zero: no bound.
	StartBy time.Time
	// IdempotencyKey is "task_id/step_name" (IdempotencyKey): the same for
	// every attempt of the step, an operator's retry included, so that a
	// retry after a timeout does not act twice; Attempt tells the attempts
	// apart.
	IdempotencyKey string
}

// IdempotencyKey is the key a step's handler gets on every attempt:
// "task_id/step_name". A step name is unique within its task, and a task id
// within its database.
func IdempotencyKey(taskID int64, stepName string) string {
	return strconv.FormatInt(taskID, 10) + "/" + stepName
}

// StepFailure is a handler failure that says how the engine should treat
// it. Build one with Retryable, Permanent or RetryAfter, or directly.
type StepFailure struct {
	Message   string
	Retryable bool
	// BackoffSeconds is the backoff the handler asks for before the next
	// attempt, or nil for the step's exponential backoff alone.
	BackoffSeconds *int
	// Kind is one of backends.ErrorKind*; empty means handler_error for a
	// retryable failure and permanent otherwise.
	Kind string
	// Err is the underlying error, if any.
	Err error
}

func (f *StepFailure) Error() string {
	if f.Message == "" && f.Err != nil {
		return f.Err.Error()
	}
	return f.Message
}

func (f *StepFailure) Unwrap() error { return f.Err }

// Retryable marks err as a failure that a later attempt may fix.
func Retryable(err error) error {
	return &StepFailure{Message: errMessage(err), Retryable: true, Err: err}
}

// Permanent marks err as a failure that no retry can fix: the step is
// blocked at once, whatever attempts it has left.
func Permanent(err error) error {
	return &StepFailure{Message: errMessage(err), Retryable: false, Kind: backends.ErrorKindPermanent, Err: err}
}

// RetryAfter marks err as retryable no sooner than d from now. d is rounded
// up to whole seconds (what the store keeps); d <= 0 asks for nothing.
func RetryAfter(err error, d time.Duration) error {
	f := &StepFailure{Message: errMessage(err), Retryable: true, Err: err}
	if d > 0 {
		s := int((d + time.Second - 1) / time.Second)
		f.BackoffSeconds = &s
	}
	return f
}

func errMessage(err error) string {
	if err == nil {
		return "step failed"
	}
	return err.Error()
}

// failureFromError turns what a handler returned into the StepError the
// store records, and the backoff it asked for.
func failureFromError(err error) (backends.StepError, *int) {
	var f *StepFailure
	if errors.As(err, &f) {
		se := backends.StepError{Message: f.Error(), Retryable: f.Retryable, Kind: f.Kind}
		if se.Kind == "" {
			if f.Retryable {
				se.Kind = backends.ErrorKindHandler
			} else {
				se.Kind = backends.ErrorKindPermanent
			}
		}
		if se.Message == "" {
			se.Message = "step failed"
		}
		var backoff *int
		if f.BackoffSeconds != nil && *f.BackoffSeconds > 0 {
			b := *f.BackoffSeconds
			backoff = &b
		}
		return se, backoff
	}
	return backends.StepError{Message: errMessage(err), Retryable: true, Kind: backends.ErrorKindHandler}, nil
}

// Registry maps handler names (PLUGIN.HANDLER, e.g. "builtin.noop") to
// handlers. It is safe for concurrent use: plugins may register while the
// engine runs.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{handlers: map[string]Handler{}} }

// Register adds a handler under name, which must be PLUGIN.HANDLER. A name
// registered twice is an error.
func (r *Registry) Register(name string, h Handler) error {
	plugin, handler, ok := strings.Cut(name, ".")
	if !ok || plugin == "" || handler == "" || strings.Contains(handler, ".") {
		return fmt.Errorf("registering handler %q: want PLUGIN.HANDLER", name)
	}
	if h == nil {
		return fmt.Errorf("registering handler %q: nil handler", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[name]; dup {
		return fmt.Errorf("registering handler %q: already registered", name)
	}
	r.handlers[name] = h
	return nil
}

// Unregister removes a handler (a plugin that stopped). Steps naming it
// fail (retryable) until it is registered again.
func (r *Registry) Unregister(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.handlers, name)
}

// Lookup returns the handler registered under name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[name]
	return h, ok
}

// Names lists the registered handler names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
