package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/internal/customevent"
)

// Why a handler's context was cancelled (context.Cause).
var (
	errCancelRequested = errors.New("step cancelled by an operator")
	errLeaseLost       = errors.New("lease lost: another node owns the step now")
	errStepTimeout     = errors.New("step timed out")
	errAbandoned       = errors.New("engine stopped; step abandoned")
	errReleased        = errors.New("engine stopped before the step's handler started; step released")
)

// handlerGrace is how long the engine waits, after a handler's context is
// done, for the handler to return before it records the outcome without it.
// A handler that ignores its context must not hold its step forever.
const handlerGrace = 2 * time.Second

// A result write that fails for the database's own reasons is tried
// recordTries times, recordRetryDelay apart (doubling).
const (
	recordTries      = 3
	recordRetryDelay = 100 * time.Millisecond
)

// execution is one claimed step running on this node.
// It may wait for a free worker first (Config.ClaimAhead); its timeout
// starts with its handler.
type execution struct {
	claim     *backends.Claim
	token     int64
	ctx       context.Context // cancelled by an operator, a lost lease, abandonment or release
	cancel    context.CancelCauseFunc
	abandoned atomic.Bool
	// queued: claimed into a place that waits for a worker; its handler
	// has not started, as far as the store knows, until StartStep.
	queued bool

	// Guarded by Engine.mu.
	// leaseUntil is this node's own bound on its lease: the instant taken
	// before the last write that set or extended it (claim, StartStep,
	// heartbeat), plus the lease. Past it, another node may own the step.
	leaseUntil time.Time
	// hasWorker: a queued execution got a worker; released: shutdown gave
	// the step back before it did.
	hasWorker, released bool
}

// Run is the worker pool. It claims as many ready steps as it has free
// workers plus Config.ClaimAhead (steps that wait for a worker), runs each
// in its own goroutine, records results, heartbeats its
// leases, recovers expired ones, and sleeps while there is nothing to do
// until it is woken (a task created, a step recorded, an operator action of
// this engine, or, on a store shared by several nodes, another node's
// notification), the store's next wake-up instant arrives, or SafetyPoll
// passes.
//
// When ctx is done Run stops claiming, lets running handlers finish for up
// to ShutdownGrace (still heartbeating and recording them), abandons the
// rest (their results are not recorded; their leases expire and are
// recovered), and returns nil. It returns an error only if it is already
// running.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.active {
		e.mu.Unlock()
		return errors.New("engine: Run is already running")
	}
	e.active = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.active = false
		e.mu.Unlock()
	}()

	// Handlers and the writes of their results outlive ctx: shutdown waits
	// for them rather than cutting them off.
	base := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	hbCtx, hbStop := context.WithCancel(base)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		e.heartbeatLoop(hbCtx)
	}()
	// Work other nodes commit wakes this one (PostgreSQL's LISTEN).
	wakeCtx, wakeStop := context.WithCancel(ctx)
	defer wakeStop()
	if src, ok := e.store.(backends.WakeupSource); ok {
		go e.listenWakeups(wakeCtx, src)
	}

	e.log.Info("engine started", "node", e.nodeID, "workers", e.workers, "lease", e.lease)
	lastRecover := time.Time{}
	e.wakeKnown = false
	for ctx.Err() == nil {
		// Recover expired leases at most once per poll interval, or when a
		// timer set for a lease expiry fired (lastRecover reset below).
		// Only the cluster's leader does it (Config.Leader).
		if time.Since(lastRecover) >= min(e.poll, e.lease/3) && e.leads() {
			e.recoverLeases(ctx)
			lastRecover = time.Now()
		}
		wait := e.poll
		// Claim ahead: steps that wait for a worker are started the moment
		// one is free, without waiting for a claim's round trip.
		free := e.workers + e.claimAhead - e.runningCount()
		if free > 0 {
			// Workers free now take the first claims at once; the rest of
			// the claims wait for a worker, and the store knows which.
			idle := e.reserveWorkers(free)
			// One instant for the claim and the wake-up question: a backoff
			// that ends between the two would otherwise be missed by both.
			// The claim is not cut off by a stop: one that committed just
			// as ctx ended must hand its steps to workers (or give them
			// back, if queued), not leave them leased to nobody until the
			// lease expires and the attempt is lost. A claim slower than a
			// lease is pointless anyway.
			claimCtx, claimCancel := context.WithTimeout(base, e.lease)
			claimed, now, err := e.claim(claimCtx, base, free, free-idle)
			claimCancel()
			started := 0
			for _, x := range claimed {
				if !x.queued {
					started++
				}
			}
			e.unreserveWorkers(idle - started)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Error("claiming steps", "node", e.nodeID, "err", err)
				}
				wait = time.Second
			} else {
				for _, x := range claimed {
					wg.Add(1)
					go e.execute(base, x, &wg)
				}
				// There may be more ready steps than there were free workers.
				if len(claimed) == free {
					continue
				}
				next := e.nextWakeup(ctx, now, len(claimed) > 0)
				if next != nil {
					// The store says when waiting work becomes claimable (a
					// backoff ends) or recoverable (a lease expires).
					d := max(next.Sub(e.now()), time.Millisecond)
					if next.Sub(now) < wait {
						wait = d
						lastRecover = time.Time{}
					}
				}
			}
		}
		e.log.Debug("idle", "node", e.nodeID, "wait", wait, "free", free)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-timer.C:
		}
		timer.Stop()
	}

	// Steps claimed ahead that have no worker yet are given back now, their
	// attempts not counted: a node stopped (or restarted in a loop) must not
	// burn attempts of steps it never ran.
	e.releaseLeases(e.releaseQueued())
	e.log.Info("engine stopping", "node", e.nodeID, "running", e.runningCount(), "grace", e.grace)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(e.grace)
	select {
	case <-done:
	case <-grace.C:
		e.releaseLeases(e.abandonAll())
	}
	grace.Stop()
	hbStop()
	<-hbDone
	e.log.Info("engine stopped", "node", e.nodeID)
	return nil
}

// nextWakeup is the store's next wake-up instant (NextWakeup) after now.
// While the loop is busy (busy: the claim found work, whose end will wake
// it) it answers from the last question's answer, unless this node
// recorded something since that may have moved the instant earlier (a
// failure, with its backoff; a lease recovery; an operator action), or the
// answer's instant has passed. An answer is never later than the truth for
// what this node did: claims and completions only remove or postpone
// instants. What other nodes did is learned when the loop is next idle, or
// after SafetyPoll, as when every claim is full.
func (e *Engine) nextWakeup(ctx context.Context, now time.Time, busy bool) *time.Time {
	if busy && e.wakeKnown && !e.wakeDirty.Load() && (e.wakeNext == nil || e.wakeNext.After(now)) {
		return e.wakeNext
	}
	// Cleared before asking: what is recorded meanwhile asks again.
	e.wakeDirty.Store(false)
	next, err := e.store.NextWakeup(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("reading next wake-up", "node", e.nodeID, "err", err)
		}
		e.wakeKnown = false
		return nil
	}
	e.wakeKnown, e.wakeNext = true, next
	return next
}

// reserveWorkers takes up to n workers that are free now, without waiting,
// and says how many it took. A worker is never taken from a queued
// execution waiting for one: those wait in the channel's send queue, which
// a free place goes to first.
func (e *Engine) reserveWorkers(n int) int {
	for i := 0; i < n; i++ {
		select {
		case e.slots <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

// unreserveWorkers frees n reserved workers that no claim took.
func (e *Engine) unreserveWorkers(n int) {
	for range n {
		<-e.slots
	}
}

// releaseQueued gives up, at shutdown, the executions still waiting for a
// worker: their handlers will not start. It returns their leases.
func (e *Engine) releaseQueued() []backends.Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	var leases []backends.Lease
	for id, x := range e.running {
		if !x.queued || x.hasWorker {
			continue
		}
		x.released = true
		x.cancel(errReleased)
		delete(e.running, id)
		leases = append(leases, backends.Lease{StepID: id, Token: x.token})
		e.log.Info("giving back a step whose handler has not started", "task_id", x.claim.Step.TaskID, "step", x.claim.Step.Name, "attempt", x.claim.Step.Attempts)
	}
	return leases
}

func (e *Engine) runningCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running)
}

// abandonAll gives up the steps still running at the end of the grace
// period: their results will not be recorded. It returns their leases.
func (e *Engine) abandonAll() []backends.Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	var leases []backends.Lease
	for id, x := range e.running {
		leases = append(leases, backends.Lease{StepID: id, Token: x.token})
		x.abandoned.Store(true)
		x.cancel(errAbandoned)
		delete(e.running, id)
		e.log.Warn("abandoning step at shutdown", "task_id", x.claim.Step.TaskID, "step", x.claim.Step.Name, "attempt", x.claim.Step.Attempts)
	}
	return leases
}

// releaseLeases ends the leases of abandoned or released steps now instead
// of at their expiry, and recovers them at once (an abandoned attempt fails
// as lease_expired and is retried under its retry policy; a step whose
// handler never started goes back to pending, its attempt not counted), so
// that no step waits a lease out for a node that has stopped. If the database cannot be reached the
// leases simply expire as they would after a crash.
func (e *Engine) releaseLeases(leases []backends.Lease) {
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.store.ExtendLeases(ctx, &backends.ExtendLeasesParams{
		Owner: e.nodeID, Leases: leases, LeaseDuration: 0, Now: e.now(),
	}); err != nil {
		e.log.Error("releasing leases at shutdown; they will expire instead", "node", e.nodeID, "leases", len(leases), "err", err)
		return
	}
	e.recoverLeases(ctx)
}

// claim claims up to limit steps, registers them as running and hands
// their events to the gate, which publishes them after the events of every
// write the claim may have seen and before those of any later write (the
// claimed steps' results among them); a write whose instant is later than
// the claim's waits for the claim's store call, so a child never starts
// before its parent ended.
func (e *Engine) claim(ctx, base context.Context, limit, queued int) ([]*execution, time.Time, error) {
	now := e.gate.startClaim(e.now)
	cctx, wrote := e.collect(ctx)
	claims, err := e.store.ClaimSteps(cctx, &backends.ClaimStepsParams{
		Owner:  e.nodeID,
		Limit:  limit,
		Queued: queued,
		// The catalog as loaded now (SetCatalog may replace it between
		// claims): its workflows' concurrency limits, which the store
		// enforces across every node.
		Limits:        e.Catalog().ConcurrencyLimits(),
		LeaseDuration: e.lease,
		Now:           now,
	})
	if err != nil {
		e.gate.endClaim(e.publish, nil)
		return nil, now, fmt.Errorf("claiming up to %d steps for node %s: %w", limit, e.nodeID, err)
	}
	if len(claims) == 0 {
		e.gate.endClaim(e.publish, nil)
		return nil, now, nil
	}
	var execs []*execution
	e.mu.Lock()
	for _, c := range claims {
		xctx, cancel := context.WithCancelCause(base)
		x := &execution{claim: c, token: c.Step.LeaseToken, ctx: xctx, cancel: cancel,
			queued: c.Step.StartedAt == nil, leaseUntil: now.Add(e.lease)}
		e.running[c.Step.ID] = x
		execs = append(execs, x)
	}
	e.mu.Unlock()

	events := wrote.all()
	e.gate.endClaim(e.publish, events)
	return execs, now, nil
}

type outcome struct {
	result json.RawMessage
	err    error
}

// execute runs one claimed step's handler and records the outcome.
func (e *Engine) execute(base context.Context, x *execution, wg *sync.WaitGroup) {
	defer wg.Done()
	defer e.Wake() // a claim slot is free, and the result may have made steps ready
	defer func() {
		e.mu.Lock()
		if e.running[x.claim.Step.ID] == x {
			delete(e.running, x.claim.Step.ID)
		}
		e.mu.Unlock()
	}()

	s := x.claim.Step
	var (
		out    outcome
		cause  error
		events *customevent.Collector // the handler's custom events (Emit)
	)
	if e.waitForWorker(x) {
		switch start, stopped := e.startHandler(base, x); {
		case start:
			// The handler runs, and its timeout starts now.
			timeout := s.Timeout
			if timeout <= 0 {
				timeout = definition.DefaultTimeout
			}
			deadline := time.Now().Add(timeout)
			hctx, stop := context.WithDeadlineCause(x.ctx, deadline, errStepTimeout)
			hctx, events = collectEvents(hctx)
			hctx, span := e.startAttemptSpan(hctx, x.claim)
			out = e.callHandler(x, hctx, deadline)
			cause = context.Cause(hctx)
			endAttemptSpan(span, out, cause)
			stop()
		case stopped != nil:
			cause, out = stopped, outcome{err: stopped}
		default:
			<-e.slots
			return // not ours any more, or not known to be: nothing to record
		}
		<-e.slots
	} else {
		// Cancelled, lease lost, abandoned or released while waiting for a
		// worker: the handler never ran, and the outcome is what stopped it.
		cause = context.Cause(x.ctx)
		out = outcome{err: cause}
	}
	if x.abandoned.Load() || errors.Is(cause, errReleased) {
		return
	}
	if errors.Is(cause, errLeaseLost) {
		e.log.Warn("step lease lost while running; result dropped", "task_id", s.TaskID, "step", s.Name, "attempt", s.Attempts)
		return
	}

	var (
		stepErr backends.StepError
		backoff *int
		failed  = out.err != nil
		result  = out.result
	)
	switch {
	case failed && errors.Is(cause, errStepTimeout):
		stepErr = backends.StepError{
			Message:   fmt.Sprintf("step %s timed out after %s", s.Name, s.Timeout),
			Retryable: true,
			Kind:      backends.ErrorKindTimeout,
		}
	case failed && errors.Is(cause, errCancelRequested):
		// The store records it as cancelled whatever it is told; the
		// message should say so too, not "context canceled".
		stepErr = backends.StepError{
			Message:   fmt.Sprintf("step %s cancelled while running: %v", s.Name, out.err),
			Retryable: false,
			Kind:      backends.ErrorKindCancelled,
		}
	case failed:
		stepErr, backoff = failureFromError(out.err)
	default:
		if len(result) == 0 || string(result) == "null" {
			result = json.RawMessage("{}")
		} else if err := backends.CheckJSON(result); err != nil {
			// Stored, it would be refused by one backend and kept by the
			// other: the attempt fails instead, the same on both.
			failed = true
			stepErr = backends.StepError{
				Message:   fmt.Sprintf("handler %s returned a result that cannot be stored: %v", s.Handler, err),
				Retryable: true,
				Kind:      backends.ErrorKindInvalidResult,
			}
		} else if f := e.checkResult(x.claim, result); f != nil {
			failed, stepErr = true, *f
		}
	}
	var handlerErr *backends.StepError
	if failed {
		handlerErr = &stepErr
	}
	custom, refused := e.attemptEvents(x.claim, events, handlerErr)
	if refused != nil {
		failed, stepErr, backoff = true, *refused, nil
	}
	// What a handler said about its failure is stored as said, where every
	// backend can hold it.
	stepErr.Message, stepErr.Kind = backends.SanitizeText(stepErr.Message), backends.SanitizeText(stepErr.Kind)

	// The outcome was reached now: both outcomes set last_attempted_at to
	// the moment the attempt ended, whatever the write's retries take.
	now := e.now()
	for try := 0; ; try++ {
		w := e.gate.begin(now)
		var (
			rr  *backends.RecordResult
			err error
		)
		wctx, wrote := e.collect(base)
		if failed {
			rr, err = e.store.FailStep(wctx, &backends.FailStepParams{StepID: s.ID, LeaseToken: x.token, Error: stepErr, BackoffSeconds: backoff, Events: custom, Now: now})
		} else {
			rr, err = e.store.CompleteStep(wctx, &backends.CompleteStepParams{StepID: s.ID, LeaseToken: x.token, Results: result, Events: custom, Now: now})
		}
		if failed {
			e.wakeDirty.Store(true) // once written: the claim loop asks again
		}
		if err == nil {
			events := wrote.all()
			e.logLifecycle(events, rr.Task)
			w.end(e.publish, events)
			return
		}
		w.end(e.publish, nil)
		switch {
		case errors.Is(err, backends.ErrLeaseLost):
			e.log.Warn("step lease lost before its result was recorded; result dropped", "task_id", s.TaskID, "step", s.Name, "attempt", s.Attempts)
			return
		case errors.Is(err, backends.ErrNotFound), errors.Is(err, backends.ErrInvalidTransition), try == recordTries-1:
			// Nothing was written: the lease will expire and the step be
			// recovered and retried under the normal rules.
			e.log.Error("recording step result", "task_id", s.TaskID, "step", s.Name, "attempt", s.Attempts, "err", err)
			return
		}
		// The database's own failure (busy, connection lost): the lease is
		// still ours for a while, so try again before giving the attempt up.
		e.log.Warn("recording step result failed; retrying", "task_id", s.TaskID, "step", s.Name, "attempt", s.Attempts, "err", err)
		time.Sleep(recordRetryDelay << try)
	}
}

// waitForWorker gets an execution its worker: at once for one claimed into
// a place that starts now (its worker was reserved for it), else when one
// frees up. False when the execution's context ended first (or shutdown
// released it meanwhile); then it holds no worker.
func (e *Engine) waitForWorker(x *execution) bool {
	if !x.queued {
		return true
	}
	select {
	case e.slots <- struct{}{}:
	case <-x.ctx.Done():
		return false
	}
	e.mu.Lock()
	released := x.released
	x.hasWorker = !released
	e.mu.Unlock()
	if released {
		<-e.slots
		return false
	}
	return true
}

// startHandler decides, with a worker in hand, whether the handler may
// start: only while this node's lease is live by its own clock. A claim
// that waited for a worker, or whose lease is older than a heartbeat period
// (the node was paused or starved since, say), is first confirmed in the
// store with StartStep, a fenced write that also extends the lease and, for
// a step that waited, records that its handler started (a lease recovered
// later then counts the attempt). It answers start, or the cause that
// stopped the step (a cancel requested meanwhile; record it), or neither:
// the step is not ours any more, or the store could not say (its lease
// will expire and the step be recovered), and nothing is recorded.
func (e *Engine) startHandler(ctx context.Context, x *execution) (start bool, stopped error) {
	s := x.claim.Step
	now := e.now()
	e.mu.Lock()
	until := x.leaseUntil
	e.mu.Unlock()
	if !x.queued && now.Before(until.Add(-e.lease/3)) {
		return true, nil
	}
	cancelRequested, err := e.store.StartStep(ctx, &backends.StartStepParams{
		StepID: s.ID, LeaseToken: x.token, Owner: e.nodeID, LeaseDuration: e.lease, Now: now,
	})
	switch {
	case errors.Is(err, backends.ErrLeaseLost):
		e.log.Warn("step lease lost before its handler started; not starting it", "task_id", s.TaskID, "step", s.Name, "attempt", s.Attempts)
		return false, nil
	case err != nil:
		e.log.Error("confirming a step's lease before its handler; not starting it (the lease will expire and the step be recovered)",
			"task", s.TaskID, "step", s.Name, "attempt", s.Attempts, "err", err)
		return false, nil
	case cancelRequested:
		return false, errCancelRequested
	}
	e.mu.Lock()
	if until := now.Add(e.lease); until.After(x.leaseUntil) {
		x.leaseUntil = until
	}
	e.mu.Unlock()
	return true, nil
}

// callHandler runs the handler, turning a panic into a failure and giving
// up on a handler that does not return within handlerGrace of its context
// ending.
func (e *Engine) callHandler(x *execution, ctx context.Context, deadline time.Time) outcome {
	c, s := x.claim, x.claim.Step
	h, ok := e.registry.Lookup(s.Handler)
	if !ok {
		// Retrying on this node cannot help, and retrying at once would
		// burn the step's attempts: it blocks until an operator, once the
		// plugin is configured, retries it.
		return outcome{err: &StepFailure{Kind: backends.ErrorKindHandlerMissing, Retryable: false,
			Message: fmt.Sprintf("no handler %q is registered on node %s: %s; then retry the step",
				s.Handler, e.nodeID, UnavailableReason([]string{s.Handler}))}}
	}
	req := &StepRequest{
		TaskID:         s.TaskID,
		StepID:         s.ID,
		StepName:       s.Name,
		Handler:        s.Handler,
		Attempt:        s.Attempts,
		Context:        c.Task.Context,
		Config:         s.Config,
		ParentResults:  c.ParentResults,
		Deadline:       deadline,
		IdempotencyKey: IdempotencyKey(s.TaskID, s.Name),
	}
	if req.ParentResults == nil {
		req.ParentResults = map[string]json.RawMessage{}
	}
	// The lease's bound, as a real instant for a plugin's clock (the
	// engine's may be a test's).
	e.mu.Lock()
	now, until := e.now(), x.leaseUntil
	e.mu.Unlock()
	if !now.Before(until) {
		// Paused or starved since startHandler said yes: the step may be
		// another node's by now. Its failure is fenced if so, retried
		// otherwise.
		return outcome{err: &StepFailure{Kind: backends.ErrorKindLeaseExpired, Retryable: true,
			Message: fmt.Sprintf("not started: this node's lease on the step ended at %s, before its handler was called", until.Format(time.RFC3339Nano))}}
	}
	req.StartBy = time.Now().Add(until.Sub(now))
	e.log.DebugContext(ctx, "step handler starting", "node", e.nodeID, "task_id", s.TaskID, "step", s.Name, "handler", s.Handler, "attempt", s.Attempts)
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				e.log.ErrorContext(ctx, "step handler panicked", "task_id", s.TaskID, "step", s.Name, "handler", s.Handler, "panic", r, "stack", string(debug.Stack()))
				done <- outcome{err: &StepFailure{Message: fmt.Sprintf("handler %s panicked: %v", s.Handler, r), Retryable: true}}
			}
		}()
		res, err := h.Execute(ctx, req)
		done <- outcome{result: res, err: err}
	}()
	select {
	case out := <-done:
		return out
	case <-ctx.Done():
	}
	t := time.NewTimer(handlerGrace)
	defer t.Stop()
	select {
	case out := <-done:
		return out
	case <-t.C:
		e.log.WarnContext(ctx, "step handler ignored its context; giving up on it", "task_id", s.TaskID, "step", s.Name, "handler", s.Handler, "cause", context.Cause(ctx))
		return outcome{err: context.Cause(ctx)}
	}
}

// heartbeatLoop extends this node's leases every lease/3 and stops the
// handlers whose lease was lost or whose cancel was requested.
func (e *Engine) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(max(e.lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.heartbeat(ctx)
		}
	}
}

func (e *Engine) heartbeat(ctx context.Context) {
	e.mu.Lock()
	leases := make([]backends.Lease, 0, len(e.running))
	for id, x := range e.running {
		leases = append(leases, backends.Lease{StepID: id, Token: x.token})
	}
	e.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	sentAt := e.now()
	statuses, err := e.store.ExtendLeases(ctx, &backends.ExtendLeasesParams{
		Owner: e.nodeID, Leases: leases, LeaseDuration: e.lease, Now: sentAt,
	})
	if err != nil {
		e.log.Error("extending leases", "node", e.nodeID, "leases", len(leases), "err", err)
	}
	sent := make(map[int64]int64, len(leases))
	for _, l := range leases {
		sent[l.StepID] = l.Token
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range statuses {
		x := e.running[st.StepID]
		// Only the execution whose lease was sent: the step may have
		// finished and been claimed again since.
		if x == nil || x.token != sent[st.StepID] {
			continue
		}
		switch {
		case st.Lost:
			x.cancel(errLeaseLost)
		case st.CancelRequested:
			x.cancel(errCancelRequested)
		}
		if !st.Lost && sentAt.Add(e.lease).After(x.leaseUntil) {
			x.leaseUntil = sentAt.Add(e.lease)
		}
	}
	// A lease no heartbeat has renewed in time is lost, as far as this
	// node can tell: another node may recover the step and run it.
	now := e.now()
	for _, x := range e.running {
		if !now.Before(x.leaseUntil) && x.ctx.Err() == nil {
			e.log.Warn("no heartbeat renewed a step's lease in time; stopping its handler", "task_id", x.claim.Step.TaskID, "step", x.claim.Step.Name, "attempt", x.claim.Step.Attempts, "lease_until", x.leaseUntil)
			x.cancel(errLeaseLost)
		}
	}
}

// recoverLeases fails the steps whose lease expired (their node died or
// hung), each with its finalize, and publishes what happened.
func (e *Engine) recoverLeases(ctx context.Context) {
	_, _ = e.recoverWith(ctx, "recovering expired leases", func(ctx context.Context, now time.Time) ([]*backends.RecordResult, error) {
		return e.store.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: e.recoverN, Now: now})
	})
}

// recoverWith runs a lease recovery (recover: the store call, at now),
// logs and publishes what it wrote, and says how many steps it recovered.
func (e *Engine) recoverWith(ctx context.Context, what string, recover func(ctx context.Context, now time.Time) ([]*backends.RecordResult, error)) (int, error) {
	w, now := e.gate.beginNow(e.now)
	rctx, wrote := e.collect(ctx)
	rrs, err := recover(rctx, now)
	if len(rrs) > 0 {
		e.wakeDirty.Store(true) // failures, with their backoffs
	}
	if err != nil {
		w.end(e.publish, nil)
		if ctx.Err() == nil {
			e.log.Error(what, "node", e.nodeID, "err", err)
		}
		return 0, err
	}
	events := wrote.all()
	logged := map[int64]bool{}
	for _, rr := range rrs {
		if rr.Step.State == backends.StatePending {
			e.log.Info("released a step whose handler never started", "task_id", rr.Step.TaskID, "step", rr.Step.Name, "attempt", rr.Step.Attempts)
		} else {
			e.log.Warn("recovered a step whose lease expired", "task_id", rr.Step.TaskID, "step", rr.Step.Name, "attempt", rr.Step.Attempts, "state", rr.Step.State)
		}
		if !logged[rr.Task.ID] {
			logged[rr.Task.ID] = true
			e.logLifecycle(events, rr.Task)
		}
	}
	w.end(e.publish, events)
	if len(rrs) > 0 {
		e.Wake()
	}
	return len(rrs), nil
}

// cancelLocal stops the handlers of steps this node runs.
func (e *Engine) cancelLocal(stepIDs []int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range stepIDs {
		if x := e.running[id]; x != nil {
			x.cancel(errCancelRequested)
		}
	}
}
