package backends

// Decide is finalize's rule (SEMANTICS §5.5 and §5.7), shared by every
// backend so that they cannot disagree: given the execution context computed
// after a step's write, and whether any step of the task is cancelled, what
// happens to the task.
func Decide(ec ExecutionContext, anyStepCancelled bool) FinalizeDecision {
	switch ec.ExecutionStatus {
	case StatusCancelled:
		return DecisionNone
	case StatusAllComplete:
		return DecisionComplete
	case StatusBlockedByFailures:
		return DecisionError
	case StatusWaitingForDependencies:
		// Nothing is ready or running. Either a step waits out a backoff
		// (it will run, even beside a blocked branch: continue), or no step
		// is in error at all, and then, if a step was cancelled, what is
		// left can never run.
		if anyStepCancelled && ec.WaitingSteps == 0 {
			return DecisionCancelled
		}
	}
	return DecisionContinue
}

// FinalizePath is the sequence of task states that carries a task in state
// from to the state a decision asks for, within SEMANTICS §2 (a pending task
// goes through in_progress to complete; a task in error that may continue
// goes error -> pending -> in_progress). It is empty when the decision asks
// for nothing, or the task is already finished or already there.
func FinalizePath(from State, d FinalizeDecision) []State {
	var to State
	switch d {
	case DecisionComplete:
		to = StateComplete
	case DecisionError:
		to = StateError
	case DecisionCancelled:
		to = StateCancelled
	case DecisionContinue:
		// A task in error that is no longer blocked (an operator resolved or
		// retried its blocked step) runs again.
		if from == StateError {
			return []State{StatePending, StateInProgress}
		}
		return nil
	default:
		return nil
	}
	switch {
	case from == to || from.Finished():
		return nil
	case TaskTransitionAllowed(from, to):
		return []State{to}
	case from == StatePending && TaskTransitionAllowed(StateInProgress, to):
		return []State{StateInProgress, to}
	case from == StateError && d == DecisionComplete:
		// A task in error whose last blocked step was resolved manually.
		return []State{StatePending, StateInProgress, StateComplete}
	}
	return nil
}
