package engine

import (
	"math"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// This file is the pure-Go reference of SEMANTICS §3 (step readiness) and §4
// (task execution context). Backends compute both in their own SQL; the
// differential test in backendtest checks them against these functions on
// random task states. Keep the two in step with docs/concepts.md, rule by
// rule.

// Backoff is backoff(n) = min(base * 2^n, max), without overflow.
func Backoff(base, max time.Duration, n int) time.Duration { return backends.Backoff(base, max, n) }

// ReferenceReadiness derives a readiness row for each step (in the order
// given) from the task's steps, its edges and the time.
func ReferenceReadiness(steps []*backends.Step, edges []backends.Edge, now time.Time) []backends.ReadinessRow {
	byID := make(map[int64]*backends.Step, len(steps))
	for _, s := range steps {
		byID[s.ID] = s
	}
	parents := map[int64][]*backends.Step{}
	for _, e := range edges {
		if p, ok := byID[e.ParentStepID]; ok {
			parents[e.ChildStepID] = append(parents[e.ChildStepID], p)
		}
	}
	rows := make([]backends.ReadinessRow, 0, len(steps))
	for _, s := range steps {
		r := backends.ReadinessRow{
			StepID:                s.ID,
			TaskID:                s.TaskID,
			Name:                  s.Name,
			CurrentState:          s.State,
			LastFailureAt:         s.LastFailureAt,
			TotalParents:          len(parents[s.ID]),
			Attempts:              s.Attempts,
			RetryLimit:            s.RetryLimit,
			BackoffRequestSeconds: s.BackoffRequestSeconds,
			LastAttemptedAt:       s.LastAttemptedAt,
		}
		for _, p := range parents[s.ID] {
			if p.State.Satisfies() {
				r.CompletedParents++
			}
		}
		// Rule 2.
		r.DependenciesSatisfied = r.CompletedParents == r.TotalParents
		// Rules 3 and 4.
		r.RetryEligible = s.Attempts < s.RetryLimit && (s.Retryable || s.Attempts == 0)

		// Rules 6 and 7: the backoffs that apply, and the later of the two.
		var next *time.Time
		later := func(t time.Time) {
			if next == nil || t.After(*next) {
				next = &t
			}
		}
		if s.BackoffRequestSeconds != nil && s.LastAttemptedAt != nil {
			later(s.LastAttemptedAt.Add(time.Duration(*s.BackoffRequestSeconds) * time.Second))
		}
		if s.State == backends.StateError && s.LastFailureAt != nil {
			later(s.LastFailureAt.Add(Backoff(s.BackoffBase, s.BackoffMax, s.Attempts)))
		}
		r.NextRetryAt = next
		backoffExpired := next == nil || !next.After(now)

		// Rule 5: a live lease is one that expires after now.
		leased := s.LeaseExpiresAt != nil && s.LeaseExpiresAt.After(now)

		// Rule 1, and all together.
		r.ReadyForExecution = (s.State == backends.StatePending || s.State == backends.StateError) &&
			r.DependenciesSatisfied && r.RetryEligible && !leased && backoffExpired
		rows = append(rows, r)
	}
	return rows
}

// ReferenceExecutionContext summarises a task's readiness rows. taskState
// is the task's own state: a cancelled task's context says so, whatever its
// steps.
func ReferenceExecutionContext(taskID int64, taskState backends.State, rows []backends.ReadinessRow) backends.ExecutionContext {
	ec := backends.ExecutionContext{TaskID: taskID, TotalSteps: len(rows)}
	for _, r := range rows {
		switch r.CurrentState {
		case backends.StatePending:
			ec.PendingSteps++
		case backends.StateInProgress:
			ec.InProgressSteps++
		case backends.StateComplete, backends.StateResolvedManually:
			ec.CompletedSteps++
		case backends.StateError:
			ec.FailedSteps++
		}
		if r.ReadyForExecution {
			ec.ReadySteps++
		}
		if r.PermanentlyBlocked() {
			ec.BlockedSteps++
		}
		if r.Waiting() {
			ec.WaitingSteps++
		}
	}
	cancelled := taskState == backends.StateCancelled
	switch {
	case cancelled:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusCancelled, backends.ActionNone
	case ec.ReadySteps > 0:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusHasReadySteps, backends.ActionExecuteReadySteps
	case ec.InProgressSteps > 0:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusProcessing, backends.ActionWaitForCompletion
	case ec.WaitingSteps > 0:
		// A step that will still run keeps the task alive, even beside a
		// blocked branch: the task goes to error only when nothing can run.
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusWaitingForDependencies, backends.ActionWaitForDependencies
	case ec.BlockedSteps > 0:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusBlockedByFailures, backends.ActionHandleFailures
	case ec.CompletedSteps == ec.TotalSteps && ec.TotalSteps > 0:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusAllComplete, backends.ActionFinalizeTask
	default:
		ec.ExecutionStatus, ec.RecommendedAction = backends.StatusWaitingForDependencies, backends.ActionWaitForDependencies
	}
	switch {
	case cancelled:
		ec.HealthStatus = backends.HealthCancelled
	case ec.FailedSteps == 0:
		ec.HealthStatus = backends.HealthHealthy
	case ec.ReadySteps > 0:
		ec.HealthStatus = backends.HealthRecovering
	case ec.BlockedSteps > 0:
		ec.HealthStatus = backends.HealthBlocked
	case ec.BlockedSteps == 0:
		ec.HealthStatus = backends.HealthRecovering
	default:
		ec.HealthStatus = backends.HealthUnknown
	}
	if ec.TotalSteps > 0 {
		ec.CompletionPercentage = math.Round(float64(ec.CompletedSteps)*10000/float64(ec.TotalSteps)) / 100
	}
	return ec
}
