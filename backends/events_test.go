package backends

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMatchEventType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		patterns []string
		t        EventType
		want     bool
	}{
		{nil, EventTaskCompleted, true},
		{[]string{}, "order.shipped", true},
		{[]string{"*"}, EventStepFailed, true},
		{[]string{"task.completed"}, EventTaskCompleted, true},
		{[]string{"task.completed"}, EventTaskFailed, false},
		{[]string{"task.*"}, EventTaskFailed, true},
		{[]string{"task.*"}, EventStepFailed, false},
		{[]string{"task.*"}, "task", false},
		{[]string{"task.*"}, "tasks.x", false},
		{[]string{"step.completed", "order.*"}, "order.shipped", true},
		{[]string{"step.completed", "order.*"}, "order.shipped.late", true},
		{[]string{"step.completed", "order.*"}, "orders.shipped", false},
		{[]string{"order.shipped.*"}, "order.shipped", false},
		{[]string{"task"}, EventTaskCompleted, false},
		{[]string{"task.complete"}, EventTaskCompleted, false},
	} {
		require.Equal(t, tc.want, MatchEventType(tc.patterns, tc.t), "%q %s", tc.patterns, tc.t)
	}
}

func TestValidCustomEventName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"order.shipped", "Order.Shipped-2", "a.b.c", "billing_v2.invoice.paid", "x.1"} {
		require.True(t, ValidCustomEventName(ok), ok)
	}
	for _, bad := range []string{
		"", "shipped", ".shipped", "order.", "order..shipped",
		"task.shipped", "step.x", "workflow.done", // reserved
		"order shipped.x", "order.ship*", "ordér.shipped", "order/x.y",
	} {
		require.False(t, ValidCustomEventName(bad), bad)
	}
	// "tasks." is not "task.".
	require.True(t, ValidCustomEventName("tasks.created"))
}

var evNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func evAt(d time.Duration) *time.Time {
	t := evNow.Add(d)
	return &t
}

func testTask(id int64, state State) *Task {
	return &Task{ID: id, Namespace: "shop", WorkflowName: "order", State: state}
}

// failedStep is a step that failed at evNow-1s after its attempt-th attempt.
func failedStep(attempts, limit int, retryable bool) *Step {
	se, _ := json.Marshal(StepError{Message: "boom", Retryable: retryable, Kind: ErrorKindHandler})
	return &Step{ID: 11, TaskID: 1, Name: "charge", Handler: "pay.charge", Retryable: retryable, RetryLimit: limit,
		BackoffBase: time.Second, BackoffMax: 30 * time.Second, State: StateError, Attempts: attempts,
		LastFailureAt: evAt(-time.Second), LastAttemptedAt: evAt(-time.Second), Error: se}
}

func types(events []*Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = string(ev.Type)
		if ev.StepName != "" {
			out[i] += " " + ev.StepName
		}
	}
	return out
}

func TestRecordEventsRetryableFailureBacksOff(t *testing.T) {
	t.Parallel()
	// Attempt 2 of 3: backoff(2) = 4 s from the failure.
	rr := &RecordResult{Step: failedStep(2, 3, true), Task: testTask(1, StateInProgress), TaskBefore: StateInProgress,
		Decision: DecisionContinue, Context: ExecutionContext{ExecutionStatus: StatusWaitingForDependencies}}
	events := RecordEvents(rr, nil, evNow, EventStepFailed)
	require.Equal(t, []string{"step.failed charge", "step.backoff charge", "workflow.task_finalized"}, types(events))
	failed, backoff, fin := events[0], events[1], events[2]
	require.True(t, failed.Retryable)
	require.False(t, failed.Blocked)
	require.Equal(t, 2, failed.Attempt)
	require.Equal(t, 3, failed.RetryLimit)
	require.Equal(t, &StepError{Message: "boom", Retryable: true, Kind: ErrorKindHandler}, failed.Error)
	require.Equal(t, evAt(3*time.Second), failed.NextRetryAt)
	require.Equal(t, evAt(3*time.Second), backoff.NextRetryAt)
	require.Equal(t, BackoffExponential, backoff.BackoffKind)
	require.InDelta(t, 3.0, backoff.BackoffSeconds, 1e-9, "from now, not from the failure")
	require.Equal(t, 2, backoff.Attempt)
	require.Equal(t, StatusWaitingForDependencies, fin.ExecutionStatus)
	require.Equal(t, DecisionContinue, fin.Decision)
	for _, ev := range events {
		require.Equal(t, int64(1), ev.TaskID)
		require.Equal(t, "shop", ev.Namespace)
		require.Equal(t, "shop/order", ev.Workflow)
		require.Equal(t, evNow, ev.Time)
	}
	require.Equal(t, "pay.charge", failed.Handler)
	require.Empty(t, fin.Handler)

	// The handler asked for longer: its request wins.
	s := failedStep(2, 3, true)
	s.BackoffRequestSeconds = new(int)
	*s.BackoffRequestSeconds = 10
	events = RecordEvents(&RecordResult{Step: s, Task: testTask(1, StateInProgress), TaskBefore: StateInProgress}, nil, evNow, EventStepFailed)
	require.Equal(t, BackoffRequested, events[1].BackoffKind)
	require.Equal(t, evAt(9*time.Second), events[1].NextRetryAt)
	require.InDelta(t, 9.0, events[1].BackoffSeconds, 1e-9)

	// For less: the policy's.
	*s.BackoffRequestSeconds = 1
	events = RecordEvents(&RecordResult{Step: s, Task: testTask(1, StateInProgress), TaskBefore: StateInProgress}, nil, evNow, EventStepFailed)
	require.Equal(t, BackoffExponential, events[1].BackoffKind)

	// A backoff already over waits 0 s.
	events = RecordEvents(&RecordResult{Step: failedStep(1, 3, true), Task: testTask(1, StateInProgress), TaskBefore: StateInProgress},
		nil, evNow.Add(time.Hour), EventStepFailed)
	require.Zero(t, events[1].BackoffSeconds)
}

func TestRecordEventsBlockedFailure(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*Step{
		"permanent": failedStep(1, 3, false),
		"exhausted": failedStep(3, 3, true),
	} {
		rr := &RecordResult{Step: s, Task: testTask(1, StateError), TaskBefore: StateInProgress,
			Decision: DecisionError, ErrorSteps: []string{"charge", "ship"}}
		events := RecordEvents(rr, nil, evNow, EventStepLeaseExpired)
		require.Equal(t, []string{"step.lease_expired charge", "workflow.task_finalized", "task.failed"}, types(events), name)
		require.True(t, events[0].Blocked, name)
		require.False(t, events[0].Retryable, name)
		require.Nil(t, events[0].NextRetryAt, name)
		require.Equal(t, []string{"charge", "ship"}, events[2].StepNames, name)
	}
}

func TestRecordEventsCompletionAndCustomEvents(t *testing.T) {
	t.Parallel()
	s := &Step{ID: 11, TaskID: 1, Name: "charge", Handler: "pay.charge", State: StateComplete, Attempts: 1, RetryLimit: 3,
		StartedAt: evAt(-1500 * time.Millisecond), LastAttemptedAt: evAt(0), Results: json.RawMessage(`{"ok":true}`)}
	rr := &RecordResult{Step: s, Task: testTask(1, StateComplete), TaskBefore: StateInProgress, Decision: DecisionComplete}
	events := RecordEvents(rr, []CustomEvent{{Name: "order.charged", Payload: json.RawMessage(`{"cents":100}`)}, {Name: "order.noted"}},
		evNow, EventStepFailed)
	require.Equal(t, []string{"order.charged charge", "order.noted charge", "step.completed charge", "workflow.task_finalized", "task.completed"},
		types(events))
	require.JSONEq(t, `{"cents":100}`, string(events[0].Payload))
	require.Equal(t, "null", string(events[1].Payload))
	require.Equal(t, 1, events[0].Attempt)
	require.Equal(t, int64(1500), events[2].DurationMs)
	require.JSONEq(t, `{"ok":true}`, string(events[2].Results))

	// Cancelled while running: step.cancelled; a task in error that
	// continues (an operator resolved its blocked step meanwhile) has no
	// task event from a step's result.
	s = &Step{ID: 11, TaskID: 1, Name: "charge", State: StateCancelled}
	events = RecordEvents(&RecordResult{Step: s, Task: testTask(1, StateInProgress), TaskBefore: StateError}, nil, evNow, EventStepFailed)
	require.Equal(t, []string{"step.cancelled charge", "workflow.task_finalized"}, types(events))

	// A released step has none at all.
	s = &Step{ID: 11, TaskID: 1, Name: "charge", State: StatePending}
	require.Nil(t, RecordEvents(&RecordResult{Step: s, Task: testTask(1, StateInProgress), TaskBefore: StateInProgress}, nil, evNow, EventStepLeaseExpired))
}

// ClaimEvents groups a claim's steps by task, in the order each task
// first appears.
func TestClaimEventsGroupByTask(t *testing.T) {
	t.Parallel()
	t1, t2 := testTask(1, StateInProgress), testTask(2, StateInProgress)
	t2.Namespace = "other"
	claim := func(task *Task, id int64, name string, started, retry bool, ready *time.Time) *Claim {
		c := &Claim{Task: task, TaskStarted: started, Retry: retry,
			Step: &Step{ID: id, TaskID: task.ID, Name: name, Handler: "h.x", Attempts: 1, RetryLimit: 3, State: StateInProgress}}
		if ready != nil {
			c.ReadyAt = *ready
		}
		return c
	}
	claims := []*Claim{
		claim(t1, 11, "a", true, false, evAt(-time.Second)),
		claim(t2, 21, "x", false, true, evAt(-2*time.Second)),
		claim(t1, 12, "b", false, false, nil),
	}
	events := ClaimEvents(claims, evNow)
	var got []string
	for _, ev := range events {
		got = append(got, fmt.Sprintf("%d %s %s %s", ev.TaskID, ev.Type, ev.StepName, strings.Join(ev.StepNames, ",")))
	}
	require.Equal(t, []string{
		"1 task.start_requested  ",
		"1 workflow.viable_steps_discovered  a,b",
		"1 step.execution_requested a ",
		"1 step.execution_requested b ",
		"2 workflow.viable_steps_discovered  x",
		"2 step.retry_requested x ",
		"2 step.execution_requested x ",
	}, got)
	require.Equal(t, evAt(-time.Second), events[2].ReadyAt)
	require.Nil(t, events[3].ReadyAt, "no ReadyAt when the claim has none")
	require.Equal(t, "shop/order", events[0].Workflow)
	require.Equal(t, "other", events[6].Namespace)
	require.Equal(t, "other/order", events[6].Workflow)
	require.Empty(t, ClaimEvents(nil, evNow))
}

func TestCreatedEvents(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"task.initialize_requested"}, types(CreatedEvents(testTask(1, StatePending), evNow)))
	events := CreatedEvents(testTask(1, StateComplete), evNow)
	require.Equal(t, []string{"task.initialize_requested", "task.completed"}, types(events))
	require.Equal(t, "shop/order", events[1].Workflow)
}

// An event's JSON is its documented shape: seq omitted until stored.
func TestEventJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(&Event{Type: EventStepFailed, Time: evNow, TaskID: 1, StepID: 11, StepName: "charge",
		Attempt: 1, Error: &StepError{Message: "boom", Kind: ErrorKindPermanent}, Blocked: true})
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"step.failed","timestamp":"2030-01-02T03:04:05Z","task_id":1,"step_id":11,
		"step_name":"charge","attempt":1,"error":{"message":"boom","retryable":false,"kind":"permanent"},"blocked":true}`, string(b))
}
