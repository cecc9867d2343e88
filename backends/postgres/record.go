package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// CompleteStep implements backends.Store (completeStepsSQL, written in a
// batch with other workers' results: see results.go).
func (s *Store) CompleteStep(ctx context.Context, p *backends.CompleteStepParams) (_ *backends.RecordResult, rerr error) {
	defer classifyErr(&rerr)
	results := p.Results
	if len(results) == 0 {
		results = json.RawMessage(`{}`)
	}
	res, err := s.record(ctx, &resultReq{complete: true, stepID: p.StepID, token: p.LeaseToken, now: p.Now, results: string(results), custom: p.Events})
	if err != nil {
		return nil, fmt.Errorf("completing step %d: %w", p.StepID, err)
	}
	return res, nil
}

// finalizeResult finalizes after a step's write inside a transaction. st is
// the step's row as that write returned it (finalize writes only the task).
// It names the task's steps in error when finalize moved it to error.
func finalizeResult(ctx context.Context, tx querier, st *backends.Step, now time.Time) (*backends.RecordResult, error) {
	ec, d, task, before, err := finalizeFrom(ctx, tx, st.TaskID, now)
	if err != nil {
		return nil, err
	}
	rr := &backends.RecordResult{Step: st, Task: task, Context: ec, Decision: d, TaskBefore: before}
	if task.State == backends.StateError && before != backends.StateError {
		if rr.ErrorSteps, err = errorStepNames(ctx, tx, task.ID); err != nil {
			return nil, err
		}
	}
	return rr, nil
}

// FailStep implements backends.Store (failStepsSQL, written in a batch
// with other workers' results: see results.go).
func (s *Store) FailStep(ctx context.Context, p *backends.FailStepParams) (_ *backends.RecordResult, rerr error) {
	defer classifyErr(&rerr)
	errJSON, err := json.Marshal(p.Error)
	if err != nil {
		return nil, err
	}
	var backoff *int32
	if p.BackoffSeconds != nil {
		b := int32(min(max(*p.BackoffSeconds, math.MinInt32), math.MaxInt32))
		backoff = &b
	}
	res, err := s.record(ctx, &resultReq{stepID: p.StepID, token: p.LeaseToken, now: p.Now,
		errJSON: string(errJSON), backoff: backoff, retryable: p.Error.Retryable, kind: p.Error.Kind, custom: p.Events})
	if err != nil {
		return nil, fmt.Errorf("failing step %d: %w", p.StepID, err)
	}
	return res, nil
}

// RecoverExpiredLeases implements backends.Store: oldest expiry first, each
// step failed and its task finalized, all in one transaction. SKIP LOCKED:
// a step whose worker is writing its result right now is that worker's.
func (s *Store) RecoverExpiredLeases(ctx context.Context, p *backends.RecoverParams) (_ []*backends.RecordResult, rerr error) {
	defer classifyErr(&rerr)
	out, err := s.recoverLeases(ctx, p.Limit, p.Now, `SELECT `+stepColumns+` FROM steps
			WHERE state = 'in_progress' AND lease_expires_at <= $1
			ORDER BY lease_expires_at, id LIMIT $2
			FOR NO KEY UPDATE SKIP LOCKED`, []any{ts(p.Now), p.Limit},
		func(st *backends.Step) string {
			return fmt.Sprintf("lease of %s expired at %s", st.LeaseOwner, st.LeaseExpiresAt.Format(time.RFC3339Nano))
		})
	if err != nil {
		return nil, fmt.Errorf("recovering expired leases: %w", err)
	}
	return out, nil
}

// RecoverNodeLeases implements backends.Store: RecoverExpiredLeases for the
// steps of one owner, whatever their expiry, by step id. SKIP
// LOCKED as there: a step whose result is being written right now is left
// to that write, and a later pass finds it if it is still leased.
func (s *Store) RecoverNodeLeases(ctx context.Context, p *backends.RecoverNodeParams) (_ []*backends.RecordResult, rerr error) {
	defer classifyErr(&rerr)
	out, err := s.recoverLeases(ctx, p.Limit, p.Now, `SELECT `+stepColumns+` FROM steps
			WHERE state = 'in_progress' AND lease_owner = $1
			ORDER BY id LIMIT $2
			FOR NO KEY UPDATE SKIP LOCKED`, []any{p.Owner, p.Limit},
		func(st *backends.Step) string {
			return fmt.Sprintf("lease of %s recovered at %s: the node is gone", st.LeaseOwner, p.Now.Format(time.RFC3339Nano))
		})
	if err != nil {
		return nil, fmt.Errorf("recovering the leases of node %s: %w", p.Owner, err)
	}
	return out, nil
}

// recoverLeases fails (or releases) the in_progress steps that selectSteps
// selects and locks, each as a worker's lease_expired failure with its
// finalize, in one transaction; message explains the failure.
func (s *Store) recoverLeases(ctx context.Context, limit int, now time.Time, selectSteps string, args []any,
	message func(st *backends.Step) string) ([]*backends.RecordResult, error) {
	if limit <= 0 {
		return []*backends.RecordResult{}, nil
	}
	var (
		out    []*backends.RecordResult
		events []*backends.Event
		w      *wake
	)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		out, events, w = []*backends.RecordResult{}, nil, nil
		released := false
		steps, err := querySteps(ctx, tx, selectSteps, args...)
		if err != nil {
			return err
		}
		for _, st := range steps {
			if st.StartedAt == nil && !st.CancelRequested {
				// It waited for a worker and its handler never ran: the
				// claim is undone (under the row lock taken above), its
				// attempt not counted.
				meta := map[string]any{"attempt": st.Attempts, "lease_token": st.LeaseToken, "owner": st.LeaseOwner}
				written, err := moveStep(ctx, tx, st, backends.StatePending, backends.ReasonReleased, meta, now, releaseSet)
				if err != nil {
					return fmt.Errorf("releasing %s: %w", backends.StepObject(st), err)
				}
				res, err := finalizeResult(ctx, tx, written, now)
				if err != nil {
					return err
				}
				out = append(out, res) // no events: nothing ran
				released = true
				continue
			}
			se := backends.StepError{
				Message:   message(st),
				Retryable: true,
				Kind:      backends.ErrorKindLeaseExpired,
			}
			errJSON, err := json.Marshal(se)
			if err != nil {
				return err
			}
			// The write a worker's FailStep does, with the token read here
			// under the row lock.
			written, err := scanStep(tx.QueryRow(ctx, failStepsSQL, []int64{st.ID}, []int64{st.LeaseToken},
				[]time.Time{ts(now)}, []string{string(errJSON)}, []*int32{nil}, []bool{se.Retryable}, []string{se.Kind}))
			if err != nil {
				return fmt.Errorf("recovering %s: %w", backends.StepObject(st), err)
			}
			res, err := finalizeResult(ctx, tx, written, now)
			if err != nil {
				return err
			}
			out = append(out, res)
			events = append(events, backends.RecordEvents(res, nil, now, backends.EventStepLeaseExpired)...)
		}
		if err := appendEvents(ctx, tx, events); err != nil {
			return err
		}
		// A released step is ready again at once; a failed one at its
		// backoff's end.
		if w = s.wakes.note(events, now); released {
			w = s.wakes.noteAt(time.Time{})
		}
		return w.exec(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	w.committed()
	sinkEvents(ctx, events)
	return out, nil
}
