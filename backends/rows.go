package backends

import (
	"encoding/json"
	"time"
)

// Stores keep times in UTC with microsecond precision (what PostgreSQL's
// timestamptz holds). Callers pass times already truncated to microseconds
// (engine's clock does); a store truncates anything finer.

// Task is one run of a workflow.
type Task struct {
	ID              int64
	Namespace       string
	WorkflowName    string
	WorkflowVersion string
	Context         json.RawMessage // a JSON object
	Initiator       string
	SourceSystem    string
	Reason          string
	Tags            []string // never nil once read from a store
	RequestedAt     time.Time
	// IdempotencyKey is the caller's Idempotency-Key ("" for none) and
	// RequestHash a digest of the request it came with.
	IdempotencyKey string
	RequestHash    string
	State          State
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Step is one node of a task's DAG with its execution bookkeeping.
type Step struct {
	ID       int64
	TaskID   int64
	Name     string
	Position int // index in the workflow's topological order
	Handler  string
	Config   json.RawMessage // nil when the step has none

	Retryable   bool
	RetryLimit  int           // total executions allowed, retries included
	BackoffBase time.Duration // backoff(n) = min(BackoffBase * 2^n, BackoffMax)
	BackoffMax  time.Duration
	Timeout     time.Duration
	Skippable   bool

	State    State
	Attempts int
	// StartedAt is when the latest attempt's handler started (its claim,
	// or StartStep for a claim that waited for a worker); nil while an
	// in_progress step waits for a worker.
	StartedAt *time.Time
	// LastAttemptedAt is when the latest attempt ended (success or failure).
	LastAttemptedAt *time.Time
	// LastFailureAt is when the step last entered error (the created_at of
	// its most recent transition to error).
	LastFailureAt *time.Time
	// BackoffRequestSeconds is the backoff the handler asked for on its last
	// failure; cleared by the next claim.
	BackoffRequestSeconds *int

	Results     json.RawMessage // set on success or manual resolution
	Error       json.RawMessage // StepError as JSON, set on failure
	Processed   bool
	ProcessedAt *time.Time

	// The claim, while the step is in_progress.
	LeaseOwner      string
	LeaseExpiresAt  *time.Time
	LeaseToken      int64 // fencing token; increases with every claim
	CancelRequested bool  // cancel asked while running: cancelled when it returns

	CreatedAt time.Time
	UpdatedAt time.Time
}

// StepError is what a failed step stores in Step.Error.
type StepError struct {
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	Kind      string `json:"kind"`
}

// Kinds of step failure.
const (
	ErrorKindHandler       = "handler_error"  // the handler returned a failure
	ErrorKindPermanent     = "permanent"      // the handler said retrying cannot help
	ErrorKindTimeout       = "timeout"        // the handler ran past the step timeout
	ErrorKindLeaseExpired  = "lease_expired"  // the node running it stopped heartbeating
	ErrorKindPluginCrashed = "plugin_crashed" // the plugin process died during the call
	ErrorKindCancelled     = "cancelled"      // an operator cancelled the step while it ran
	ErrorKindInvalidResult = "invalid_result" // the handler's result cannot be stored (not JSON, NUL, bad UTF-8), or does not match the step's result_schema
	// The step's handler is not registered on the node that claimed it (a
	// plugin not configured there): not retryable, it blocks until an
	// operator retries it.
	ErrorKindHandlerMissing = "handler_missing"
	// The handler emitted a custom event its step does not declare
	// (events = [...] in its HCL), or one whose name no step can declare:
	// a code bug, not retryable. None of the attempt's events is written.
	ErrorKindUndeclaredEvent = "undeclared_event"
	// The handler's custom events broke a limit (how many, how large) or a
	// payload is not storable JSON: not retryable. None of the attempt's
	// events is written.
	ErrorKindInvalidEvent = "invalid_event"
)

// ReasonReleased is the reason of the transition in_progress -> pending of
// a step whose lease expired before its handler started (it waited for a
// worker on a node that stopped or stalled): the claim is undone and its
// attempt not counted.
const ReasonReleased = "released: lease expired before its handler started"

// Edge is a dependency between two steps of one task: Parent provides for Child.
type Edge struct {
	ParentStepID int64
	ChildStepID  int64
}

// Transition is one row of the audit trail. StepID is 0 for a task's own
// transitions. SortKey counts the object's transitions from 1; MostRecent
// marks the latest, whose To is the object's current state.
type Transition struct {
	ID         int64
	TaskID     int64
	StepID     int64
	From       State // "" for the first transition of a task
	To         State
	Reason     string
	Metadata   json.RawMessage // nil when there is none
	SortKey    int
	MostRecent bool
	CreatedAt  time.Time
}

// ReadinessRow is SEMANTICS §3 derived for one step at one instant.
type ReadinessRow struct {
	StepID                int64
	TaskID                int64
	Name                  string
	CurrentState          State
	DependenciesSatisfied bool
	RetryEligible         bool
	ReadyForExecution     bool
	LastFailureAt         *time.Time
	NextRetryAt           *time.Time
	TotalParents          int
	CompletedParents      int
	Attempts              int
	RetryLimit            int
	BackoffRequestSeconds *int
	LastAttemptedAt       *time.Time
}

// PermanentlyBlocked: in error and not retry-eligible (SEMANTICS §3). A step
// waiting out a backoff with attempts left is never blocked.
func (r ReadinessRow) PermanentlyBlocked() bool {
	return r.CurrentState == StateError && !r.RetryEligible
}

// Waiting: in error, still retry-eligible, and not ready yet because its
// backoff has not passed (SEMANTICS §4). It will run again on its own, so
// it keeps its task alive.
func (r ReadinessRow) Waiting() bool {
	return r.CurrentState == StateError && r.RetryEligible && !r.ReadyForExecution
}

// ExecutionStatus values (SEMANTICS §4).
const (
	StatusCancelled              = "cancelled"
	StatusHasReadySteps          = "has_ready_steps"
	StatusProcessing             = "processing"
	StatusBlockedByFailures      = "blocked_by_failures"
	StatusAllComplete            = "all_complete"
	StatusWaitingForDependencies = "waiting_for_dependencies"
)

// RecommendedAction values, in the same order as the statuses.
const (
	ActionNone                = "none"
	ActionExecuteReadySteps   = "execute_ready_steps"
	ActionWaitForCompletion   = "wait_for_completion"
	ActionHandleFailures      = "handle_failures"
	ActionFinalizeTask        = "finalize_task"
	ActionWaitForDependencies = "wait_for_dependencies"
)

// HealthStatus values.
const (
	HealthHealthy    = "healthy"
	HealthRecovering = "recovering"
	HealthBlocked    = "blocked"
	HealthUnknown    = "unknown"
	HealthCancelled  = "cancelled"
)

// ExecutionContext is SEMANTICS §4 for one task at one instant.
type ExecutionContext struct {
	TaskID          int64
	TotalSteps      int
	PendingSteps    int
	InProgressSteps int
	CompletedSteps  int // complete or resolved_manually
	FailedSteps     int // error
	ReadySteps      int
	BlockedSteps    int // permanently blocked
	// WaitingSteps are in error, still retry-eligible and not ready yet:
	// they wait out a backoff and will run again.
	WaitingSteps         int
	ExecutionStatus      string
	RecommendedAction    string
	HealthStatus         string
	CompletionPercentage float64
}

// FinalizeDecision is what finalize did to the task after a step result
// (SEMANTICS §5.5).
type FinalizeDecision string

const (
	// DecisionComplete: every step complete or resolved; the task is complete.
	DecisionComplete FinalizeDecision = "complete"
	// DecisionError: blocked by failures; the task is in error.
	DecisionError FinalizeDecision = "error"
	// DecisionCancelled: after a cancellation nothing is ready, running or
	// waiting on a backoff; the task is cancelled.
	DecisionCancelled FinalizeDecision = "cancelled"
	// DecisionContinue: the task stays in progress.
	DecisionContinue FinalizeDecision = "continue"
	// DecisionNone: the task was already finished; nothing changed.
	DecisionNone FinalizeDecision = "none"
)
