package backends

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// This file is the event log (an outbox): every state change of a task or a
// step is written as events in the same transaction as the change, by the
// store, so a crash can neither lose nor duplicate one. The events of a
// write are built here, from what the write did, by pure functions that
// every store calls: the stores cannot disagree on what happened.
//
// Each event gets Seq, a per-database sequence that increases with commit
// order and has no gaps: a reader that has seen Seq n has seen every event
// up to n, and the next it sees is n+1 (SQLite writes one transaction at a
// time; PostgreSQL assigns the numbers under a lock held to commit).

// EventType names an event (docs/events.md has the catalogue).
type EventType string

const (
	EventTaskInitializeRequested EventType = "task.initialize_requested"
	EventTaskStartRequested      EventType = "task.start_requested"
	EventTaskCompleted           EventType = "task.completed"
	EventTaskFailed              EventType = "task.failed"
	EventTaskCancelled           EventType = "task.cancelled"
	EventTaskResolvedManually    EventType = "task.resolved_manually"
	EventTaskRetryRequested      EventType = "task.retry_requested"

	EventStepExecutionRequested EventType = "step.execution_requested"
	EventStepCompleted          EventType = "step.completed"
	EventStepFailed             EventType = "step.failed"
	EventStepBackoff            EventType = "step.backoff"
	EventStepRetryRequested     EventType = "step.retry_requested"
	EventStepCancelled          EventType = "step.cancelled"
	EventStepResolvedManually   EventType = "step.resolved_manually"
	EventStepLeaseExpired       EventType = "step.lease_expired"

	EventViableStepsDiscovered EventType = "workflow.viable_steps_discovered"
	EventTaskFinalized         EventType = "workflow.task_finalized"
)

// Backoff kinds of a step.backoff event.
const (
	BackoffExponential = "exponential" // the step's retry policy
	BackoffRequested   = "requested"   // the handler asked for it (and it is the later)
)

// Event is one thing that happened to a task or a step. Its JSON form is
// the stable shape users see (API, webhooks, the bus); docs/events.md
// documents it field by field. Which fields are set depends on Type:
//
//   - every event: Seq (once stored), Type, Time (the write's instant),
//     TaskID, Namespace, Workflow ("namespace/name").
//   - step.*: StepID, StepName, Handler; Attempt (the attempt concerned)
//     and RetryLimit where they mean something.
//   - step.execution_requested: ReadyAt.
//   - step.completed: DurationMs (claim to result), Results.
//   - step.failed, step.lease_expired: Error, Attempt, Retryable (whether
//     the engine will run the step again on its own); NextRetryAt when it
//     will, Blocked when it will not (the step blocks its task until an
//     operator acts).
//   - step.backoff: BackoffSeconds (until the retry may run), BackoffKind,
//     Attempt (the attempt that failed), RetryLimit; NextRetryAt.
//   - step.resolved_manually: Results.
//   - task.failed: StepNames (the steps in error).
//   - workflow.viable_steps_discovered: StepNames (claimed for execution).
//   - workflow.task_finalized: ExecutionStatus, Decision.
//   - a custom event (a handler's, see CustomEvent): StepID, StepName,
//     Handler, Attempt, Payload.
type Event struct {
	Seq       int64     `json:"seq,omitempty"`
	Type      EventType `json:"type"`
	Time      time.Time `json:"timestamp"`
	TaskID    int64     `json:"task_id"`
	Namespace string    `json:"namespace,omitempty"`
	Workflow  string    `json:"workflow,omitempty"`
	StepID    int64     `json:"step_id,omitempty"`
	StepName  string    `json:"step_name,omitempty"`
	// Handler is the step's PLUGIN.HANDLER, on step events.
	Handler string `json:"handler,omitempty"`

	Attempt    int   `json:"attempt,omitempty"`
	RetryLimit int   `json:"retry_limit,omitempty"`
	DurationMs int64 `json:"duration_ms,omitempty"`

	Error     *StepError `json:"error,omitempty"`
	Retryable bool       `json:"retryable,omitempty"`
	Blocked   bool       `json:"blocked,omitempty"`

	BackoffSeconds float64    `json:"backoff_seconds,omitempty"`
	BackoffKind    string     `json:"backoff_kind,omitempty"`
	NextRetryAt    *time.Time `json:"next_retry_at,omitempty"`

	Results json.RawMessage `json:"results,omitempty"`
	// Payload is a custom event's JSON value.
	Payload json.RawMessage `json:"payload,omitempty"`

	// ReadyAt, on step.execution_requested: when the step became ready
	// (Claim.ReadyAt); Time minus ReadyAt is its wait for a worker.
	ReadyAt *time.Time `json:"ready_at,omitempty"`

	ExecutionStatus string           `json:"execution_status,omitempty"`
	Decision        FinalizeDecision `json:"decision,omitempty"`

	StepNames []string `json:"step_names,omitempty"`
}

// CustomEvent is an event a step handler emitted during an attempt
// (`events = [...]` in the step's HCL declares the names it may emit). It
// is written with the attempt's result, before the step's own event.
type CustomEvent struct {
	Name    string
	Payload json.RawMessage // a JSON value; null when nil
}

// Reserved event namespaces: a custom event's name may not start with one.
var ReservedEventPrefixes = []string{"task.", "step.", "workflow."}

// MatchEventType says whether t matches one of patterns: an exact name, a
// prefix ending in ".*" ("task.*" matches every task event), or "*". No
// patterns match everything.
func MatchEventType(patterns []string, t EventType) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		switch {
		case p == "*" || p == string(t):
			return true
		case strings.HasSuffix(p, ".*") && strings.HasPrefix(string(t), strings.TrimSuffix(p, "*")):
			return true
		}
	}
	return false
}

// EventQuery selects events from the log. Zero values select everything.
type EventQuery struct {
	// After: only events with Seq > After.
	After int64
	// TaskID: only this task's events (0 for every task).
	TaskID int64
	// Namespaces: only events of tasks in one of these.
	Namespaces []string
	// Limit caps the answer (DefaultEventLimit when 0).
	Limit int
}

// DefaultEventLimit is EventQuery.Limit's default.
const DefaultEventLimit = 1000

// EventCursor is a durable reader of the event log: a webhook, the NATS
// publisher. Seq is the last event it has handled. At most one node holds
// its lease at a time; the holder delivers, the others wait.
type EventCursor struct {
	Name       string
	Seq        int64
	Owner      string     // the lease holder ("" for none)
	LeaseUntil *time.Time // nil for none
	UpdatedAt  time.Time
}

// DeadLetter is an event a cursor gave up delivering after its attempts.
type DeadLetter struct {
	Cursor    string
	Seq       int64
	Attempts  int
	LastError string
	CreatedAt time.Time
}

// AcquireCursorParams takes or renews a cursor's lease.
type AcquireCursorParams struct {
	Name  string
	Owner string
	// Start is the cursor's Seq when this call creates it (a new webhook
	// starts at the log's end, say, rather than replaying history).
	Start int64
	Lease time.Duration
	Now   time.Time
}

// EventStore reads the event log and keeps its readers' cursors.
type EventStore interface {
	// ListEvents returns the events q selects in Seq order.
	ListEvents(ctx context.Context, q *EventQuery) ([]*Event, error)
	// LastEventSeq is the highest Seq written, 0 when the log is empty.
	LastEventSeq(ctx context.Context) (int64, error)

	// AcquireCursor creates the named cursor (at p.Start) if it does not
	// exist, and gives p.Owner its lease until p.Now+p.Lease unless
	// another owner holds a lease that has not expired at p.Now: then ok is
	// false and the cursor is returned as it is.
	AcquireCursor(ctx context.Context, p *AcquireCursorParams) (c *EventCursor, ok bool, err error)
	// AdvanceCursor moves the cursor to seq, fenced by its lease:
	// ErrLeaseLost, nothing changed, unless owner holds a lease that has not
	// expired at now. ErrNotFound for an unknown cursor.
	AdvanceCursor(ctx context.Context, name, owner string, seq int64, now time.Time) error
	// ResetCursor moves the cursor to seq whoever holds it (an operator's
	// replay; it may move back), creating it if needed, and ends its lease.
	ResetCursor(ctx context.Context, name string, seq int64, now time.Time) error
	// ListCursors returns every cursor, by name.
	ListCursors(ctx context.Context) ([]*EventCursor, error)
	// AddDeadLetter records an event a cursor gave up on.
	AddDeadLetter(ctx context.Context, d *DeadLetter) error
	// ListDeadLetters returns a cursor's dead letters by Seq, at most limit
	// (all when 0).
	ListDeadLetters(ctx context.Context, cursor string, limit int) ([]*DeadLetter, error)
}

// eventSinkKey carries an EventSink in a context.
type eventSinkKey struct{}

// EventSink receives the events a store call wrote, with their Seq, after
// its transaction committed.
type EventSink func([]*Event)

// WithEventSink returns a context under which a store's writes hand the
// events they wrote to sink, once committed, in Seq order (a call that
// wrote none does not call it). It is how a node learns the events of its
// own writes without reading them back.
func WithEventSink(ctx context.Context, sink EventSink) context.Context {
	return context.WithValue(ctx, eventSinkKey{}, sink)
}

// EventSinkFrom returns the sink of ctx, or nil.
func EventSinkFrom(ctx context.Context) EventSink {
	s, _ := ctx.Value(eventSinkKey{}).(EventSink)
	return s
}

// Backoff is backoff(n) = min(base * 2^n, max), without overflow
// (SEMANTICS' exponential backoff; the stores' readiness SQL computes the
// same).
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n; i++ {
		if d >= max || d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// --- The events of each write. Stores call these inside the write's
// transaction, with what it wrote, and store the result. ---

// stampTask sets the task's namespace and workflow on its events.
func stampTask(events []*Event, t *Task) []*Event {
	if t == nil {
		return events
	}
	wf := t.Namespace + "/" + t.WorkflowName
	for _, ev := range events {
		if ev.TaskID == t.ID {
			ev.Namespace, ev.Workflow = t.Namespace, wf
		}
	}
	return events
}

func stepEvent(now time.Time, s *Step) *Event {
	return &Event{Time: now, TaskID: s.TaskID, StepID: s.ID, StepName: s.Name, Handler: s.Handler, Attempt: s.Attempts, RetryLimit: s.RetryLimit}
}

// CreatedEvents are a new task's: task.initialize_requested, then
// task.completed when every step was bypassed and the task finished at once.
func CreatedEvents(t *Task, now time.Time) []*Event {
	events := []*Event{{Type: EventTaskInitializeRequested, Time: now, TaskID: t.ID}}
	if t.State == StateComplete {
		events = append(events, &Event{Type: EventTaskCompleted, Time: now, TaskID: t.ID})
	}
	return stampTask(events, t)
}

// ClaimEvents are a claim's, grouped by task in claim order: per task,
// task.start_requested when the claim started it, then
// workflow.viable_steps_discovered, then per step step.retry_requested (a
// retry) and step.execution_requested.
func ClaimEvents(claims []*Claim, now time.Time) []*Event {
	var order []int64
	byTask := map[int64][]*Claim{}
	for _, c := range claims {
		if _, ok := byTask[c.Step.TaskID]; !ok {
			order = append(order, c.Step.TaskID)
		}
		byTask[c.Step.TaskID] = append(byTask[c.Step.TaskID], c)
	}
	var events []*Event
	for _, taskID := range order {
		cs := byTask[taskID]
		var mine []*Event
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = c.Step.Name
			if c.TaskStarted {
				mine = append(mine, &Event{Type: EventTaskStartRequested, Time: now, TaskID: taskID})
			}
		}
		mine = append(mine, &Event{Type: EventViableStepsDiscovered, Time: now, TaskID: taskID, StepNames: names})
		for _, c := range cs {
			if c.Retry {
				ev := stepEvent(now, c.Step)
				ev.Type = EventStepRetryRequested
				mine = append(mine, ev)
			}
			ev := stepEvent(now, c.Step)
			ev.Type = EventStepExecutionRequested
			if !c.ReadyAt.IsZero() {
				ready := c.ReadyAt
				ev.ReadyAt = &ready
			}
			mine = append(mine, ev)
		}
		events = append(events, stampTask(mine, cs[0].Task)...)
	}
	return events
}

// RecordEvents are a step result's or a lease recovery's: the handler's
// custom events, the step's own (failedType is step.failed, or
// step.lease_expired for a recovery; a failure the engine will retry is
// followed by step.backoff), then workflow.task_finalized, then the task's
// when finalize moved it (RecordResult.TaskBefore says from where).
// A released step (a recovery that put it back to pending) has none.
func RecordEvents(rr *RecordResult, custom []CustomEvent, now time.Time, failedType EventType) []*Event {
	s := rr.Step
	if s.State == StatePending {
		return nil
	}
	var events []*Event
	for _, c := range custom {
		ev := stepEvent(now, s)
		ev.Type, ev.Payload = EventType(c.Name), c.Payload
		if len(ev.Payload) == 0 {
			ev.Payload = json.RawMessage("null")
		}
		events = append(events, ev)
	}
	ev := stepEvent(now, s)
	switch s.State {
	case StateComplete:
		ev.Type = EventStepCompleted
		ev.Results = s.Results
		if s.StartedAt != nil && s.LastAttemptedAt != nil {
			ev.DurationMs = s.LastAttemptedAt.Sub(*s.StartedAt).Milliseconds()
		}
		events = append(events, ev)
	case StateError:
		ev.Type = failedType
		if len(s.Error) > 0 {
			var se StepError
			if json.Unmarshal(s.Error, &se) == nil {
				ev.Error = &se
			}
		}
		ev.Retryable = s.Retryable && s.Attempts < s.RetryLimit
		ev.Blocked = !ev.Retryable
		events = append(events, ev)
		if ev.Retryable {
			if b := backoffEvent(now, s); b != nil {
				ev.NextRetryAt = b.NextRetryAt
				events = append(events, b)
			}
		}
	case StateCancelled:
		ev.Type = EventStepCancelled
		events = append(events, ev)
	}
	events = append(events, &Event{Type: EventTaskFinalized, Time: now, TaskID: s.TaskID, ExecutionStatus: rr.Context.ExecutionStatus, Decision: rr.Decision})
	events = append(events, taskMoveEvents(now, rr.Task, rr.TaskBefore, rr.ErrorSteps, false)...)
	return stampTask(events, rr.Task)
}

// backoffEvent says how long a failed step waits before its retry may run:
// the later of its exponential backoff and the one its handler asked for
// (SEMANTICS §3 rules 6 and 7).
func backoffEvent(now time.Time, s *Step) *Event {
	var next *time.Time
	kind := ""
	if s.LastFailureAt != nil {
		t := s.LastFailureAt.Add(Backoff(s.BackoffBase, s.BackoffMax, s.Attempts))
		next, kind = &t, BackoffExponential
	}
	if s.BackoffRequestSeconds != nil && s.LastAttemptedAt != nil {
		t := s.LastAttemptedAt.Add(time.Duration(*s.BackoffRequestSeconds) * time.Second)
		if next == nil || t.After(*next) {
			next, kind = &t, BackoffRequested
		}
	}
	if next == nil {
		return nil
	}
	ev := stepEvent(now, s)
	ev.Type, ev.BackoffSeconds, ev.BackoffKind, ev.NextRetryAt = EventStepBackoff, max(next.Sub(now), 0).Seconds(), kind, next
	return ev
}

// taskMoveEvents are the task events of a write that moved task t from
// state before to t.State: none when it did not move.
func taskMoveEvents(now time.Time, t *Task, before State, errorSteps []string, retried bool) []*Event {
	if t == nil || t.State == before {
		return nil
	}
	ev := &Event{Time: now, TaskID: t.ID}
	switch t.State {
	case StateComplete:
		ev.Type = EventTaskCompleted
	case StateCancelled:
		ev.Type = EventTaskCancelled
	case StateResolvedManually:
		ev.Type = EventTaskResolvedManually
	case StateError:
		ev.Type, ev.StepNames = EventTaskFailed, errorSteps
	case StatePending, StateInProgress:
		if before != StateError || !retried {
			return nil
		}
		ev.Type = EventTaskRetryRequested
	default:
		return nil
	}
	return []*Event{ev}
}

// OperatorAction names what an operator asked (for ChangeEvents).
type OperatorAction string

const (
	ActionCancel  OperatorAction = "cancel"
	ActionResolve OperatorAction = "resolve"
	ActionRetry   OperatorAction = "retry"
)

// ChangeEvents are an operator action's: per changed step (Position order)
// step.cancelled, step.resolved_manually or step.retry_requested; then
// workflow.task_finalized when the action finalized; then the task's when
// it moved (task.retry_requested only for a retry of a task in error).
func ChangeEvents(c *Change, act OperatorAction, now time.Time) []*Event {
	if c == nil || c.Task == nil {
		return nil
	}
	var events []*Event
	for _, s := range c.Steps {
		ev := stepEvent(now, s)
		switch s.State {
		case StateCancelled:
			ev.Type = EventStepCancelled
		case StateResolvedManually:
			ev.Type = EventStepResolvedManually
			ev.Results = s.Results
		case StatePending:
			ev.Type = EventStepRetryRequested
		default:
			continue
		}
		events = append(events, ev)
	}
	if c.Decision != "" && c.Decision != DecisionNone {
		events = append(events, &Event{Type: EventTaskFinalized, Time: now, TaskID: c.Task.ID, ExecutionStatus: c.ExecutionStatus, Decision: c.Decision})
	}
	events = append(events, taskMoveEvents(now, c.Task, c.TaskBefore, c.ErrorSteps, act == ActionRetry)...)
	return stampTask(events, c.Task)
}

// ValidCustomEventName says whether name may be a custom event's: it has
// a dot, no reserved prefix, and only letters, digits, '_', '-' and '.'
// (no empty segment).
func ValidCustomEventName(name string) bool {
	if !strings.Contains(name, ".") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return false
	}
	for _, p := range ReservedEventPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}
