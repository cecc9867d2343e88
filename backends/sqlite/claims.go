package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// finalize is SEMANTICS §5.5 inside the transaction of the write it follows:
// the execution context (the same SQL as TaskExecutionContext, read through
// the transaction, so it sees the write), backends.Decide, and the task
// transitions of backends.FinalizePath. A finished task is left alone
// (DecisionNone). It also returns the task's row as it stands after these
// moves, and the task's state before them.
func finalize(ctx context.Context, tx querier, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, *backends.Task, backends.State, error) {
	var (
		ec             backends.ExecutionContext
		anyCancelledIn int
	)
	row := tx.QueryRowContext(ctx, finalizeSQL, sql.Named("task_id", taskID), sql.Named("now", micros(now)))
	task, err := scanTask(prefixed{row, contextDest(&ec)}, &anyCancelledIn)
	if errors.Is(err, sql.ErrNoRows) {
		err = backends.ErrNotFound
	}
	if err != nil {
		return ec, "", nil, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	before := task.State
	if task.State.Finished() {
		return ec, backends.DecisionNone, task, before, nil
	}
	d := backends.Decide(ec, anyCancelledIn != 0)
	meta := map[string]any{"decision": string(d), "execution_status": ec.ExecutionStatus}
	for _, to := range backends.FinalizePath(task.State, d) {
		if err := moveTask(ctx, tx, taskID, task.State, to, "finalize: "+ec.ExecutionStatus, meta, now); err != nil {
			return ec, "", nil, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
		}
		movedTask(task, to, now)
	}
	return ec, d, task, before, nil
}

// movedTask applies to a task row read earlier in the transaction what
// moveTask (moveTaskSQL) wrote: its state and updated_at, nothing else.
func movedTask(t *backends.Task, to backends.State, now time.Time) {
	t.State, t.UpdatedAt = to, fromMicros(micros(now))
}

// ClaimSteps implements backends.Store. The choice of steps is
// claimIdleHeadsSQL's, claimBusyHeadsSQL's, then claimRestSQL's, which run
// the readiness SQL; see there why SQLite needs no SKIP LOCKED. Under
// concurrency limits the in_progress steps of the limited workflows are
// counted first, in the same transaction (one writer: nothing changes them
// meanwhile), and the picks over a limit are dropped and their places
// picked again without that workflow.
func (s *Store) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) ([]*backends.Claim, error) {
	claims := []*backends.Claim{}
	if p.Limit <= 0 {
		return claims, nil
	}
	var events []*backends.Event
	err := s.write(ctx, func(tx querier) error {
		// Each pick carries what the claim needs of the step's row and of
		// its task's as they stand, so that the claim reads neither again.
		var picks []*backends.Step
		var retryAt []sql.NullInt64
		// Each task's row, kept as this transaction moves it.
		tasks := map[int64]*backends.Task{}
		caps := backends.NewClaimCaps(p.Limits)
		if len(p.Limits) > 0 {
			running, err := countRunning(ctx, tx, caps.Keys())
			if err != nil {
				return err
			}
			caps.Reset(running)
		}
		held := []int64{}
		// pick runs one of the claim's statements for the places left and
		// keeps what the limits allow; dropped: some pick was over one.
		pick := func(query string) (dropped bool, err error) {
			full, err := json.Marshal(caps.Full())
			if err != nil {
				return false, err
			}
			heldJSON, err := json.Marshal(held)
			if err != nil {
				return false, err
			}
			rows, err := tx.QueryContext(ctx, query, sql.Named("now", micros(p.Now)), sql.Named("limit", p.Limit-len(picks)),
				sql.Named("excluded", string(full)), sql.Named("picked", string(heldJSON)))
			if err != nil {
				return false, err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					st          backends.Step
					state       string
					nextRetryAt sql.NullInt64
					updated     int64
				)
				task, err := scanTask(prefixed{rows, []any{&st.ID, &st.TaskID, &state, &nextRetryAt, &st.Name, &st.Attempts, &st.LeaseToken, &updated}})
				if err != nil {
					return false, err
				}
				held = append(held, st.ID)
				if !caps.Take(backends.WorkflowKey(task.Namespace, task.WorkflowName)) {
					dropped = true
					continue
				}
				st.State, st.UpdatedAt = backends.State(state), fromMicros(updated)
				picks = append(picks, &st)
				retryAt = append(retryAt, nextRetryAt)
				tasks[task.ID] = task
			}
			return dropped, rows.Err()
		}
		// Idle heads, busy heads, then the rest; a statement whose picks
		// went over a limit runs again for the places they left, without
		// that workflow. Nothing is written until all are read, so a task
		// whose head the first statement took is still idle for the second.
		for _, query := range []string{claimIdleHeadsSQL, claimBusyHeadsSQL, claimRestSQL} {
			for len(picks) < p.Limit {
				dropped, err := pick(query)
				if err != nil {
					return err
				}
				if !dropped {
					break
				}
			}
		}

		var err error
		expires := p.Now.Add(p.LeaseDuration)
		for i, st := range picks {
			c := &backends.Claim{Retry: st.State == backends.StateError, ReadyAt: st.UpdatedAt}
			if t := nullTime(retryAt[i]); t != nil && t.After(c.ReadyAt) {
				c.ReadyAt = *t
			}
			meta := map[string]any{"owner": p.Owner, "attempt": st.Attempts + 1, "lease_token": st.LeaseToken + 1}
			if c.Retry {
				if err := moveStep(ctx, tx, st, backends.StatePending, "retry", meta, p.Now); err != nil {
					return err
				}
			}
			// The claim's one write to the step returns the claimed row. A
			// step claimed into a queued place has not started (StartedAt
			// NULL) until StartStep.
			var startedAt any
			if i < p.Limit-p.Queued {
				startedAt = micros(p.Now)
			}
			if c.Step, err = moveStepWith(ctx, tx, st, backends.StateInProgress, "claimed", meta, p.Now,
				claimSet, startedAt, p.Owner, micros(expires)); err != nil {
				return err
			}
			task := tasks[st.TaskID]
			if task.State == backends.StatePending {
				if err := moveTask(ctx, tx, task.ID, backends.StatePending, backends.StateInProgress,
					"first claim", map[string]any{"owner": p.Owner}, p.Now); err != nil {
					return err
				}
				movedTask(task, backends.StateInProgress, p.Now)
				c.TaskStarted = true
			}
			var parentsDone time.Time
			if c.ParentResults, parentsDone, err = parentResults(ctx, tx, c.Step.ID); err != nil {
				return err
			}
			if parentsDone.After(c.ReadyAt) {
				c.ReadyAt = parentsDone
			}
			claims = append(claims, c)
		}
		// Every claim gets its own copy of its task as it stands after all
		// of this transaction's writes.
		for _, c := range claims {
			t := *tasks[c.Step.TaskID]
			t.Tags = slices.Clone(t.Tags)
			c.Task = &t
		}
		events = backends.ClaimEvents(claims, p.Now)
		return appendEvents(ctx, tx, events)
	})
	if err != nil {
		return nil, fmt.Errorf("claiming steps for %s: %w", p.Owner, err)
	}
	notify(ctx, events)
	return claims, nil
}

// countRunning counts the in_progress steps of the workflows keys names
// ("namespace/name"), through steps_running.
func countRunning(ctx context.Context, tx querier, keys []string) (map[string]int, error) {
	keysJSON, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, countRunningSQL, sql.Named("keys", string(keysJSON)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	running := map[string]int{}
	for rows.Next() {
		var (
			k string
			n int
		)
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		running[k] = n
	}
	return running, rows.Err()
}

// countRunningSQL: the in_progress steps per workflow of @keys, a JSON
// array of "namespace/name". Running steps are few (the cluster's workers
// and what they claimed ahead): it reads steps_running and a task per step.
const countRunningSQL = `SELECT t.namespace || '/' || t.workflow_name AS workflow, count(*)
	FROM steps s JOIN tasks t ON t.id = s.task_id
	WHERE s.state = 'in_progress'
	  AND t.namespace || '/' || t.workflow_name IN (SELECT value FROM json_each(@keys))
	GROUP BY workflow`

// parentResults maps each parent's name to its results (JSON null when it
// has none), and says when the last of them changed (completed).
func parentResults(ctx context.Context, q querier, stepID int64) (map[string]json.RawMessage, time.Time, error) {
	var last time.Time
	rows, err := q.QueryContext(ctx, parentResultsSQL, stepID)
	if err != nil {
		return nil, last, err
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var (
			name    string
			results sql.NullString
			updated int64
		)
		if err := rows.Scan(&name, &results, &updated); err != nil {
			return nil, last, err
		}
		if t := fromMicros(updated); t.After(last) {
			last = t
		}
		if results.Valid {
			out[name] = json.RawMessage(results.String)
		} else {
			out[name] = json.RawMessage("null")
		}
	}
	return out, last, rows.Err()
}

// ExtendLeases implements backends.Store. A lease is current while its step
// is in_progress under the same owner and token; a lease that has expired
// but was not yet recovered is still current (no one else can hold the step:
// recovery and re-claim both change the token), so it is extended.
func (s *Store) ExtendLeases(ctx context.Context, p *backends.ExtendLeasesParams) ([]backends.LeaseStatus, error) {
	out := make([]backends.LeaseStatus, 0, len(p.Leases))
	err := s.write(ctx, func(tx querier) error {
		for _, l := range p.Leases {
			var cancelRequested int
			err := tx.QueryRowContext(ctx, `UPDATE steps SET lease_expires_at = ?, updated_at = ?
				WHERE id = ? AND state = 'in_progress' AND lease_owner = ? AND lease_token = ?
				RETURNING cancel_requested`,
				micros(p.Now.Add(p.LeaseDuration)), micros(p.Now), l.StepID, p.Owner, l.Token).Scan(&cancelRequested)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				out = append(out, backends.LeaseStatus{StepID: l.StepID, Lost: true})
			case err != nil:
				return err
			default:
				out = append(out, backends.LeaseStatus{StepID: l.StepID, CancelRequested: cancelRequested != 0})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("extending %d leases for %s: %w", len(p.Leases), p.Owner, err)
	}
	return out, nil
}

// StartStep implements backends.Store: one fenced UPDATE.
func (s *Store) StartStep(ctx context.Context, p *backends.StartStepParams) (bool, error) {
	var cancelRequested int
	err := s.write(ctx, func(tx querier) error {
		return tx.QueryRowContext(ctx, startStepSQL, micros(p.Now.Add(p.LeaseDuration)), micros(p.Now),
			p.StepID, p.Owner, p.LeaseToken).Scan(&cancelRequested)
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("step %d (token %d of %s): %w", p.StepID, p.LeaseToken, p.Owner, backends.ErrLeaseLost)
	}
	if err != nil {
		return false, fmt.Errorf("starting step %d: %w", p.StepID, err)
	}
	return cancelRequested != 0, nil
}

// fencedStep reads a step for a result write and checks its lease: the
// write applies only while the step is in_progress under this token.
func fencedStep(ctx context.Context, tx querier, stepID, token int64) (*backends.Step, error) {
	st, err := getStep(ctx, tx, stepID)
	if err != nil {
		return nil, err
	}
	if st.State != backends.StateInProgress || st.LeaseToken != token {
		return nil, fmt.Errorf("%s (token %d, current %d, state %s): %w",
			backends.StepObject(st), token, st.LeaseToken, st.State, backends.ErrLeaseLost)
	}
	return st, nil
}

// CompleteStep implements backends.Store. When a cancel was requested while
// the step ran, it becomes cancelled: LastAttemptedAt and Results are still
// stored (what the handler returned), but Processed stays false, since the
// results will never be used.
func (s *Store) CompleteStep(ctx context.Context, p *backends.CompleteStepParams) (*backends.RecordResult, error) {
	c := newCompletion(p)
	err := s.submit(ctx, &writeOp{ctx: ctx, complete: c, fn: func(tx querier) error { return c.run(ctx, tx) }})
	if err != nil {
		return nil, fmt.Errorf("completing step %d: %w", p.StepID, err)
	}
	notify(ctx, c.events)
	return c.res, nil
}

// recordResult finalizes after a step's write. st is the step's row as that
// write returned it (finalize writes only the task), the task is the row
// finalize read and moved; a step's write never moves its task, so the
// task's state before finalize is its state before the write.
func recordResult(ctx context.Context, tx querier, st *backends.Step, now time.Time) (*backends.RecordResult, error) {
	ec, d, task, before, err := finalize(ctx, tx, st.TaskID, now)
	if err != nil {
		return nil, err
	}
	res := &backends.RecordResult{Step: st, Task: task, Context: ec, Decision: d, TaskBefore: before}
	if task.State == backends.StateError && before != backends.StateError {
		if res.ErrorSteps, err = errorStepNames(ctx, tx, task.ID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// FailStep implements backends.Store. When a cancel was requested while the
// step ran, it becomes cancelled: the error (kind cancelled, not retryable)
// and LastAttemptedAt are stored,
// but LastFailureAt is not (it is the time the step last entered error) and
// neither is the requested backoff.
func (s *Store) FailStep(ctx context.Context, p *backends.FailStepParams) (*backends.RecordResult, error) {
	var (
		res    *backends.RecordResult
		events []*backends.Event
	)
	err := s.write(ctx, func(tx querier) error {
		st, err := fencedStep(ctx, tx, p.StepID, p.LeaseToken)
		if err != nil {
			return err
		}
		written, err := failStep(ctx, tx, st, p.Error, p.BackoffSeconds, p.Now)
		if err != nil {
			return err
		}
		if res, err = recordResult(ctx, tx, written, p.Now); err != nil {
			return err
		}
		events = backends.RecordEvents(res, p.Events, p.Now, backends.EventStepFailed)
		return appendEvents(ctx, tx, events)
	})
	if err != nil {
		return nil, fmt.Errorf("failing step %d: %w", p.StepID, err)
	}
	notify(ctx, events)
	return res, nil
}

// failStep writes a failure of a running step (a worker's report or a lease
// recovery) and returns the written row.
func failStep(ctx context.Context, tx querier, st *backends.Step, se backends.StepError, backoff *int, now time.Time) (*backends.Step, error) {
	to, reason := backends.StateError, "failed: "+se.Kind
	if st.CancelRequested {
		// Whatever the handler said, the step stopped because it was
		// cancelled.
		to, reason = backends.StateCancelled, "cancelled while running"
		se.Kind, se.Retryable = backends.ErrorKindCancelled, false
	}
	errJSON, err := json.Marshal(se)
	if err != nil {
		return nil, err
	}
	meta := map[string]any{"attempt": st.Attempts, "lease_token": st.LeaseToken, "error": se}
	var backoffArg any
	if backoff != nil && to == backends.StateError {
		backoffArg = *backoff
	}
	isError := boolInt(to == backends.StateError)
	return moveStepWith(ctx, tx, st, to, reason, meta, now, failSet,
		micros(now), string(errJSON), isError, micros(now), backoffArg, isError, boolInt(se.Retryable))
}

// RecoverExpiredLeases implements backends.Store: oldest expiry first, each
// step failed and its task finalized, all in one transaction.
func (s *Store) RecoverExpiredLeases(ctx context.Context, p *backends.RecoverParams) ([]*backends.RecordResult, error) {
	out, err := s.recoverLeases(ctx, p.Limit, p.Now, `SELECT id FROM steps
		WHERE state = 'in_progress' AND lease_expires_at <= ?
		ORDER BY lease_expires_at, id LIMIT ?`, []any{micros(p.Now), p.Limit},
		func(st *backends.Step) string {
			return fmt.Sprintf("lease of %s expired at %s", st.LeaseOwner, st.LeaseExpiresAt.Format(time.RFC3339Nano))
		})
	if err != nil {
		return nil, fmt.Errorf("recovering expired leases: %w", err)
	}
	return out, nil
}

// RecoverNodeLeases implements backends.Store: RecoverExpiredLeases for the
// steps of one owner, whatever their expiry, by step id.
func (s *Store) RecoverNodeLeases(ctx context.Context, p *backends.RecoverNodeParams) ([]*backends.RecordResult, error) {
	out, err := s.recoverLeases(ctx, p.Limit, p.Now, `SELECT id FROM steps
		WHERE state = 'in_progress' AND lease_owner = ?
		ORDER BY id LIMIT ?`, []any{p.Owner, p.Limit},
		func(st *backends.Step) string {
			return fmt.Sprintf("lease of %s recovered at %s: the node is gone", st.LeaseOwner, p.Now.Format(time.RFC3339Nano))
		})
	if err != nil {
		return nil, fmt.Errorf("recovering the leases of node %s: %w", p.Owner, err)
	}
	return out, nil
}

// recoverLeases fails (or releases) the in_progress steps whose ids
// selectIDs selects, each as a worker's lease_expired failure with its
// finalize, in one transaction; message explains the failure.
func (s *Store) recoverLeases(ctx context.Context, limit int, now time.Time, selectIDs string, args []any,
	message func(st *backends.Step) string) ([]*backends.RecordResult, error) {
	out := []*backends.RecordResult{}
	if limit <= 0 {
		return out, nil
	}
	var events []*backends.Event
	err := s.write(ctx, func(tx querier) error {
		rows, err := tx.QueryContext(ctx, selectIDs, args...)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			st, err := getStep(ctx, tx, id)
			if err != nil {
				return err
			}
			var written *backends.Step
			if st.StartedAt == nil && !st.CancelRequested {
				// It waited for a worker and its handler never ran: the
				// claim is undone, its attempt not counted.
				meta := map[string]any{"attempt": st.Attempts, "lease_token": st.LeaseToken, "owner": st.LeaseOwner}
				written, err = moveStepWith(ctx, tx, st, backends.StatePending, backends.ReasonReleased, meta, now, releaseSet)
			} else {
				written, err = failStep(ctx, tx, st, backends.StepError{
					Message:   message(st),
					Retryable: true,
					Kind:      backends.ErrorKindLeaseExpired,
				}, nil, now)
			}
			if err != nil {
				return err
			}
			res, err := recordResult(ctx, tx, written, now)
			if err != nil {
				return err
			}
			out = append(out, res)
			// A released step has none.
			events = append(events, backends.RecordEvents(res, nil, now, backends.EventStepLeaseExpired)...)
		}
		return appendEvents(ctx, tx, events)
	})
	if err != nil {
		return nil, err
	}
	notify(ctx, events)
	return out, nil
}
