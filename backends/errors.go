package backends

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the task or step does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidTransition: the state machine does not allow the change.
	// Returned wrapped in an *InvalidTransitionError.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrLeaseLost: a result or heartbeat carried a lease token that is no
	// longer the step's current one (the lease expired and the step was
	// recovered or claimed again). Nothing was written.
	ErrLeaseLost = errors.New("lease lost")
	// ErrDuplicate: an idempotency key was reused with a different request.
	ErrDuplicate = errors.New("duplicate")
	// ErrUnavailable: the database could not be reached or cannot write at
	// the moment, so the call failed for a reason that is expected to pass
	// (the same call may succeed later): the connection was refused, reset
	// or closed; the call ran out of time (a timeout, or its context's
	// deadline: context.DeadlineExceeded is in the chain too); PostgreSQL
	// answered with SQLSTATE class 08 (connection exception), 53
	// (insufficient resources: disk full, out of memory, too many
	// connections), 57P0x (shutting down, cannot connect now) or 25006 (a
	// read-only server); SQLite answered SQLITE_FULL, SQLITE_IOERR (any),
	// SQLITE_CANTOPEN, SQLITE_READONLY, or SQLITE_BUSY (after its busy
	// timeout); or the store is closed. Returned wrapped in an
	// *UnavailableError, whose chain holds the driver's error.
	//
	// A write that fails with it was not applied, except when the
	// connection was lost or the deadline passed during the commit itself:
	// then it may have been. Retrying with the same idempotency key is safe.
	ErrUnavailable = errors.New("database unavailable")
)

// UnavailableError is a failure of the database's availability (see
// ErrUnavailable, which it matches with errors.Is). Err is the driver's (or
// the context's) error, which errors.Is and errors.As also reach.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "database unavailable: " + e.Err.Error() }

func (e *UnavailableError) Unwrap() error { return e.Err }

func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable wraps err in an *UnavailableError; nil stays nil, and an
// error that already matches ErrUnavailable is returned as it is. The
// stores call it on the errors they classify as unavailability.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &UnavailableError{Err: err}
}

// InvalidTransitionError names the object and the refused change. It
// matches ErrInvalidTransition with errors.Is.
type InvalidTransitionError struct {
	// Object is "task 12" or "step 40 (charge) of task 12".
	Object string
	From   string
	To     string
}

func (e *InvalidTransitionError) Error() string {
	return fmt.Sprintf("invalid state transition for %s: %s -> %s", e.Object, e.From, e.To)
}

func (e *InvalidTransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// StepObject names a step in an InvalidTransitionError: "step 40 (charge)
// of task 12".
func StepObject(s *Step) string {
	return fmt.Sprintf("step %d (%s) of task %d", s.ID, s.Name, s.TaskID)
}

// TaskObject names a task in an InvalidTransitionError: "task 12".
func TaskObject(id int64) string { return fmt.Sprintf("task %d", id) }
