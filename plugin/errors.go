package plugin

import (
	"errors"
	"time"
)

// Failure is a handler error that says how taskerd should treat it. Build
// one with Retryable, Permanent, RetryAfter or WithKind.
type Failure struct {
	Err       error
	Retryable bool
	// Backoff is the wait asked for before the next attempt; 0 for none.
	Backoff time.Duration
	// Kind labels the failure in the step's error; empty means
	// handler_error (retryable) or permanent.
	Kind string
}

func (f *Failure) Error() string {
	if f.Err == nil {
		return "step failed"
	}
	return f.Err.Error()
}

func (f *Failure) Unwrap() error { return f.Err }

// failureOf returns the Failure err is or wraps, or a retryable one.
func failureOf(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		// Keep the outermost message: wrapping adds context.
		return &Failure{Err: err, Retryable: f.Retryable, Backoff: f.Backoff, Kind: f.Kind}
	}
	return &Failure{Err: err, Retryable: true}
}

// Retryable marks err as a failure a later attempt may fix (what a plain
// error already is). It keeps a kind set by WithKind.
func Retryable(err error) error {
	f := failureOf(err)
	f.Retryable = true
	return f
}

// Permanent marks err as a failure no retry can fix: the step is blocked at
// once, whatever attempts it has left.
func Permanent(err error) error {
	f := failureOf(err)
	f.Retryable = false
	f.Backoff = 0
	return f
}

// RetryAfter marks err as retryable no sooner than d from now. taskerd
// keeps whole seconds, rounding up.
func RetryAfter(err error, d time.Duration) error {
	f := failureOf(err)
	f.Retryable = true
	f.Backoff = max(d, 0)
	return f
}

// WithKind labels err with a kind (e.g. "payment_declined"), stored in the
// step's error next to the message. It keeps whether err is retryable.
func WithKind(err error, kind string) error {
	f := failureOf(err)
	f.Kind = kind
	return f
}
