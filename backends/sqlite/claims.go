package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// finalize is SEMANTICS §5.5 inside the transaction of the write it follows:
// the execution context (the same SQL as TaskExecutionContext, read through
// the transaction, so it sees the write), backends.Decide, and the task
// transitions of backends.FinalizePath. A finished task is left alone
// (DecisionNone).
func finalize(ctx context.Context, tx querier, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, error) {
	ec, err := taskContext(ctx, tx, taskID, now)
	if err != nil {
		return ec, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	var (
		state          string
		anyCancelledIn int
	)
	if err := tx.QueryRowContext(ctx, finalizeStateSQL, taskID).Scan(&state, &anyCancelledIn); err != nil {
		return ec, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	from := backends.State(state)
	if from.Finished() {
		return ec, backends.DecisionNone, nil
	}
	d := backends.Decide(ec, anyCancelledIn != 0)
	meta := map[string]any{"decision": string(d), "execution_status": ec.ExecutionStatus}
	for _, to := range backends.FinalizePath(from, d) {
		if err := moveTask(ctx, tx, taskID, from, to, "finalize: "+ec.ExecutionStatus, meta, now); err != nil {
			return ec, "", fmt.Errorf("finalizing task %d: %w", taskID, err)
		}
		from = to
	}
	return ec, d, nil
}

// ClaimSteps implements backends.Store. The choice of steps is claimSQL,
// which runs the readiness SQL; see there why SQLite needs no SKIP LOCKED.
func (s *Store) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) ([]*backends.Claim, error) {
	claims := []*backends.Claim{}
	if p.Limit <= 0 {
		return claims, nil
	}
	err := s.write(ctx, func(tx querier) error {
		type pick struct {
			stepID, taskID int64
			state          backends.State
		}
		var picks []pick
		rows, err := tx.QueryContext(ctx, claimSQL, sql.Named("now", micros(p.Now)), sql.Named("limit", p.Limit))
		if err != nil {
			return err
		}
		for rows.Next() {
			var pk pick
			var state string
			if err := rows.Scan(&pk.stepID, &pk.taskID, &state); err != nil {
				rows.Close()
				return err
			}
			pk.state = backends.State(state)
			picks = append(picks, pk)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}

		expires := p.Now.Add(p.LeaseDuration)
		for _, pk := range picks {
			st, err := getStep(ctx, tx, pk.stepID)
			if err != nil {
				return err
			}
			c := &backends.Claim{Retry: st.State == backends.StateError}
			meta := map[string]any{"owner": p.Owner, "attempt": st.Attempts + 1, "lease_token": st.LeaseToken + 1}
			if c.Retry {
				if err := moveStep(ctx, tx, st, backends.StatePending, "retry", meta, p.Now); err != nil {
					return err
				}
			}
			if err := moveStep(ctx, tx, st, backends.StateInProgress, "claimed", meta, p.Now); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, claimUpdateSQL,
				micros(p.Now), p.Owner, micros(expires), micros(p.Now), st.ID); err != nil {
				return err
			}
			task, err := getTask(ctx, tx, pk.taskID)
			if err != nil {
				return err
			}
			if task.State == backends.StatePending {
				if err := moveTask(ctx, tx, task.ID, backends.StatePending, backends.StateInProgress,
					"first claim", map[string]any{"owner": p.Owner}, p.Now); err != nil {
					return err
				}
				c.TaskStarted = true
			}
			claims = append(claims, c)
			c.Step, c.Task = st, task // filled below, after every write
		}
		for _, c := range claims {
			var err error
			if c.Step, err = getStep(ctx, tx, c.Step.ID); err != nil {
				return err
			}
			if c.Task, err = getTask(ctx, tx, c.Step.TaskID); err != nil {
				return err
			}
			if c.ParentResults, err = parentResults(ctx, tx, c.Step.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming steps for %s: %w", p.Owner, err)
	}
	return claims, nil
}

// parentResults maps each parent's name to its results (JSON null when it
// has none).
func parentResults(ctx context.Context, q querier, stepID int64) (map[string]json.RawMessage, error) {
	rows, err := q.QueryContext(ctx, parentResultsSQL, stepID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var (
			name    string
			results sql.NullString
		)
		if err := rows.Scan(&name, &results); err != nil {
			return nil, err
		}
		if results.Valid {
			out[name] = json.RawMessage(results.String)
		} else {
			out[name] = json.RawMessage("null")
		}
	}
	return out, rows.Err()
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

// fencedStep reads a step for a result write and checks its lease: the
// write applies only while the step is in_progress under this token.
func fencedStep(ctx context.Context, tx querier, stepID, token int64) (*backends.Step, error) {
	st, err := getStep(ctx, tx, stepID)
	if err != nil {
		return nil, err
	}
	if st.State != backends.StateInProgress || st.LeaseToken != token {
		return nil, fmt.Errorf("%s (token %d, current %d, state %s): %w",
			stepObject(st), token, st.LeaseToken, st.State, backends.ErrLeaseLost)
	}
	return st, nil
}

// CompleteStep implements backends.Store. When a cancel was requested while
// the step ran, it becomes cancelled: LastAttemptedAt and Results are still
// stored (what the handler returned), but Processed stays false, since the
// results will never be used.
func (s *Store) CompleteStep(ctx context.Context, p *backends.CompleteStepParams) (*backends.RecordResult, error) {
	var res *backends.RecordResult
	err := s.write(ctx, func(tx querier) error {
		st, err := fencedStep(ctx, tx, p.StepID, p.LeaseToken)
		if err != nil {
			return err
		}
		results := p.Results
		if len(results) == 0 {
			results = json.RawMessage(`{}`)
		}
		to, reason := backends.StateComplete, "completed"
		if st.CancelRequested {
			to, reason = backends.StateCancelled, "cancelled while running"
		}
		meta := map[string]any{"attempt": st.Attempts, "lease_token": st.LeaseToken}
		if err := moveStep(ctx, tx, st, to, reason, meta, p.Now); err != nil {
			return err
		}
		now := micros(p.Now)
		if _, err := tx.ExecContext(ctx, `UPDATE steps SET last_attempted_at = ?, results = ?,
			processed = ?, processed_at = CASE WHEN ? THEN ? ELSE processed_at END,
			lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0, updated_at = ? WHERE id = ?`,
			now, string(results), boolInt(to == backends.StateComplete), boolInt(to == backends.StateComplete),
			now, now, st.ID); err != nil {
			return err
		}
		res, err = recordResult(ctx, tx, st.ID, st.TaskID, p.Now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("completing step %d: %w", p.StepID, err)
	}
	return res, nil
}

// recordResult finalizes after a step's write and reads back what was
// written.
func recordResult(ctx context.Context, tx querier, stepID, taskID int64, now time.Time) (*backends.RecordResult, error) {
	ec, d, err := finalize(ctx, tx, taskID, now)
	if err != nil {
		return nil, err
	}
	st, err := getStep(ctx, tx, stepID)
	if err != nil {
		return nil, err
	}
	task, err := getTask(ctx, tx, taskID)
	if err != nil {
		return nil, err
	}
	return &backends.RecordResult{Step: st, Task: task, Context: ec, Decision: d}, nil
}

// FailStep implements backends.Store. When a cancel was requested while the
// step ran, it becomes cancelled: the error and LastAttemptedAt are stored,
// but LastFailureAt is not (it is the time the step last entered error) and
// neither is the requested backoff.
func (s *Store) FailStep(ctx context.Context, p *backends.FailStepParams) (*backends.RecordResult, error) {
	var res *backends.RecordResult
	err := s.write(ctx, func(tx querier) error {
		st, err := fencedStep(ctx, tx, p.StepID, p.LeaseToken)
		if err != nil {
			return err
		}
		if err := failStep(ctx, tx, st, p.Error, p.BackoffSeconds, p.Now); err != nil {
			return err
		}
		res, err = recordResult(ctx, tx, st.ID, st.TaskID, p.Now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failing step %d: %w", p.StepID, err)
	}
	return res, nil
}

// failStep writes a failure of a running step (a worker's report or a lease
// recovery).
func failStep(ctx context.Context, tx querier, st *backends.Step, se backends.StepError, backoff *int, now time.Time) error {
	errJSON, err := json.Marshal(se)
	if err != nil {
		return err
	}
	to, reason := backends.StateError, "failed: "+se.Kind
	if st.CancelRequested {
		to, reason = backends.StateCancelled, "cancelled while running"
	}
	meta := map[string]any{"attempt": st.Attempts, "lease_token": st.LeaseToken, "error": se}
	if err := moveStep(ctx, tx, st, to, reason, meta, now); err != nil {
		return err
	}
	var backoffArg any
	if backoff != nil && to == backends.StateError {
		backoffArg = *backoff
	}
	isError := boolInt(to == backends.StateError)
	_, err = tx.ExecContext(ctx, `UPDATE steps SET last_attempted_at = @now, error = @error,
		last_failure_at = CASE WHEN @is_error THEN @now ELSE last_failure_at END,
		backoff_request_seconds = @backoff,
		retryable = CASE WHEN @is_error AND NOT @retryable THEN 0 ELSE retryable END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0, updated_at = @now
		WHERE id = @id`,
		sql.Named("now", micros(now)), sql.Named("error", string(errJSON)), sql.Named("is_error", isError),
		sql.Named("backoff", backoffArg), sql.Named("retryable", boolInt(se.Retryable)), sql.Named("id", st.ID))
	return err
}

// RecoverExpiredLeases implements backends.Store: oldest expiry first, each
// step failed and its task finalized, all in one transaction.
func (s *Store) RecoverExpiredLeases(ctx context.Context, p *backends.RecoverParams) ([]*backends.RecordResult, error) {
	out := []*backends.RecordResult{}
	if p.Limit <= 0 {
		return out, nil
	}
	err := s.write(ctx, func(tx querier) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM steps
			WHERE state = 'in_progress' AND lease_expires_at <= ?
			ORDER BY lease_expires_at, id LIMIT ?`, micros(p.Now), p.Limit)
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
			se := backends.StepError{
				Message:   fmt.Sprintf("lease of %s expired at %s", st.LeaseOwner, st.LeaseExpiresAt.Format(time.RFC3339Nano)),
				Retryable: true,
				Kind:      backends.ErrorKindLeaseExpired,
			}
			if err := failStep(ctx, tx, st, se, nil, p.Now); err != nil {
				return err
			}
			res, err := recordResult(ctx, tx, st.ID, st.TaskID, p.Now)
			if err != nil {
				return err
			}
			out = append(out, res)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recovering expired leases: %w", err)
	}
	return out, nil
}
