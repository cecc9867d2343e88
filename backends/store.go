package backends

import (
	"context"
	"encoding/json"
	"time"
)

// Store is everything the engine may ask of a database. Every method is one
// transaction; every method that depends on the time takes it as Now.
//
// Errors: ErrNotFound for an unknown task or step id; *InvalidTransitionError
// (errors.Is ErrInvalidTransition) when the state machine refuses, with
// nothing changed; ErrLeaseLost for a stale fencing token, with nothing
// changed; ErrDuplicate for an idempotency key reused with another request;
// ErrUnavailable (an *UnavailableError) when the database cannot be reached
// or cannot write at the moment, or the call's context deadline passed: the
// call may succeed later, and a write that failed so was not applied unless
// the failure came during its commit. Methods honour ctx's deadline: a
// caller whose deadline passes gets its answer then (context.DeadlineExceeded,
// wrapped in an *UnavailableError), not when the database answers; SQLite's
// writes included (a write the caller gave up before its commit is not
// applied). The exceptions are PostgreSQL's CompleteStep and FailStep, whose
// batch is written for every caller in it (the engine calls them without a
// deadline). Anything else is the database's own failure, wrapped with
// context.
type Store interface {
	// CreateTask inserts the task, its steps and edges and the task's first
	// transition (-> pending) in one transaction. Bypassed steps start as
	// resolved_manually with results {"bypassed": true}, written as
	// pending -> resolved_manually transitions. When p.IdempotencyKey names an
	// existing task, it is returned with created=false if its RequestHash
	// equals p.RequestHash, and ErrDuplicate is returned otherwise.
	// If every step is bypassed the task is finalized at once
	// (pending -> in_progress -> complete).
	CreateTask(ctx context.Context, p *CreateTaskParams) (task *Task, created bool, err error)

	GetTask(ctx context.Context, taskID int64) (*Task, error)
	GetStep(ctx context.Context, stepID int64) (*Step, error)
	// ListSteps returns the task's steps ordered by Position. ErrNotFound if
	// the task does not exist.
	ListSteps(ctx context.Context, taskID int64) ([]*Step, error)
	// ListEdges returns the task's edges ordered by (child, parent) step id.
	ListEdges(ctx context.Context, taskID int64) ([]Edge, error)
	// ListTransitions returns the audit trail of a task and its steps in the
	// order written (by id).
	ListTransitions(ctx context.Context, taskID int64) ([]*Transition, error)

	// StepReadiness computes SEMANTICS §3 for every step of a task in the
	// backend's own SQL, one statement; rows ordered by Position. ErrNotFound
	// if the task does not exist.
	StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]ReadinessRow, error)
	// StepReadinessBatch is StepReadiness for many tasks in one statement,
	// ordered by task id then Position; unknown ids yield no rows.
	StepReadinessBatch(ctx context.Context, taskIDs []int64, now time.Time) ([]ReadinessRow, error)
	// TaskExecutionContext computes SEMANTICS §4 in SQL, one statement.
	// ErrNotFound if the task does not exist.
	TaskExecutionContext(ctx context.Context, taskID int64, now time.Time) (*ExecutionContext, error)
	// TaskExecutionContexts is the batch form: one row per known task, ordered
	// by task id; an unknown id yields no row; a task without steps yields
	// zero counts.
	TaskExecutionContexts(ctx context.Context, taskIDs []int64, now time.Time) ([]ExecutionContext, error)

	// ClaimSteps atomically claims up to p.Limit steps that are ready for
	// execution (the same rule as StepReadiness) and whose task is pending or
	// in_progress, in claim order:
	//
	//  1. the head of each idle task (one with no step in_progress) when it
	//     is ready, oldest task (lowest id) first. A task's head is its
	//     waiting step of lowest Position: pending, or error, with every
	//     parent complete or resolved;
	//  2. the ready head of each other task, oldest first;
	//  3. the other ready steps, oldest task first, then Position.
	//
	// So a task with nothing running goes before every task that has a
	// step running, however many ready steps those have: a task created
	// while a wide fan-out runs gets the first place of the next claim,
	// whatever p.Limit, unless p.Limit older idle tasks have a ready head
	// too. No task starves: once nothing of it runs, only older idle tasks
	// go before it. Among idle tasks the order is their age, so a task
	// waits for the older tasks' ready work, one step of each per claim,
	// never for the width of a fan-out.
	//
	// p.Limits caps, per workflow, the steps in_progress of its tasks: a
	// claim never leaves more than Limits["namespace/name"] steps of that
	// workflow's tasks (all versions) in_progress, counting every in_progress
	// step (those that wait for a worker and those whose lease expired but
	// was not yet recovered included), however many nodes claim at once with
	// the same limits. Steps over a cap stay as they are and take no place:
	// the claim fills its places with the next steps in claim order.
	//
	// Each claimed step moves to in_progress (error -> pending ->
	// in_progress for a retry), Attempts+1, StartedAt = Now,
	// BackoffRequestSeconds cleared, CancelRequested cleared, a lease for
	// p.Owner until Now+p.LeaseDuration and a new LeaseToken. Its task moves
	// pending -> in_progress on its first claim. A step whose lease is live
	// is never returned.
	//
	// The last p.Queued of the p.Limit places (in that order) are for steps
	// that wait for a worker: a step claimed into one has StartedAt nil,
	// meaning its handler has not started, until StartStep.
	ClaimSteps(ctx context.Context, p *ClaimStepsParams) ([]*Claim, error)

	// StartStep says that the handler of a step this owner claimed is about
	// to start, fenced by p.LeaseToken (ErrLeaseLost, nothing changed, when
	// the step is no longer in_progress under that owner and token): the
	// lease is extended to Now+p.LeaseDuration and, unless a cancel was
	// requested meanwhile (answered true: the handler must not start),
	// StartedAt = Now. A worker calls it before a handler whose claim waited
	// for a worker, or whose lease it cannot vouch for by its own clock.
	StartStep(ctx context.Context, p *StartStepParams) (cancelRequested bool, err error)

	// ExtendLeases heartbeats the leases p.Owner holds: for each lease whose
	// token is still current, the expiry becomes Now+p.LeaseDuration. The
	// answer says, per step, whether the lease is lost and whether a cancel
	// was requested (the handler should be stopped).
	ExtendLeases(ctx context.Context, p *ExtendLeasesParams) ([]LeaseStatus, error)

	// CompleteStep records a success and finalizes the task, in one
	// transaction, fenced by p.LeaseToken (ErrLeaseLost if stale). The step
	// becomes complete (or cancelled when a cancel was requested meanwhile),
	// with LastAttemptedAt = Now, Processed, ProcessedAt, Results, and its
	// lease released.
	CompleteStep(ctx context.Context, p *CompleteStepParams) (*RecordResult, error)
	// FailStep records a failure and finalizes, fenced likewise. The step
	// becomes error (or cancelled, as above), with LastAttemptedAt =
	// LastFailureAt = Now, Error stored, BackoffRequestSeconds =
	// p.BackoffSeconds, and Retryable = false when p.Error.Retryable is false
	// (a permanent failure blocks at once).
	FailStep(ctx context.Context, p *FailStepParams) (*RecordResult, error)
	// RecoverExpiredLeases fails (kind lease_expired, retryable) up to
	// p.Limit in_progress steps whose lease expired at or before Now, each
	// with its finalize, as if their worker had reported the failure. A step
	// whose cancel was requested becomes cancelled instead. A step whose
	// handler never started (StartedAt nil: it waited for a worker) is
	// released instead: in_progress -> pending (reason "released"),
	// Attempts-1, its attempt not counted.
	RecoverExpiredLeases(ctx context.Context, p *RecoverParams) ([]*RecordResult, error)
	// NextWakeup is the earliest instant after which ClaimSteps or
	// RecoverExpiredLeases may find work that they cannot find at now: the
	// next next_retry_at of a waiting step or lease expiry of a running one,
	// among tasks that are pending or in_progress. nil when there is none.
	NextWakeup(ctx context.Context, now time.Time) (*time.Time, error)

	// CancelTask: task -> cancelled; its pending and error steps ->
	// cancelled; its in_progress steps get CancelRequested (they become
	// cancelled when their worker reports). Refused for a finished task.
	CancelTask(ctx context.Context, p *CancelTaskParams) (*Change, error)
	// CancelStep cancels one step and every descendant that is pending or in
	// error; an in_progress step gets CancelRequested. Then finalizes.
	CancelStep(ctx context.Context, p *CancelStepParams) (*Change, error)
	// ResolveStep marks a pending or error step resolved_manually with
	// p.Results ({} when nil), then finalizes (its children may now run).
	ResolveStep(ctx context.Context, p *ResolveStepParams) (*Change, error)
	// ResolveTask marks a task in error resolved_manually.
	ResolveTask(ctx context.Context, p *ResolveTaskParams) (*Change, error)
	// RetryStep grants a step in error one more attempt: RetryLimit =
	// max(RetryLimit, Attempts+1), Retryable = true, BackoffRequestSeconds
	// cleared, error -> pending; a task in error goes error -> pending ->
	// in_progress.
	RetryStep(ctx context.Context, p *RetryStepParams) (*Change, error)
	// RetryTask does RetryStep for every step of a task in error whose state
	// is error.
	RetryTask(ctx context.Context, p *RetryTaskParams) (*Change, error)

	// ListTasks returns the tasks p selects, newest first (id descending),
	// at most p.Limit of them (all when 0). Every non-empty filter must hold.
	ListTasks(ctx context.Context, p *ListTasksParams) ([]*Task, error)
	// TaskNamespaces returns every namespace that holds a task, sorted,
	// whether or not a loaded workflow still names it (the API filters
	// listings by namespace over these).
	TaskNamespaces(ctx context.Context) ([]string, error)
	// UpdateTask changes a task's reason and/or tags (the fields callers may
	// edit) and its UpdatedAt; nil fields stay as they are. ErrNotFound for
	// an unknown task.
	UpdateTask(ctx context.Context, p *UpdateTaskParams) (*Task, error)
	// Stats counts tasks and steps by state, and classifies the steps in
	// error at p.Now, for health reports. One consistent snapshot.
	Stats(ctx context.Context, now time.Time) (*Stats, error)

	// Setting returns the value stored under name, or ErrNotFound.
	Setting(ctx context.Context, name string) (string, error)
	// PutSettingIfAbsent stores value under name unless the name is taken,
	// atomically (nodes starting together agree on one value). It returns
	// the value stored under name afterwards and whether this call stored it.
	PutSettingIfAbsent(ctx context.Context, name, value string, now time.Time) (stored string, created bool, err error)

	// KeyStore: the API keys of `taskerd keys` (apikeys.go).
	KeyStore
	// EventStore: the event log and its readers' cursors (events.go).
	// Every write method above writes its events (events.go's builders) in
	// its own transaction and, after commit, hands them to the EventSink
	// of its ctx, if any.
	EventStore
	// NodeStore: the node registry, leadership and retention (nodes.go).
	NodeStore
	// ScheduleStore: the state and firings of schedules (schedules.go).
	ScheduleStore
	// BatchReader: the one-task reads for many tasks at once (batch.go).
	BatchReader

	Close() error
}

// ListTasksParams selects tasks. Zero values select everything.
type ListTasksParams struct {
	States []State
	// Namespaces: the task's namespace is one of these.
	Namespaces   []string
	WorkflowName string
	// CreatedAfter and CreatedBefore bound CreatedAt (both exclusive).
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	// Tag: the task carries this tag.
	Tag string
	// BeforeID is the cursor: only tasks with a smaller id (0 for none).
	BeforeID int64
	Limit    int
}

// UpdateTaskParams edits the caller-owned fields of a task.
type UpdateTaskParams struct {
	TaskID int64
	Reason *string
	Tags   []string // nil leaves the tags unchanged; empty clears them
	Now    time.Time
}

// Stats is a snapshot of the database for health reports.
type Stats struct {
	// Tasks and Steps count rows by state; every state has an entry.
	Tasks map[State]int
	Steps map[State]int
	// Of the steps in error: RetryableErrors will run again on their own
	// (retryable and attempts < retry_limit), of which InBackoff are still
	// waiting for their backoff at Now; Exhausted will not (SEMANTICS §3
	// rule 4 / 5), and block their tasks.
	RetryableErrors int
	InBackoff       int
	Exhausted       int
	// ReadySteps are ready for execution at Now in tasks that may run
	// (what a claim would find with no limit).
	ReadySteps int
}

// CreateTaskParams is one task to insert.
type CreateTaskParams struct {
	Namespace       string
	WorkflowName    string
	WorkflowVersion string
	Context         json.RawMessage
	Initiator       string
	SourceSystem    string
	Reason          string
	Tags            []string
	IdempotencyKey  string
	RequestHash     string
	// Steps in topological order; Position is the index in this slice.
	Steps []NewStep
	Now   time.Time
}

// NewStep is one step of a task to insert.
type NewStep struct {
	Name        string
	Handler     string
	Config      json.RawMessage
	Retryable   bool
	RetryLimit  int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	Timeout     time.Duration
	Skippable   bool
	// Bypass: start as resolved_manually with results {"bypassed": true}.
	Bypass bool
	// Parents name earlier steps of the same task.
	Parents []string
}

type ClaimStepsParams struct {
	Owner string
	Limit int
	// Limits maps "namespace/name" to the most steps of that workflow's
	// tasks that may be in_progress at once (definition's
	// Catalog.ConcurrencyLimits); a workflow not in it has no cap, and one
	// whose value is below 1 gets no step claimed.
	Limits map[string]int
	// Queued: of the Limit places, how many (the last, in claim order) are
	// for steps that wait for a worker; 0: every claimed step starts now.
	Queued        int
	LeaseDuration time.Duration
	Now           time.Time
}

// StartStepParams: the handler of a claimed step starts.
type StartStepParams struct {
	StepID        int64
	LeaseToken    int64
	Owner         string
	LeaseDuration time.Duration
	Now           time.Time
}

// Claim is a step handed to a worker, with what its handler needs.
type Claim struct {
	Step *Step // as written by the claim: in_progress, leased
	Task *Task
	// ParentResults are the results of the step's parents, by step name.
	ParentResults map[string]json.RawMessage
	// Retry: the claim moved the step error -> pending -> in_progress.
	Retry bool
	// TaskStarted: the claim moved the task pending -> in_progress.
	TaskStarted bool
	// ReadyAt is when the step became ready for execution: the latest of
	// its own last state change before this claim (created, failed, retried
	// by an operator), its parents' last changes (their completion) and the
	// end of its backoff (next_retry_at). Claim time minus ReadyAt is the
	// step's wait for a worker.
	ReadyAt time.Time
}

type Lease struct {
	StepID int64
	Token  int64
}

type ExtendLeasesParams struct {
	Owner         string
	Leases        []Lease
	LeaseDuration time.Duration
	Now           time.Time
}

type LeaseStatus struct {
	StepID          int64
	Lost            bool
	CancelRequested bool
}

type CompleteStepParams struct {
	StepID     int64
	LeaseToken int64
	Results    json.RawMessage // {} when nil
	// Events the handler emitted, written before step.completed.
	Events []CustomEvent
	Now    time.Time
}

type FailStepParams struct {
	StepID     int64
	LeaseToken int64
	Error      StepError
	// BackoffSeconds is the backoff the handler asked for, or nil.
	BackoffSeconds *int
	// Events the handler emitted, written before step.failed.
	Events []CustomEvent
	Now    time.Time
}

type RecoverParams struct {
	Limit int
	Now   time.Time
}

// RecordResult is what a step result (or a lease recovery) wrote.
type RecordResult struct {
	Step     *Step
	Task     *Task
	Context  ExecutionContext // computed after the step's write, before finalize's
	Decision FinalizeDecision
	// TaskBefore is the task's state before this write (Task.State is
	// after it): the task events come from the difference.
	TaskBefore State
	// ErrorSteps names the task's steps in error, in Position order, when
	// this write moved the task to error (nil otherwise).
	ErrorSteps []string
}

type CancelTaskParams struct {
	TaskID int64
	Reason string
	Now    time.Time
}

type CancelStepParams struct {
	StepID int64
	Reason string
	Now    time.Time
}

type ResolveStepParams struct {
	StepID  int64
	Results json.RawMessage
	Reason  string
	Now     time.Time
}

type ResolveTaskParams struct {
	TaskID int64
	Reason string
	Now    time.Time
}

type RetryStepParams struct {
	StepID int64
	Reason string
	Now    time.Time
}

type RetryTaskParams struct {
	TaskID int64
	Reason string
	Now    time.Time
}

// Change is what an operator action wrote.
type Change struct {
	Task *Task
	// Steps whose state changed, in Position order.
	Steps []*Step
	// CancelRequested lists in_progress steps whose handlers should stop.
	CancelRequested []int64
	// Decision is finalize's, for actions that finalize; DecisionNone else.
	Decision FinalizeDecision
	// ExecutionStatus is the task's execution status finalize decided on
	// ("" when the action did not finalize).
	ExecutionStatus string
	// TaskBefore is the task's state before the action.
	TaskBefore State
	// ErrorSteps names the task's steps in error, in Position order, when
	// the action moved the task to error (nil otherwise).
	ErrorSteps []string
}
