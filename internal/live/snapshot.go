// Package live shows a person how one task is getting on: one line per
// step (state, attempt, elapsed time, a backoff's remaining wait, a blocked
// step's error) and a progress bar, redrawn in place on a terminal; one
// line per change everywhere else (a pipe, a file, --plain).
//
// What it draws comes from snapshots of the task, read by a Source: the
// REST API for "taskerd task watch", the store of the process for
// "taskerd run". The renderer itself is pure: it draws what it is given
// against the clock it is given.
package live

import (
	"context"
	"time"
)

// The six states of a task or a step (SEMANTICS §2), as the API spells them.
const (
	StatePending          = "pending"
	StateInProgress       = "in_progress"
	StateComplete         = "complete"
	StateError            = "error"
	StateCancelled        = "cancelled"
	StateResolvedManually = "resolved_manually"
)

// Snapshot is a task as it was read at one instant.
type Snapshot struct {
	TaskID   int64
	Workflow string // NAMESPACE/NAME@VERSION
	State    string // the task's state
	Steps    []Step // in the workflow's topological order
	// Note is a passing remark drawn under the progress bar, e.g. that the
	// server does not answer and the last snapshot is shown.
	Note string
}

// Step is one step of a Snapshot.
type Step struct {
	Name       string
	State      string
	Attempts   int // attempts started, the current one included
	RetryLimit int // attempts allowed in all
	// StartedAt is when the latest attempt's handler started; nil before
	// the first, and while a claimed step waits for a worker.
	StartedAt *time.Time
	// EndedAt is when the latest attempt ended, successfully or not; it is
	// older than StartedAt while a new attempt runs.
	EndedAt *time.Time
	// ErrorKind and ErrorMessage are the latest failure, if any.
	ErrorKind, ErrorMessage string
	// NextRetryAt is when a step in error that will be retried becomes
	// ready again; nil otherwise.
	NextRetryAt *time.Time
	// Blocked: in error and no retry will come without an operator.
	Blocked bool
}

// Over reports whether the task will not move again by itself: complete,
// cancelled, resolved manually, or in error (blocked, waiting for an
// operator).
func (s Snapshot) Over() bool {
	switch s.State {
	case StateComplete, StateError, StateCancelled, StateResolvedManually:
		return true
	}
	return false
}

// Settled: Over, and no step of a cancelled task is still running (its
// handler was told to stop and has not returned yet).
func (s Snapshot) Settled() bool {
	if !s.Over() {
		return false
	}
	if s.State == StateCancelled {
		for _, st := range s.Steps {
			if st.State == StateInProgress {
				return false
			}
		}
	}
	return true
}

// Succeeded: the task ended the way its workflow meant it to, complete or
// resolved manually by an operator.
func (s Snapshot) Succeeded() bool {
	return s.State == StateComplete || s.State == StateResolvedManually
}

// Done counts the steps whose work is done: complete or resolved manually
// (as the execution context's completion percentage counts them).
func (s Snapshot) Done() int {
	n := 0
	for _, st := range s.Steps {
		if st.State == StateComplete || st.State == StateResolvedManually {
			n++
		}
	}
	return n
}

// BlockedSteps lists the steps that hold the task in error.
func (s Snapshot) BlockedSteps() []Step {
	var out []Step
	for _, st := range s.Steps {
		if st.State == StateError && st.Blocked {
			out = append(out, st)
		}
	}
	return out
}

// Source reads a task as it is now.
type Source interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Notifier is a Source that also says when the task may have changed, so
// that it is read again at once rather than at the next poll. A source
// fed by events implements it; a polling one need not.
type Notifier interface {
	Changed() <-chan struct{}
}
