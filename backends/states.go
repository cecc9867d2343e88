package backends

// State is the state of a task or a step. Both machines use the same six
// names (SEMANTICS §2).
type State string

const (
	StatePending          State = "pending"
	StateInProgress       State = "in_progress"
	StateComplete         State = "complete"
	StateError            State = "error"
	StateCancelled        State = "cancelled"
	StateResolvedManually State = "resolved_manually"
)

// taskTransitions and stepTransitions are SEMANTICS §2, verbatim.
var taskTransitions = map[State][]State{
	StatePending:    {StateInProgress, StateCancelled, StateError},
	StateInProgress: {StateComplete, StateError, StateCancelled, StatePending},
	StateError:      {StatePending, StateResolvedManually, StateCancelled},
}

var stepTransitions = map[State][]State{
	StatePending: {StateInProgress, StateCancelled, StateResolvedManually},
	// in_progress -> pending: a claim released before its handler started
	// (the attempt is not counted); Tasker had no claims.
	StateInProgress: {StateComplete, StateError, StateCancelled, StatePending},
	StateError:      {StatePending, StateResolvedManually, StateCancelled},
}

// TaskTransitionAllowed reports whether a task may move from one state to
// another. A transition to the current state is never allowed.
func TaskTransitionAllowed(from, to State) bool { return allowed(taskTransitions, from, to) }

// StepTransitionAllowed reports whether a step may move from one state to
// another. (The extra rule that pending -> in_progress needs every parent
// complete or resolved_manually is the claim's to enforce.)
func StepTransitionAllowed(from, to State) bool { return allowed(stepTransitions, from, to) }

func allowed(m map[State][]State, from, to State) bool {
	for _, s := range m[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Finished reports whether a task or step in this state can never change
// again by itself (complete, cancelled, resolved_manually). A task in error
// is not finished: an operator may retry or resolve it.
func (s State) Finished() bool {
	return s == StateComplete || s == StateCancelled || s == StateResolvedManually
}

// Satisfies reports whether a parent in this state lets its children run.
func (s State) Satisfies() bool { return s == StateComplete || s == StateResolvedManually }

// AllStates lists every state, for tests and validation.
var AllStates = []State{StatePending, StateInProgress, StateComplete, StateError, StateCancelled, StateResolvedManually}
