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
)

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
