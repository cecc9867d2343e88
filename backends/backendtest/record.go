package backendtest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testRecord(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("ConcurrentResults", func(t *testing.T) { testConcurrentResults(t, newStore) })
	t.Run("CompleteStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		c := b.claimOne("a", base)
		done := at(3 * time.Second)
		res := b.complete(c, done)
		s := res.Step
		require.Equal(t, backends.StateComplete, s.State)
		require.True(t, s.Processed)
		require.Equal(t, done, *s.ProcessedAt)
		require.Equal(t, done, *s.LastAttemptedAt)
		require.JSONEq(t, `{"step":"a"}`, string(s.Results))
		require.Nil(t, s.LeaseExpiresAt)
		require.Empty(t, s.LeaseOwner)
		require.Equal(t, backends.DecisionContinue, res.Decision)
		require.Equal(t, backends.StatusHasReadySteps, res.Context.ExecutionStatus) // b is ready now
		require.Equal(t, backends.StateInProgress, res.Task.State)
		b.checkTransitions(task.ID)
	})

	t.Run("CompleteStepNilResultsIsEmptyObject", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a"))
		c := b.claimOne("a", base)
		res, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: base})
		require.NoError(t, err)
		require.JSONEq(t, `{}`, string(res.Step.Results))
		require.Equal(t, backends.DecisionComplete, res.Decision)
		require.Equal(t, backends.StateComplete, res.Task.State)
	})

	t.Run("FailStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		c := b.claimOne("a", base)
		failed := at(7 * time.Second)
		res := b.fail(c, true, ptr(42), failed)
		s := res.Step
		require.Equal(t, backends.StateError, s.State)
		require.Equal(t, failed, *s.LastAttemptedAt)
		require.Equal(t, failed, *s.LastFailureAt)
		require.Equal(t, 42, *s.BackoffRequestSeconds)
		require.True(t, s.Retryable)
		require.False(t, s.Processed)
		require.Nil(t, s.LeaseExpiresAt)
		var se backends.StepError
		require.NoError(t, json.Unmarshal(s.Error, &se))
		require.Equal(t, backends.StepError{Message: "boom", Retryable: true, Kind: backends.ErrorKindHandler}, se)
		require.Equal(t, backends.DecisionContinue, res.Decision)
		// LastFailureAt is the time of the transition into error.
		trs := b.transitions(task.ID)
		last := trs[len(trs)-1]
		require.Equal(t, backends.StateError, last.To)
		require.Equal(t, *s.LastFailureAt, last.CreatedAt)
		b.checkTransitions(task.ID)
	})

	t.Run("StaleTokenIsLeaseLostAndChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		old := b.claimOne("a", base)
		_, err := b.store.RecoverExpiredLeases(b.ctx, &backends.RecoverParams{Limit: 1, Now: at(lease)})
		require.NoError(t, err)

		// Recovered but not yet claimed again: the old token is stale.
		before := b.snapshot(task.ID)
		_, err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: old.Step.ID, LeaseToken: old.Step.LeaseToken, Now: at(lease)})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		b.requireUnchanged(before)

		// Claimed again by another worker: still stale, for both writes.
		fresh := b.claimOne("a", at(lease+2*time.Second))
		before = b.snapshot(task.ID)
		_, err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: old.Step.ID, LeaseToken: old.Step.LeaseToken, Now: at(lease + 3*time.Second)})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		_, err = b.store.FailStep(b.ctx, &backends.FailStepParams{StepID: old.Step.ID, LeaseToken: old.Step.LeaseToken,
			Error: backends.StepError{Message: "late", Retryable: true, Kind: backends.ErrorKindHandler}, Now: at(lease + 3*time.Second)})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		b.requireUnchanged(before)

		// The current holder's write applies; repeating it is stale too.
		b.complete(fresh, at(lease+4*time.Second))
		before = b.snapshot(task.ID)
		_, err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: fresh.Step.ID, LeaseToken: fresh.Step.LeaseToken, Now: at(lease + 5*time.Second)})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		b.requireUnchanged(before)
	})

	t.Run("WrongTokenOnAPendingStep", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"))
		s := b.step(task.ID, "a")
		before := b.snapshot(task.ID)
		_, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: s.ID, LeaseToken: s.LeaseToken, Now: base})
		require.ErrorIs(t, err, backends.ErrLeaseLost)
		b.requireUnchanged(before)
	})

	t.Run("FinalizeComplete", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"))
		b.run("a", base)
		res := b.run("b", at(time.Second))
		require.Equal(t, backends.DecisionComplete, res.Decision)
		require.Equal(t, backends.StateComplete, res.Task.State)
		require.Equal(t, backends.StatusAllComplete, res.Context.ExecutionStatus)
		require.Equal(t, []string{">pending", "pending>in_progress", "in_progress>complete"}, b.moves(task.ID, 0))
		require.Nil(t, b.nextWakeup(at(time.Second)))
	})

	t.Run("FinalizeErrorLeavesUnrunStepsPending", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b", "a"), step("c", "b"))
		res := b.fail(b.claimOne("a", base), false, nil, base)
		require.Equal(t, backends.DecisionError, res.Decision)
		require.Equal(t, backends.StateError, res.Task.State)
		require.Equal(t, backends.StatePending, b.step(task.ID, "b").State)
		require.Equal(t, backends.StatePending, b.step(task.ID, "c").State)
		b.checkTransitions(task.ID)
	})

	t.Run("CancelRequestedWhileRunning", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		task := b.create(step("a"), step("b"))
		a := b.claimOne("a", base)
		bb := b.claimOne("b", base)
		ch, err := b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: task.ID, Reason: "operator", Now: base})
		require.NoError(t, err)
		require.ElementsMatch(t, []int64{a.Step.ID, bb.Step.ID}, ch.CancelRequested)
		require.Empty(t, ch.Steps)
		require.Equal(t, backends.StateCancelled, ch.Task.State)

		res := b.complete(a, at(time.Second))
		require.Equal(t, backends.StateCancelled, res.Step.State)
		require.Equal(t, backends.DecisionNone, res.Decision)
		require.False(t, res.Step.CancelRequested)
		require.Nil(t, res.Step.LeaseExpiresAt)
		res = b.fail(bb, true, nil, at(time.Second))
		require.Equal(t, backends.StateCancelled, res.Step.State)
		require.Equal(t, backends.DecisionNone, res.Decision)
		require.Equal(t, backends.StateCancelled, res.Task.State)
		// Whatever the handler reported, the step stopped because it was
		// cancelled: kind cancelled, not retryable, the message kept.
		var se backends.StepError
		require.NoError(t, json.Unmarshal(res.Step.Error, &se))
		require.Equal(t, backends.StepError{Message: "boom", Retryable: false, Kind: backends.ErrorKindCancelled}, se)
		b.checkTransitions(task.ID)

		// So does a step whose cancel was requested and whose node died.
		t2 := b.create(step("c"))
		c := b.claimOne("c", base)
		_, err = b.store.CancelTask(b.ctx, &backends.CancelTaskParams{TaskID: t2.ID, Now: base})
		require.NoError(t, err)
		rrs := b.recover(10, at(time.Hour))
		require.Len(t, rrs, 1)
		require.Equal(t, c.Step.ID, rrs[0].Step.ID)
		require.Equal(t, backends.StateCancelled, rrs[0].Step.State)
		require.NoError(t, json.Unmarshal(rrs[0].Step.Error, &se))
		require.Equal(t, backends.ErrorKindCancelled, se.Kind)
		require.False(t, se.Retryable)
	})
}

// testConcurrentResults: many workers' results at once, as a store may
// write them together (PostgreSQL batches them), including two results of
// one task and a stale duplicate. Each result must be written once, each
// task finalized from what every committed result wrote, and the second of
// two results of one task must see the first.
func testConcurrentResults(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Parallel()
	b := setup(t, newStore)
	const joins, failing = 8, 2 // the last `failing` joins fail b permanently
	var tasks []*backends.Task
	for range joins {
		tasks = append(tasks, b.create(step("a"), step("b"), step("c", "a", "b")))
	}
	claims := b.claim(4*joins, at(time.Second))
	require.Len(t, claims, 2*joins)

	type outcome struct {
		taskID int64
		res    *backends.RecordResult
		err    error
	}
	record := func(claims []*backends.Claim, now time.Time, stale *backends.Claim) []outcome {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			out   = make([]outcome, len(claims)+1)
		)
		call := func(i int, c *backends.Claim, token int64) {
			defer wg.Done()
			<-start
			out[i].taskID = c.Step.TaskID
			if c.Step.Name == "b" && c.Step.TaskID > tasks[joins-failing-1].ID {
				out[i].res, out[i].err = b.store.FailStep(b.ctx, &backends.FailStepParams{
					StepID: c.Step.ID, LeaseToken: token, Now: now,
					Error: backends.StepError{Message: "no", Retryable: false, Kind: backends.ErrorKindPermanent},
				})
				return
			}
			out[i].res, out[i].err = b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{
				StepID: c.Step.ID, LeaseToken: token, Results: json.RawMessage(`{"step":"` + c.Step.Name + `"}`), Now: now,
			})
		}
		for i, c := range claims {
			wg.Add(1)
			go call(i, c, c.Step.LeaseToken)
		}
		if stale != nil {
			wg.Add(1)
			go call(len(claims), stale, stale.Step.LeaseToken-1)
		}
		close(start)
		wg.Wait()
		if stale == nil {
			out = out[:len(claims)]
		}
		return out
	}

	// Round 1: a and b of every task at once, and a stale result for one a.
	out := record(claims, at(2*time.Second), claims[0])
	stale := out[len(out)-1]
	require.ErrorIs(t, stale.err, backends.ErrLeaseLost)
	byTask := map[int64][]*backends.RecordResult{}
	for _, o := range out[:len(out)-1] {
		require.NoError(t, o.err)
		byTask[o.taskID] = append(byTask[o.taskID], o.res)
	}
	for i, task := range tasks {
		rs := byTask[task.ID]
		require.Len(t, rs, 2)
		completed := []int{rs[0].Context.CompletedSteps, rs[1].Context.CompletedSteps}
		failed := []int{rs[0].Context.FailedSteps, rs[1].Context.FailedSteps}
		if i < joins-failing {
			// Whichever was written second saw both parents complete.
			require.ElementsMatch(t, []int{1, 2}, completed, "task %d", task.ID)
			last := rs[0]
			if rs[1].Context.CompletedSteps == 2 {
				last = rs[1]
			}
			require.Equal(t, backends.StatusHasReadySteps, last.Context.ExecutionStatus)
			require.Equal(t, 1, last.Context.ReadySteps)
			require.Equal(t, backends.StateInProgress, b.task(task.ID).State)
		} else {
			// Whichever was written second saw both outcomes.
			require.Contains(t, []int{completed[0] + failed[0], completed[1] + failed[1]}, 2, "task %d", task.ID)
			require.Equal(t, backends.StateError, b.task(task.ID).State)
		}
		b.checkTransitions(task.ID)
	}

	// Round 2: every c (each task's only result) at once.
	cs := b.claim(4*joins, at(3*time.Second))
	require.Len(t, cs, joins-failing)
	for _, o := range record(cs, at(4*time.Second), nil) {
		require.NoError(t, o.err)
		require.Equal(t, backends.DecisionComplete, o.res.Decision)
		require.Equal(t, backends.StateComplete, o.res.Task.State)
		require.Equal(t, backends.StateComplete, b.task(o.taskID).State)
		b.checkTransitions(o.taskID)
	}
}
