package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// finalize is SEMANTICS §5.5 inside the transaction of the write it follows.
// It first locks the task's row, and only then computes the execution
// context (taskerd_task_execution_context) in a new statement: under READ
// COMMITTED that statement sees every result committed by a finalize that
// held the lock before, so of two steps finishing at once the second sees
// the first. Then backends.Decide and the task transitions of
// backends.FinalizePath. A finished task is left alone (DecisionNone). It
// returns the task's row as it stands after these moves.
func finalize(ctx context.Context, tx querier, taskID int64, now time.Time) (backends.ExecutionContext, backends.FinalizeDecision, *backends.Task, error) {
	var anyCancelled bool
	task, err := scanTask(tx.QueryRow(ctx, `SELECT `+taskColumns+`,
			EXISTS (SELECT 1 FROM steps WHERE task_id = t.id AND state = 'cancelled')
		FROM tasks t WHERE id = $1 FOR NO KEY UPDATE`, taskID), &anyCancelled)
	if err != nil {
		return backends.ExecutionContext{}, "", nil, fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	ec, err := taskContext(ctx, tx, taskID, now)
	if err != nil {
		return ec, "", nil, fmt.Errorf("finalizing task %d: %w", taskID, err)
	}
	if task.State.Finished() {
		return ec, backends.DecisionNone, task, nil
	}
	d := backends.Decide(ec, anyCancelled)
	meta := map[string]any{"decision": string(d), "execution_status": ec.ExecutionStatus}
	for _, to := range backends.FinalizePath(task.State, d) {
		if task, err = moveTask(ctx, tx, taskID, task.State, to, "finalize: "+ec.ExecutionStatus, meta, now); err != nil {
			return ec, "", nil, fmt.Errorf("finalizing task %d: %w", taskID, err)
		}
	}
	return ec, d, task, nil
}

// claimSQL picks the steps to claim: ready for execution by the rule of
// taskerd_step_readiness_rows (migrations/0002), in pending or in_progress
// tasks, oldest task first, then position. The first conditions repeat the
// predicate of the partial index steps_claimable word for word, so only
// steps that may run and whose parents are all done are read, however long
// the history (unsatisfied_parents is a pre-filter; the function still
// judges dependencies). FOR (NO KEY) UPDATE SKIP LOCKED: nodes claiming at once each
// take different rows and never wait for each other; a row another claim
// changed before we lock it is re-checked (EvalPlanQual) and dropped when it
// is no longer pending or error. The LIMIT counts only locked rows.
const claimSQL = `SELECT ` + stepColumns + `
	FROM steps s
	WHERE s.state IN ('pending', 'error') AND s.unsatisfied_parents = 0
	  AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = s.task_id AND t.state IN ('pending', 'in_progress'))
	  AND EXISTS (SELECT 1 FROM taskerd_step_readiness_rows($1) r
	               WHERE r.step_id = s.id AND r.ready_for_execution)
	ORDER BY s.task_id, s.position
	LIMIT $2
	FOR NO KEY UPDATE OF s SKIP LOCKED`

// ClaimSteps implements backends.Store.
func (s *Store) ClaimSteps(ctx context.Context, p *backends.ClaimStepsParams) ([]*backends.Claim, error) {
	if p.Limit <= 0 {
		return []*backends.Claim{}, nil
	}
	var claims []*backends.Claim
	err := s.tx(ctx, func(tx pgx.Tx) error {
		claims = []*backends.Claim{}
		picks, err := querySteps(ctx, tx, claimSQL, ts(p.Now), p.Limit)
		if err != nil {
			return err
		}
		expires := ts(p.Now.Add(p.LeaseDuration))
		// Each task's row, read once and kept as this transaction moves it.
		tasks := map[int64]*backends.Task{}
		ids := make([]int64, 0, len(picks))
		for _, st := range picks {
			c := &backends.Claim{Retry: st.State == backends.StateError}
			meta := map[string]any{"owner": p.Owner, "attempt": st.Attempts + 1, "lease_token": st.LeaseToken + 1}
			if c.Retry {
				if _, err := moveStep(ctx, tx, st, backends.StatePending, "retry", meta, p.Now, ""); err != nil {
					return err
				}
			}
			if c.Step, err = moveStep(ctx, tx, st, backends.StateInProgress, "claimed", meta, p.Now,
				claimSet, ts(p.Now), p.Owner, expires); err != nil {
				return err
			}
			task := tasks[st.TaskID]
			if task == nil {
				if task, err = getTask(ctx, tx, st.TaskID); err != nil {
					return err
				}
				tasks[st.TaskID] = task
			}
			if task.State == backends.StatePending {
				// Locks the task row (after the steps: the lock order).
				// Another claim may have started it since we read it; then
				// the move finds nothing and the task is simply re-read.
				moved, err := startTask(ctx, tx, task.ID, p.Owner, p.Now)
				if err != nil {
					return err
				}
				if moved != nil {
					c.TaskStarted = true
					task = moved
				} else if task, err = getTask(ctx, tx, st.TaskID); err != nil {
					return err
				}
				tasks[st.TaskID] = task
			}
			ids = append(ids, c.Step.ID)
			claims = append(claims, c)
		}
		results, err := parentResults(ctx, tx, ids)
		if err != nil {
			return err
		}
		// Every claim gets its own copy of its task as it stands after all
		// of this transaction's writes.
		for _, c := range claims {
			t := *tasks[c.Step.TaskID]
			t.Tags = slices.Clone(t.Tags)
			c.Task = &t
			c.ParentResults = results[c.Step.ID]
			if c.ParentResults == nil {
				c.ParentResults = map[string]json.RawMessage{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming steps for %s: %w", p.Owner, err)
	}
	return claims, nil
}

// startTask moves a task pending -> in_progress on its first claim, or
// returns nil when it is no longer pending.
func startTask(ctx context.Context, tx querier, taskID int64, owner string, now time.Time) (*backends.Task, error) {
	t, err := scanTask(tx.QueryRow(ctx, moveTaskSQL, string(backends.StateInProgress), ts(now), taskID,
		string(backends.StatePending), "first claim", metadata(map[string]any{"owner": owner})))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return t, err
}

// parentResults maps each claimed step's parents' names to their results
// (JSON null when a parent has none).
func parentResults(ctx context.Context, q querier, stepIDs []int64) (map[int64]map[string]json.RawMessage, error) {
	out := map[int64]map[string]json.RawMessage{}
	if len(stepIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT e.child_step_id, p.name, p.results
		FROM edges e JOIN steps p ON p.id = e.parent_step_id
		WHERE e.child_step_id = ANY ($1)`, stepIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			child   int64
			name    string
			results *string
		)
		if err := rows.Scan(&child, &name, &results); err != nil {
			return nil, err
		}
		m := out[child]
		if m == nil {
			m = map[string]json.RawMessage{}
			out[child] = m
		}
		if results != nil {
			m[name] = json.RawMessage(*results)
		} else {
			m[name] = json.RawMessage("null")
		}
	}
	return out, rows.Err()
}

// ExtendLeases implements backends.Store, in one statement. A lease is
// current while its step is in_progress under the same owner and token; a
// lease that expired but was not yet recovered is still current (recovery
// and a new claim both change the token), so it is extended.
func (s *Store) ExtendLeases(ctx context.Context, p *backends.ExtendLeasesParams) ([]backends.LeaseStatus, error) {
	out := make([]backends.LeaseStatus, 0, len(p.Leases))
	if len(p.Leases) == 0 {
		return out, nil
	}
	ids := make([]int64, len(p.Leases))
	tokens := make([]int64, len(p.Leases))
	for i, l := range p.Leases {
		ids[i], tokens[i] = l.StepID, l.Token
	}
	live := map[backends.Lease]bool{} // current lease -> cancel requested
	err := s.tx(ctx, func(tx pgx.Tx) error {
		clear(live)
		rows, err := tx.Query(ctx, `UPDATE steps s SET lease_expires_at = $1, updated_at = $2
			FROM unnest($3::bigint[], $4::bigint[]) AS l(id, token)
			WHERE s.id = l.id AND s.lease_token = l.token AND s.state = 'in_progress' AND s.lease_owner = $5
			RETURNING s.id, s.lease_token, s.cancel_requested`,
			ts(p.Now.Add(p.LeaseDuration)), ts(p.Now), ids, tokens, p.Owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				l      backends.Lease
				cancel bool
			)
			if err := rows.Scan(&l.StepID, &l.Token, &cancel); err != nil {
				return err
			}
			live[l] = cancel
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("extending %d leases for %s: %w", len(p.Leases), p.Owner, err)
	}
	for _, l := range p.Leases {
		cancel, ok := live[l]
		out = append(out, backends.LeaseStatus{StepID: l.StepID, Lost: !ok, CancelRequested: cancel})
	}
	return out, nil
}
