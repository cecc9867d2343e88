package backendtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// testEvents: the event log (backends/events.go). Each write stores the
// events of what it changed in its own transaction, numbered by Seq in
// commit order without gaps, and hands exactly them, once committed, to its
// ctx's sink; readers list them and keep durable cursors.
//
// Not covered here: that a task's events go when the task is deleted (the
// Store interface has no deletion; each store checks its cascade itself).
func testEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("LinearRetryThenSuccess", func(t *testing.T) { testEventsLinear(t, newStore) })
	t.Run("DiamondBlockedThenOperatorRetry", func(t *testing.T) { testEventsDiamond(t, newStore) })
	t.Run("CustomEventsBeforeTheStepsOwn", func(t *testing.T) { testCustomEvents(t, newStore) })
	t.Run("RefusedWritesWriteNothing", func(t *testing.T) { testRefusedWritesWriteNoEvents(t, newStore) })
	t.Run("IdempotentReplayWritesNothing", func(t *testing.T) { testIdempotentReplayEvents(t, newStore) })
	t.Run("ConcurrentWritesEachGetTheirOwn", func(t *testing.T) { testConcurrentSinks(t, newStore) })
	t.Run("ListFilters", func(t *testing.T) { testListEvents(t, newStore) })
	t.Run("LeaseRecovery", func(t *testing.T) { testLeaseRecoveryEvents(t, newStore) })
	t.Run("OperatorMovesTaskToError", func(t *testing.T) { testOperatorErrorEvents(t, newStore) })
	t.Run("Cursors", func(t *testing.T) { testCursors(t, newStore) })
	t.Run("DeadLetters", func(t *testing.T) { testDeadLetters(t, newStore) })
}

// sinkLog records what a store handed to its ctx's sink, one batch per call.
type sinkLog struct {
	mu      sync.Mutex
	batches [][]*backends.Event
}

func (l *sinkLog) sink(events []*backends.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, events)
}

func (l *sinkLog) all() (sizes []int, events []*backends.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.batches {
		sizes = append(sizes, len(b))
		events = append(events, b...)
	}
	return sizes, events
}

// withSink makes every later store call of the bundle report to a new log.
func (b *bundle) withSink() *sinkLog {
	l := &sinkLog{}
	b.ctx = backends.WithEventSink(b.ctx, l.sink)
	return l
}

func (b *bundle) events(q backends.EventQuery) []*backends.Event {
	b.t.Helper()
	evs, err := b.store.ListEvents(b.ctx, &q)
	require.NoError(b.t, err)
	return evs
}

func (b *bundle) lastSeq() int64 {
	b.t.Helper()
	seq, err := b.store.LastEventSeq(b.ctx)
	require.NoError(b.t, err)
	return seq
}

// describe renders events as "type step#attempt detail" for exact
// comparisons of sequences.
func describe(events []*backends.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		s := string(ev.Type)
		if ev.StepName != "" {
			s += fmt.Sprintf(" %s#%d", ev.StepName, ev.Attempt)
		}
		switch ev.Type {
		case backends.EventStepFailed, backends.EventStepLeaseExpired:
			switch {
			case ev.Retryable && !ev.Blocked:
				s += " retryable"
			case ev.Blocked && !ev.Retryable:
				s += " blocked"
			default:
				s += fmt.Sprintf(" retryable=%t blocked=%t", ev.Retryable, ev.Blocked)
			}
		case backends.EventViableStepsDiscovered, backends.EventTaskFailed:
			s += " [" + strings.Join(ev.StepNames, " ") + "]"
		case backends.EventTaskFinalized:
			s += " " + string(ev.Decision)
		}
		out[i] = s
	}
	return out
}

func seqs(events []*backends.Event) []int64 {
	out := make([]int64, len(events))
	for i, ev := range events {
		out[i] = ev.Seq
	}
	return out
}

// seqRange is from, from+1, ..., to.
func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// requireSameEvents compares events as their JSON (the stable shape):
// stored JSON values may come back formatted differently.
func requireSameEvents(t *testing.T, want, got []*backends.Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, err := json.Marshal(want[i])
		require.NoError(t, err)
		g, err := json.Marshal(got[i])
		require.NoError(t, err)
		require.JSONEq(t, string(w), string(g), "event %d", i)
	}
}

// checkTaskEvents checks what every event of a task carries: its task,
// namespace and workflow, and on step events the step's id, handler and
// retry limit (the suite's steps are builtin.noop with limit 3 unless
// limit says otherwise).
func (b *bundle) checkTaskEvents(task *backends.Task, events []*backends.Event, limit int) {
	b.t.Helper()
	ids := map[string]int64{}
	for _, s := range b.steps(task.ID) {
		ids[s.Name] = s.ID
	}
	for i, ev := range events {
		require.Equal(b.t, task.ID, ev.TaskID, "event %d", i)
		require.Equal(b.t, task.Namespace, ev.Namespace, "event %d", i)
		require.Equal(b.t, task.Namespace+"/"+task.WorkflowName, ev.Workflow, "event %d", i)
		require.Equal(b.t, time.UTC, ev.Time.Location(), "event %d", i)
		if ev.StepName != "" {
			require.Equal(b.t, ids[ev.StepName], ev.StepID, "event %d", i)
			require.Equal(b.t, "builtin.noop", ev.Handler, "event %d", i)
			require.Equal(b.t, limit, ev.RetryLimit, "event %d", i)
		} else {
			require.Zero(b.t, ev.StepID, "event %d", i)
		}
	}
}

// (a) a -> b; a fails once (retryable), is retried after its backoff and
// completes, then b.
func testEventsLinear(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	require.Zero(t, b.lastSeq())
	require.Empty(t, b.events(backends.EventQuery{}))
	log := b.withSink()

	task := b.create(step("a"), step("b", "a"))
	first := b.claimOne("a", base)
	failed := b.fail(first, true, nil, at(time.Second))
	require.Equal(t, backends.StateInProgress, failed.TaskBefore)
	require.Nil(t, failed.ErrorSteps)
	// backoff(1) = 2 s after the failure.
	retried := b.claimOne("a", at(3*time.Second))
	require.True(t, retried.Retry)
	b.complete(retried, at(4*time.Second))
	done := b.complete(b.claimOne("b", at(5*time.Second)), at(6*time.Second))
	require.Equal(t, backends.StateComplete, done.Task.State)
	require.Equal(t, backends.StateInProgress, done.TaskBefore)
	require.Nil(t, done.ErrorSteps)

	evs := b.events(backends.EventQuery{TaskID: task.ID})
	require.Equal(t, []string{
		"task.initialize_requested",
		"task.start_requested",
		"workflow.viable_steps_discovered [a]",
		"step.execution_requested a#1",
		"step.failed a#1 retryable",
		"step.backoff a#1",
		"workflow.task_finalized continue",
		"workflow.viable_steps_discovered [a]",
		"step.retry_requested a#2",
		"step.execution_requested a#2",
		"step.completed a#2",
		"workflow.task_finalized continue",
		"workflow.viable_steps_discovered [b]",
		"step.execution_requested b#1",
		"step.completed b#1",
		"workflow.task_finalized complete",
		"task.completed",
	}, describe(evs))
	// The store's first events: numbered from 1, without a gap.
	require.Equal(t, seqRange(1, 17), seqs(evs))
	require.Equal(t, int64(17), b.lastSeq())
	requireSameEvents(t, evs, b.events(backends.EventQuery{}))
	b.checkTaskEvents(task, evs, 3)

	// Each event carries its write's instant.
	for i, want := range []time.Time{base, base, base, base, at(time.Second), at(time.Second), at(time.Second),
		at(3 * time.Second), at(3 * time.Second), at(3 * time.Second), at(4 * time.Second), at(4 * time.Second),
		at(5 * time.Second), at(5 * time.Second), at(6 * time.Second), at(6 * time.Second), at(6 * time.Second)} {
		require.True(t, want.Equal(evs[i].Time), "event %d at %s, want %s", i, evs[i].Time, want)
	}
	// The failure: its error, and when the retry may run (also on its
	// step.backoff: backoff(1) = 2 s, the policy's).
	fe, be := evs[4], evs[5]
	require.NotNil(t, fe.Error)
	require.Equal(t, backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, *fe.Error)
	require.NotNil(t, fe.NextRetryAt)
	require.True(t, at(3*time.Second).Equal(*fe.NextRetryAt))
	require.NotNil(t, be.NextRetryAt)
	require.True(t, at(3*time.Second).Equal(*be.NextRetryAt))
	require.InDelta(t, 2.0, be.BackoffSeconds, 1e-9)
	require.Equal(t, backends.BackoffExponential, be.BackoffKind)
	// When each step became ready: created, end of backoff, parent done.
	for i, want := range map[int]time.Time{3: base, 9: at(3 * time.Second), 13: at(4 * time.Second)} {
		require.NotNil(t, evs[i].ReadyAt, "event %d", i)
		require.True(t, want.Equal(*evs[i].ReadyAt), "event %d ready at %s, want %s", i, *evs[i].ReadyAt, want)
	}
	// Completion: its results and its duration (claim to result).
	require.JSONEq(t, `{"step":"a"}`, string(evs[10].Results))
	require.Equal(t, int64(1000), evs[10].DurationMs)
	require.Equal(t, backends.StatusAllComplete, evs[15].ExecutionStatus)

	// The sink got each call's events, once committed, with their Seq.
	sizes, sunk := log.all()
	require.Equal(t, []int{1, 3, 3, 3, 2, 2, 3}, sizes, "one batch per write, its own events")
	requireSameEvents(t, evs, sunk)
}

// (b) a -> (b, c) -> d: c fails permanently while b runs, which blocks
// the task once b completed; (c) an operator retries c, which then
// completes, and d.
func testEventsDiamond(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	log := b.withSink()
	task := b.create(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))
	b.run("a", base)
	cs := b.claim(2, at(time.Second))
	require.Len(t, cs, 2)
	require.Equal(t, []string{"b", "c"}, []string{cs[0].Step.Name, cs[1].Step.Name})
	resC := b.fail(cs[1], false, nil, at(2*time.Second))
	require.Equal(t, backends.DecisionContinue, resC.Decision)
	require.Nil(t, resC.ErrorSteps)
	resB := b.complete(cs[0], at(3*time.Second))
	require.Equal(t, backends.DecisionError, resB.Decision)
	require.Equal(t, backends.StateError, resB.Task.State)
	require.Equal(t, backends.StateInProgress, resB.TaskBefore)
	require.Equal(t, []string{"c"}, resB.ErrorSteps)

	blocked := b.events(backends.EventQuery{TaskID: task.ID})
	require.Equal(t, []string{
		"task.initialize_requested",
		"task.start_requested",
		"workflow.viable_steps_discovered [a]",
		"step.execution_requested a#1",
		"step.completed a#1",
		"workflow.task_finalized continue",
		"workflow.viable_steps_discovered [b c]",
		"step.execution_requested b#1",
		"step.execution_requested c#1",
		"step.failed c#1 blocked",
		"workflow.task_finalized continue",
		"step.completed b#1",
		"workflow.task_finalized error",
		"task.failed [c]",
	}, describe(blocked))
	require.Equal(t, seqRange(1, 14), seqs(blocked))
	fe := blocked[9]
	require.Nil(t, fe.NextRetryAt, "a blocked step has no retry")
	require.Equal(t, backends.ErrorKindPermanent, fe.Error.Kind)
	require.Equal(t, backends.StatusBlockedByFailures, blocked[12].ExecutionStatus)

	// (c) The operator's retry, then the rest of the task.
	ch, err := b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: cs[1].Step.ID, Reason: "fixed", Now: at(4 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, backends.StateError, ch.TaskBefore)
	require.Equal(t, backends.StateInProgress, ch.Task.State)
	again := b.claimOne("c", at(5*time.Second))
	require.False(t, again.Retry, "the operator moved it to pending")
	b.complete(again, at(6*time.Second))
	b.run("d", at(7*time.Second))

	evs := b.events(backends.EventQuery{TaskID: task.ID, After: 14})
	require.Equal(t, []string{
		"step.retry_requested c#1",
		"task.retry_requested",
		"workflow.viable_steps_discovered [c]",
		"step.execution_requested c#2",
		"step.completed c#2",
		"workflow.task_finalized continue",
		"workflow.viable_steps_discovered [d]",
		"step.execution_requested d#1",
		"step.completed d#1",
		"workflow.task_finalized complete",
		"task.completed",
	}, describe(evs))
	require.Equal(t, seqRange(15, 25), seqs(evs))
	all := b.events(backends.EventQuery{})
	b.checkTaskEvents(task, all, 3)
	sizes, sunk := log.all()
	// create, claim a, complete a, claim b c, fail c, complete b, retry c,
	// claim c, complete c, claim d, complete d.
	require.Equal(t, []int{1, 3, 2, 3, 2, 3, 2, 2, 2, 2, 3}, sizes)
	requireSameEvents(t, all, sunk)
}

func testCustomEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	task := b.create(step("a"), step("b"))
	ca := b.claimOne("a", base)
	cb := b.claimOne("b", base)
	after := b.lastSeq()

	log := b.withSink()
	_, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{
		StepID: ca.Step.ID, LeaseToken: ca.Step.LeaseToken, Results: json.RawMessage(`{"ok":true}`),
		Events: []backends.CustomEvent{
			{Name: "order.shipped", Payload: json.RawMessage(`{"id":7,"carrier":"post"}`)},
			{Name: "order.noted"},
		},
		Now: at(time.Second),
	})
	require.NoError(t, err)
	_, err = b.store.FailStep(b.ctx, &backends.FailStepParams{
		StepID: cb.Step.ID, LeaseToken: cb.Step.LeaseToken,
		Error:  backends.StepError{Message: "declined", Retryable: true, Kind: backends.ErrorKindHandler},
		Events: []backends.CustomEvent{{Name: "payment.declined", Payload: json.RawMessage(`"insufficient funds"`)}},
		Now:    at(2 * time.Second),
	})
	require.NoError(t, err)

	evs := b.events(backends.EventQuery{After: after})
	require.Equal(t, []string{
		"order.shipped a#1",
		"order.noted a#1",
		"step.completed a#1",
		"workflow.task_finalized continue",
		"payment.declined b#1",
		"step.failed b#1 retryable",
		"step.backoff b#1",
		"workflow.task_finalized continue",
	}, describe(evs))
	require.Equal(t, seqRange(after+1, after+8), seqs(evs))
	require.JSONEq(t, `{"id":7,"carrier":"post"}`, string(evs[0].Payload))
	require.JSONEq(t, `null`, string(evs[1].Payload), "an event without a payload has null")
	require.JSONEq(t, `"insufficient funds"`, string(evs[4].Payload))
	require.Empty(t, evs[2].Payload)
	for _, i := range []int{0, 1, 4} {
		require.True(t, at(time.Duration(1+i/4)*time.Second).Equal(evs[i].Time))
	}
	b.checkTaskEvents(task, evs, 3)
	sizes, sunk := log.all()
	require.Equal(t, []int{4, 4}, sizes)
	requireSameEvents(t, evs, sunk)
}

// A write that is refused, or rolled back, writes no event and calls no
// sink; neither does a write that changed nothing.
func testRefusedWritesWriteNoEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	task := b.create(step("a"), step("b"))
	old := b.claimOne("a", base)
	b.recover(10, at(lease))
	before := b.lastSeq()
	log := b.withSink()

	// A stale token, with custom events: nothing of it is written.
	_, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: old.Step.ID, LeaseToken: old.Step.LeaseToken,
		Events: []backends.CustomEvent{{Name: "order.shipped"}}, Now: at(lease)})
	require.ErrorIs(t, err, backends.ErrLeaseLost)
	_, err = b.store.FailStep(b.ctx, &backends.FailStepParams{StepID: old.Step.ID, LeaseToken: old.Step.LeaseToken,
		Error:  backends.StepError{Message: "late", Retryable: true, Kind: backends.ErrorKindHandler},
		Events: []backends.CustomEvent{{Name: "order.failed"}}, Now: at(lease)})
	require.ErrorIs(t, err, backends.ErrLeaseLost)
	// An operator action the state machine refuses (b is pending).
	_, err = b.store.RetryStep(b.ctx, &backends.RetryStepParams{StepID: b.step(task.ID, "b").ID, Now: at(lease)})
	require.ErrorIs(t, err, backends.ErrInvalidTransition)
	_, err = b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Now: at(lease)})
	require.ErrorIs(t, err, backends.ErrInvalidTransition)
	// An idempotency key reused with another request.
	p := &backends.CreateTaskParams{Namespace: "default", WorkflowName: "test", WorkflowVersion: "0.1.0",
		IdempotencyKey: "k", RequestHash: "h1", Steps: []backends.NewStep{step("a")}, Now: at(lease)}
	_, _, err = b.store.CreateTask(b.ctx, p)
	require.NoError(t, err)
	created := b.lastSeq()
	require.Equal(t, before+1, created)
	p.RequestHash = "h2"
	_, _, err = b.store.CreateTask(b.ctx, p)
	require.ErrorIs(t, err, backends.ErrDuplicate)
	// Writes that change nothing: a claim that finds no step (a waits for
	// its backoff, the others are leased), no lease to recover.
	require.Len(t, b.claim(2, at(lease)), 2) // b, and the new task's a
	created = b.lastSeq()
	nothing := at(lease + time.Second)
	cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 1, LeaseDuration: lease, Now: nothing})
	require.NoError(t, err)
	require.Empty(t, cs)
	require.Empty(t, b.recover(10, nothing))

	require.Equal(t, created, b.lastSeq(), "a refused write wrote an event")
	sizes, _ := log.all()
	require.Equal(t, []int{1, 5}, sizes, "only the task created and the claim reached the sink")
}

func testIdempotentReplayEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	log := b.withSink()
	p := &backends.CreateTaskParams{Namespace: "default", WorkflowName: "test", WorkflowVersion: "0.1.0",
		IdempotencyKey: "order-1", RequestHash: "h", Steps: []backends.NewStep{step("a")}, Now: base}
	task, created, err := b.store.CreateTask(b.ctx, p)
	require.NoError(t, err)
	require.True(t, created)
	p.Now = at(time.Second)
	again, created, err := b.store.CreateTask(b.ctx, p)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, task.ID, again.ID)

	evs := b.events(backends.EventQuery{})
	require.Equal(t, []string{"task.initialize_requested"}, describe(evs))
	require.True(t, base.Equal(evs[0].Time))
	sizes, _ := log.all()
	require.Equal(t, []int{1}, sizes)

	// A task whose every step is bypassed completes at once.
	skipped := step("a")
	skipped.Bypass = true
	done := b.create(skipped)
	require.Equal(t, backends.StateComplete, done.State)
	require.Equal(t, []string{"task.initialize_requested", "task.completed"},
		describe(b.events(backends.EventQuery{TaskID: done.ID})))
}

// Writes running at once (SQLite groups them in one transaction,
// PostgreSQL numbers them under a lock): each call's sink gets exactly its
// own events, a refused call's none, and the log has no gap.
func testConcurrentSinks(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	const n = 12
	var tasks []*backends.Task
	for range n {
		tasks = append(tasks, b.create(step("a")))
	}
	cs := b.claim(n, base)
	require.Len(t, cs, n)
	start := b.lastSeq()

	logs := make([]*sinkLog, n)
	stale := make([]*sinkLog, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i, c := range cs {
		logs[i], stale[i] = &sinkLog{}, &sinkLog{}
		wg.Add(2)
		go func() {
			defer wg.Done()
			ctx := backends.WithEventSink(context.Background(), logs[i].sink)
			if i%2 == 0 {
				_, errs[i] = b.store.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
					Events: []backends.CustomEvent{{Name: "test.mine", Payload: json.RawMessage(fmt.Sprint(i))}}, Now: at(time.Second)})
			} else {
				_, errs[i] = b.store.FailStep(ctx, &backends.FailStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
					Error: backends.StepError{Message: "no", Kind: backends.ErrorKindPermanent}, Now: at(time.Second)})
			}
		}()
		go func() {
			defer wg.Done()
			// A write with a wrong token is refused, whenever it runs.
			ctx := backends.WithEventSink(context.Background(), stale[i].sink)
			_, errs[n+i] = b.store.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken + 100,
				Events: []backends.CustomEvent{{Name: "test.stale"}}, Now: at(time.Second)})
		}()
	}
	wg.Wait()

	var sunk []*backends.Event
	for i, c := range cs {
		require.NoError(t, errs[i], "call %d", i)
		require.ErrorIs(t, errs[n+i], backends.ErrLeaseLost, "stale call %d", i)
		sizes, _ := stale[i].all()
		require.Empty(t, sizes, "a refused call's sink was called")
		sizes, evs := logs[i].all()
		require.Len(t, sizes, 1, "call %d: one batch", i)
		want := []string{"test.mine a#1", "step.completed a#1", "workflow.task_finalized complete", "task.completed"}
		if i%2 == 1 {
			want = []string{"step.failed a#1 blocked", "workflow.task_finalized error", "task.failed [a]"}
		}
		require.Equal(t, want, describe(evs), "call %d", i)
		for _, ev := range evs {
			require.Equal(t, c.Step.TaskID, ev.TaskID, "call %d got another call's event", i)
		}
		// Within a call, consecutive numbers.
		require.Equal(t, seqRange(evs[0].Seq, evs[0].Seq+int64(len(evs))-1), seqs(evs), "call %d", i)
		if i%2 == 0 {
			require.JSONEq(t, fmt.Sprint(i), string(evs[0].Payload))
		}
		sunk = append(sunk, evs...)
	}
	// Together they are exactly the log after start, without a gap or a
	// duplicate.
	listed := b.events(backends.EventQuery{After: start})
	require.Equal(t, seqRange(start+1, start+int64(len(sunk))), seqs(listed))
	bySeq := map[int64]*backends.Event{}
	for _, ev := range sunk {
		require.NotContains(t, bySeq, ev.Seq, "seq %d handed out twice", ev.Seq)
		bySeq[ev.Seq] = ev
	}
	for _, ev := range listed {
		requireSameEvents(t, []*backends.Event{ev}, []*backends.Event{bySeq[ev.Seq]})
	}
	for _, task := range tasks {
		b.checkTaskEvents(b.task(task.ID), b.events(backends.EventQuery{TaskID: task.ID}), 3)
	}
}

func testListEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	t1 := b.create(step("a"))
	t2, _, err := b.store.CreateTask(b.ctx, &backends.CreateTaskParams{Namespace: "other", WorkflowName: "test",
		WorkflowVersion: "0.1.0", Steps: []backends.NewStep{step("a")}, Now: base})
	require.NoError(t, err)
	t3 := b.create(step("a"))
	// One claim of the three steps: per task, in claim order (oldest task
	// first), its own events together.
	require.Len(t, b.claim(3, at(time.Second)), 3)

	all := b.events(backends.EventQuery{})
	require.Equal(t, seqRange(1, 12), seqs(all))
	require.Equal(t, int64(12), b.lastSeq())
	taskOf := make([]int64, len(all))
	for i, ev := range all {
		taskOf[i] = ev.TaskID
	}
	require.Equal(t, []int64{t1.ID, t2.ID, t3.ID, t1.ID, t1.ID, t1.ID, t2.ID, t2.ID, t2.ID, t3.ID, t3.ID, t3.ID}, taskOf)
	require.Equal(t, []string{"task.start_requested", "workflow.viable_steps_discovered [a]", "step.execution_requested a#1"},
		describe(all[6:9]))
	require.Equal(t, "other", all[1].Namespace)
	require.Equal(t, "other/test", all[1].Workflow)

	for name, tc := range map[string]struct {
		q    backends.EventQuery
		want []int64
	}{
		"after":                         {backends.EventQuery{After: 5}, seqRange(6, 12)},
		"after the end":                 {backends.EventQuery{After: 12}, nil},
		"task":                          {backends.EventQuery{TaskID: t2.ID}, []int64{2, 7, 8, 9}},
		"task after":                    {backends.EventQuery{TaskID: t1.ID, After: 4}, []int64{5, 6}},
		"unknown task":                  {backends.EventQuery{TaskID: t3.ID + 100}, nil},
		"namespace":                     {backends.EventQuery{Namespaces: []string{"other"}}, []int64{2, 7, 8, 9}},
		"namespaces":                    {backends.EventQuery{Namespaces: []string{"other", "default"}}, seqRange(1, 12)},
		"no such namespace":             {backends.EventQuery{Namespaces: []string{"nope"}}, nil},
		"namespace and task":            {backends.EventQuery{Namespaces: []string{"default"}, TaskID: t3.ID}, []int64{3, 10, 11, 12}},
		"namespace of another task":     {backends.EventQuery{Namespaces: []string{"other"}, TaskID: t1.ID}, nil},
		"limit":                         {backends.EventQuery{Limit: 2}, []int64{1, 2}},
		"after and limit":               {backends.EventQuery{After: 3, Limit: 2}, []int64{4, 5}},
		"namespace, after and limit":    {backends.EventQuery{Namespaces: []string{"default"}, After: 2, Limit: 3}, []int64{3, 4, 5}},
		"everything filtered and limit": {backends.EventQuery{Namespaces: []string{"default"}, TaskID: t3.ID, After: 3, Limit: 2}, []int64{10, 11}},
	} {
		got := b.events(tc.q)
		if tc.want == nil {
			require.Empty(t, got, name)
			continue
		}
		require.Equal(t, tc.want, seqs(got), name)
		for _, ev := range got {
			requireSameEvents(t, []*backends.Event{all[ev.Seq-1]}, []*backends.Event{ev})
		}
	}
}

func testLeaseRecoveryEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("ExpiredAndReleased", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		// a starts at once, b waits for a worker (its handler never starts).
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 2, Queued: 1, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 2)
		require.Nil(t, cs[1].Step.StartedAt)
		after := b.lastSeq()
		log := b.withSink()
		res := b.recover(10, at(lease))
		require.Len(t, res, 2)
		require.Equal(t, backends.StatePending, res[1].Step.State, "b is released")

		evs := b.events(backends.EventQuery{After: after})
		require.Equal(t, []string{
			"step.lease_expired a#1 retryable",
			"step.backoff a#1",
			"workflow.task_finalized continue",
		}, describe(evs), "nothing for the released step")
		require.Equal(t, backends.ErrorKindLeaseExpired, evs[0].Error.Kind)
		require.True(t, at(lease+2*time.Second).Equal(*evs[0].NextRetryAt))
		b.checkTaskEvents(task, evs, 3)
		sizes, sunk := log.all()
		require.Equal(t, []int{3}, sizes)
		requireSameEvents(t, evs, sunk)
	})

	t.Run("OnlyReleasedWritesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"))
		cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: 1, Queued: 1, LeaseDuration: lease, Now: base})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		after := b.lastSeq()
		log := b.withSink()
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		require.Equal(t, backends.StatePending, res[0].Step.State)
		require.Equal(t, after, b.lastSeq())
		sizes, _ := log.all()
		require.Empty(t, sizes, "a write without events does not call the sink")
	})

	t.Run("ExhaustedBlocksTheTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		s := step("a")
		s.RetryLimit = 1
		task := b.create(s)
		b.claimOne("a", base)
		after := b.lastSeq()
		res := b.recover(10, at(lease))
		require.Len(t, res, 1)
		require.Equal(t, backends.StateInProgress, res[0].TaskBefore)
		require.Equal(t, []string{"a"}, res[0].ErrorSteps)
		evs := b.events(backends.EventQuery{After: after})
		require.Equal(t, []string{
			"step.lease_expired a#1 blocked",
			"workflow.task_finalized error",
			"task.failed [a]",
		}, describe(evs))
		b.checkTaskEvents(task, evs, 1)
	})
}

// An operator action that leaves only a blocked step moves the task to
// error: task.failed names the steps in error.
func testOperatorErrorEvents(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	task := b.create(step("a"), step("b"))
	b.fail(b.claimOne("a", base), false, nil, base)
	after := b.lastSeq()
	log := b.withSink()
	ch, err := b.store.CancelStep(b.ctx, &backends.CancelStepParams{StepID: b.step(task.ID, "b").ID, Now: at(time.Second)})
	require.NoError(t, err)
	require.Equal(t, backends.StateError, ch.Task.State)
	require.Equal(t, backends.StateInProgress, ch.TaskBefore)
	require.Equal(t, []string{"a"}, ch.ErrorSteps)
	evs := b.events(backends.EventQuery{After: after})
	require.Equal(t, []string{
		"step.cancelled b#0",
		"workflow.task_finalized error",
		"task.failed [a]",
	}, describe(evs))
	require.Equal(t, seqRange(after+1, after+3), seqs(evs))
	b.checkTaskEvents(task, evs, 3)
	sizes, sunk := log.all()
	require.Equal(t, []int{3}, sizes)
	requireSameEvents(t, evs, sunk)

	// Resolving the task: task.resolved_manually alone.
	_, err = b.store.ResolveTask(b.ctx, &backends.ResolveTaskParams{TaskID: task.ID, Now: at(2 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, []string{"task.resolved_manually"}, describe(b.events(backends.EventQuery{After: after + 3})))
}

func testCursors(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	const hold = 30 * time.Second
	acquire := func(owner string, start int64, now time.Time) (*backends.EventCursor, bool) {
		t.Helper()
		c, ok, err := b.store.AcquireCursor(b.ctx, &backends.AcquireCursorParams{Name: "hook", Owner: owner, Start: start, Lease: hold, Now: now})
		require.NoError(t, err)
		require.Equal(t, "hook", c.Name)
		return c, ok
	}
	requireCursor := func(c *backends.EventCursor, seq int64, owner string, until *time.Time) {
		t.Helper()
		require.Equal(t, seq, c.Seq)
		require.Equal(t, owner, c.Owner)
		if until == nil {
			require.Nil(t, c.LeaseUntil)
		} else {
			require.NotNil(t, c.LeaseUntil)
			require.True(t, until.Equal(*c.LeaseUntil), "lease until %s, want %s", *c.LeaseUntil, *until)
		}
	}
	cursor := func() *backends.EventCursor {
		t.Helper()
		cs, err := b.store.ListCursors(b.ctx)
		require.NoError(t, err)
		for _, c := range cs {
			if c.Name == "hook" {
				return c
			}
		}
		t.Fatal("no cursor hook")
		return nil
	}
	cs, err := b.store.ListCursors(b.ctx)
	require.NoError(t, err)
	require.Empty(t, cs)

	// Created at Start, leased to its first owner.
	c, ok := acquire("n1", 5, base)
	require.True(t, ok)
	requireCursor(c, 5, "n1", ptr(at(hold)))
	require.True(t, base.Equal(c.UpdatedAt))
	// Renewed by its owner; Start no longer matters.
	c, ok = acquire("n1", 99, at(10*time.Second))
	require.True(t, ok)
	requireCursor(c, 5, "n1", ptr(at(10*time.Second+hold)))
	// Another owner waits while the lease is live, and sees it as it is.
	c, ok = acquire("n2", 0, at(20*time.Second))
	require.False(t, ok)
	requireCursor(c, 5, "n1", ptr(at(10*time.Second+hold)))

	// Advancing is fenced by the lease.
	err = b.store.AdvanceCursor(b.ctx, "hook", "n2", 7, at(20*time.Second))
	require.ErrorIs(t, err, backends.ErrLeaseLost)
	requireCursor(cursor(), 5, "n1", ptr(at(10*time.Second+hold)))
	require.NoError(t, b.store.AdvanceCursor(b.ctx, "hook", "n1", 7, at(20*time.Second)))
	c = cursor()
	requireCursor(c, 7, "n1", ptr(at(10*time.Second+hold)))
	require.True(t, at(20*time.Second).Equal(c.UpdatedAt))
	err = b.store.AdvanceCursor(b.ctx, "nope", "n1", 7, at(20*time.Second))
	require.ErrorIs(t, err, backends.ErrNotFound)

	// At its end the lease is over: its owner can no longer advance, and
	// another owner takes the cursor where it is.
	expiry := at(10*time.Second + hold)
	err = b.store.AdvanceCursor(b.ctx, "hook", "n1", 8, expiry)
	require.ErrorIs(t, err, backends.ErrLeaseLost)
	c, ok = acquire("n2", 0, expiry)
	require.True(t, ok)
	requireCursor(c, 7, "n2", ptr(expiry.Add(hold)))
	err = b.store.AdvanceCursor(b.ctx, "hook", "n1", 8, expiry)
	require.ErrorIs(t, err, backends.ErrLeaseLost)

	// An operator's reset moves it back and ends the lease, whoever held it.
	require.NoError(t, b.store.ResetCursor(b.ctx, "hook", 3, expiry.Add(time.Second)))
	c = cursor()
	requireCursor(c, 3, "", nil)
	require.True(t, expiry.Add(time.Second).Equal(c.UpdatedAt))
	err = b.store.AdvanceCursor(b.ctx, "hook", "n2", 4, expiry.Add(time.Second))
	require.ErrorIs(t, err, backends.ErrLeaseLost)
	c, ok = acquire("n1", 0, expiry.Add(2*time.Second))
	require.True(t, ok)
	requireCursor(c, 3, "n1", ptr(expiry.Add(2*time.Second+hold)))

	// A reset creates a cursor; the list is by name.
	require.NoError(t, b.store.ResetCursor(b.ctx, "archive", 0, base))
	require.NoError(t, b.store.ResetCursor(b.ctx, "zeta", 12, base))
	cs, err = b.store.ListCursors(b.ctx)
	require.NoError(t, err)
	require.Len(t, cs, 3)
	require.Equal(t, []string{"archive", "hook", "zeta"}, []string{cs[0].Name, cs[1].Name, cs[2].Name})
	requireCursor(cs[0], 0, "", nil)
	requireCursor(cs[1], 3, "n1", ptr(expiry.Add(2*time.Second+hold)))
	requireCursor(cs[2], 12, "", nil)
	require.True(t, base.Equal(cs[2].UpdatedAt))
}

func testDeadLetters(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	// Real events to give up on.
	b.create(step("a"), step("b"))
	b.claim(2, base)
	require.GreaterOrEqual(t, b.lastSeq(), int64(5))
	letters := []*backends.DeadLetter{
		{Cursor: "hook", Seq: 4, Attempts: 5, LastError: "HTTP 500", CreatedAt: at(time.Minute)},
		{Cursor: "hook", Seq: 2, Attempts: 3, LastError: "timeout", CreatedAt: at(2 * time.Minute)},
		{Cursor: "other", Seq: 2, Attempts: 1, LastError: "refused", CreatedAt: at(3 * time.Minute)},
		{Cursor: "hook", Seq: 5, Attempts: 5, LastError: "HTTP 502", CreatedAt: at(4 * time.Minute)},
	}
	for _, d := range letters {
		require.NoError(t, b.store.AddDeadLetter(b.ctx, d))
	}
	list := func(cursor string, limit int) []*backends.DeadLetter {
		t.Helper()
		ds, err := b.store.ListDeadLetters(b.ctx, cursor, limit)
		require.NoError(t, err)
		return ds
	}
	requireLetters := func(want, got []*backends.DeadLetter) {
		t.Helper()
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, want[i].Cursor, got[i].Cursor)
			require.Equal(t, want[i].Seq, got[i].Seq)
			require.Equal(t, want[i].Attempts, got[i].Attempts)
			require.Equal(t, want[i].LastError, got[i].LastError)
			require.True(t, want[i].CreatedAt.Equal(got[i].CreatedAt))
		}
	}
	requireLetters([]*backends.DeadLetter{letters[1], letters[0], letters[3]}, list("hook", 0))
	requireLetters([]*backends.DeadLetter{letters[1], letters[0]}, list("hook", 2))
	requireLetters([]*backends.DeadLetter{letters[2]}, list("other", 0))
	require.Empty(t, list("none", 0))
}
