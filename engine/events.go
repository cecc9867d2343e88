package engine

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// EventType names an event of SEMANTICS §6.
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

// Event is one thing that happened, emitted once after the transaction that
// wrote it committed. The events of one write come together, in order, and
// a claim's come after those of every write it may have seen (gate.go); the
// events of two writes that ran at the same time may come in either order,
// whatever the order of their commits (a step's last failure after the
// task.failed another step's result caused, say). Which fields are set
// depends on Type:
//
//   - every event: Type, Time (the instant the engine wrote it), TaskID,
//     Workflow.
//   - step.*: StepID, StepName, Handler; Attempt (the attempt concerned)
//     and RetryLimit where they mean something.
//   - step.execution_requested: ReadyAt.
//   - step.completed: DurationMs (claim to result), Results.
//   - step.failed, step.lease_expired: Error, Attempt, Retryable (whether
//     the step will be retried by the engine on its own).
//   - step.backoff: BackoffSeconds (until the retry may run), BackoffKind,
//     Attempt (the attempt that failed), RetryLimit; NextRetryAt.
//   - task.failed: StepNames (the steps in error).
//   - workflow.viable_steps_discovered: StepNames (claimed for execution).
//   - workflow.task_finalized: ExecutionStatus, Decision.
type Event struct {
	Type   EventType `json:"type"`
	Time   time.Time `json:"timestamp"`
	TaskID int64     `json:"task_id"`
	// Workflow is the task's "namespace/name" (for metrics and logs).
	Workflow string `json:"workflow,omitempty"`
	StepID   int64  `json:"step_id,omitempty"`
	StepName string `json:"step_name,omitempty"`
	// Handler is the step's PLUGIN.HANDLER, on step events.
	Handler string `json:"handler,omitempty"`

	Attempt    int   `json:"attempt,omitempty"`
	RetryLimit int   `json:"retry_limit,omitempty"`
	DurationMs int64 `json:"duration_ms,omitempty"`

	Error     *backends.StepError `json:"error,omitempty"`
	Retryable bool                `json:"retryable,omitempty"`

	BackoffSeconds float64    `json:"backoff_seconds,omitempty"`
	BackoffKind    string     `json:"backoff_kind,omitempty"`
	NextRetryAt    *time.Time `json:"next_retry_at,omitempty"`

	Results json.RawMessage `json:"results,omitempty"`

	// ReadyAt, on step.execution_requested: when the step became ready
	// (backends.Claim.ReadyAt); Time minus ReadyAt is its wait for a worker.
	ReadyAt *time.Time `json:"ready_at,omitempty"`

	ExecutionStatus string                    `json:"execution_status,omitempty"`
	Decision        backends.FinalizeDecision `json:"decision,omitempty"`

	StepNames []string `json:"step_names,omitempty"`
}

// stamp sets the task's workflow on events that lack it.
func stamp(events []Event, t *backends.Task) []Event {
	if t == nil {
		return events
	}
	wf := t.Namespace + "/" + t.WorkflowName
	for i := range events {
		if events[i].Workflow == "" && events[i].TaskID == t.ID {
			events[i].Workflow = wf
		}
	}
	return events
}

// bus fans events out to subscribers without ever blocking the publisher:
// each subscriber has a bounded channel, and an event that does not fit is
// dropped and counted.
type bus struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	dropped atomic.Int64
}

type subscriber struct {
	ch      chan Event
	dropped atomic.Int64
}

func newBus() *bus { return &bus{subs: map[*subscriber]struct{}{}} }

func (b *bus) subscribe(size int) (<-chan Event, func()) {
	if size < 1 {
		size = 1
	}
	s := &subscriber{ch: make(chan Event, size)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			close(s.ch)
			b.mu.Unlock()
		})
	}
}

// publish delivers events in order, as one batch: no other publish
// interleaves with it, so each subscriber sees a single total order.
func (b *bus) publish(events ...Event) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, ev := range events {
			select {
			case s.ch <- ev:
			default:
				s.dropped.Add(1)
				b.dropped.Add(1)
			}
		}
	}
}
