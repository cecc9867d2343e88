package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
)

// wrongCounters lists the steps whose unsatisfied_parents (migration 0002)
// differs from the true number of parents not complete or resolved_manually.
func wrongCounters(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.writer.Query(`SELECT id, unsatisfied_parents, (SELECT count(*)
			FROM edges e JOIN steps p ON p.id = e.parent_step_id
			WHERE e.child_step_id = s.id AND p.state NOT IN ('complete', 'resolved_manually'))
		FROM steps s`)
	require.NoError(t, err)
	defer rows.Close()
	var wrong []string
	for rows.Next() {
		var id, counter, truth int64
		require.NoError(t, rows.Scan(&id, &counter, &truth))
		if counter != truth {
			wrong = append(wrong, fmt.Sprintf("step %d: counter %d, true %d", id, counter, truth))
		}
	}
	require.NoError(t, rows.Err())
	return wrong
}

// claimableWithoutPrefilter is claimRestSQL without the unsatisfied_parents
// pre-filter: the steps it would claim by the readiness rule alone.
var claimableWithoutPrefilter = strings.ReplaceAll(claimRestSQL, "AND s.unsatisfied_parents = 0", "")

func readyIDs(t *testing.T, s *Store, query string, now time.Time) []int64 {
	t.Helper()
	rows, err := s.writer.Query(query, sql.Named("now", micros(now)), sql.Named("limit", 1_000_000),
		sql.Named("excluded", "[]"), sql.Named("picked", "[]"))
	require.NoError(t, err)
	defer rows.Close()
	var ids []int64
	cols, err := rows.Columns()
	require.NoError(t, err)
	for rows.Next() {
		// The step's id is the first column; the rest is for the claim.
		var id int64
		dest := []any{&id}
		for range cols[1:] {
			dest = append(dest, new(any))
		}
		require.NoError(t, rows.Scan(dest...))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// TestUnsatisfiedParentsCounter drives random Store operations (creates with
// bypassed steps, claims, completions, failures, lease recoveries, operator
// resolves, cancels and retries) and checks after each that every step's
// unsatisfied_parents is exact and that the pre-filtered claim query picks
// the same steps, in the same order, as the readiness rule alone.
func TestUnsatisfiedParentsCounter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ops := 400
	if raceEnabled || testing.Short() {
		ops = 150
	}
	var (
		tasks  []int64
		claims []*backends.Claim
	)
	newTask := func() {
		steps := backendtest.RandomDAG(2+rng.IntN(12), rng.Uint64())
		for i := range steps {
			steps[i].Skippable = true
			steps[i].Bypass = rng.IntN(6) == 0
		}
		task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w",
			WorkflowVersion: "0.1.0", Steps: steps, Now: now})
		require.NoError(t, err)
		tasks = append(tasks, task.ID)
	}
	randomStep := func() *backends.Step {
		steps, err := s.ListSteps(ctx, tasks[rng.IntN(len(tasks))])
		require.NoError(t, err)
		if len(steps) == 0 {
			return nil
		}
		return steps[rng.IntN(len(steps))]
	}
	for range 3 {
		newTask()
	}
	for op := 0; op < ops; op++ {
		now = now.Add(time.Duration(rng.IntN(40)) * time.Second)
		switch k := rng.IntN(100); {
		case k < 10:
			newTask()
		case k < 40:
			cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1 + rng.IntN(4), LeaseDuration: time.Minute, Now: now})
			require.NoError(t, err)
			claims = append(claims, cs...)
		case k < 70 && len(claims) > 0:
			i := rng.IntN(len(claims))
			c := claims[i]
			claims = append(claims[:i], claims[i+1:]...)
			var err error
			if rng.IntN(4) == 0 {
				_, err = s.FailStep(ctx, &backends.FailStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now,
					Error: backends.StepError{Message: "x", Retryable: rng.IntN(3) > 0, Kind: backends.ErrorKindHandler}})
			} else {
				_, err = s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now})
			}
			if err != nil {
				require.ErrorIs(t, err, backends.ErrLeaseLost)
			}
		case k < 75:
			_, err := s.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: 10, Now: now})
			require.NoError(t, err)
		case k < 85:
			if st := randomStep(); st != nil {
				_, err := s.ResolveStep(ctx, &backends.ResolveStepParams{StepID: st.ID, Reason: "op", Now: now})
				if err != nil {
					require.ErrorIs(t, err, backends.ErrInvalidTransition)
				}
			}
		case k < 90:
			if st := randomStep(); st != nil {
				_, err := s.RetryStep(ctx, &backends.RetryStepParams{StepID: st.ID, Reason: "op", Now: now})
				if err != nil {
					require.ErrorIs(t, err, backends.ErrInvalidTransition)
				}
			}
		case k < 95:
			if st := randomStep(); st != nil {
				_, err := s.CancelStep(ctx, &backends.CancelStepParams{StepID: st.ID, Reason: "op", Now: now})
				if err != nil {
					require.ErrorIs(t, err, backends.ErrInvalidTransition)
				}
			}
		default:
			_, err := s.CancelTask(ctx, &backends.CancelTaskParams{TaskID: tasks[rng.IntN(len(tasks))], Reason: "op", Now: now})
			if err != nil {
				require.ErrorIs(t, err, backends.ErrInvalidTransition)
			}
		}
		require.Empty(t, wrongCounters(t, s), "after operation %d", op)
		// As sets: without the pre-filter the candidates do not match
		// steps_claimable's predicate, so they come in another order.
		require.ElementsMatch(t, readyIDs(t, s, claimableWithoutPrefilter, now), readyIDs(t, s, claimRestSQL, now), "after operation %d", op)
	}
}

// Migration 0002 counts what a database written by 0001 already holds.
func TestMigration0002Backfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, path := openFile(t, "?synchronous=normal")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := backendtest.RandomDAG(30, 3)
	steps[4].Skippable, steps[4].Bypass = true, true
	_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w",
		WorkflowVersion: "0.1.0", Steps: steps, Now: now})
	require.NoError(t, err)
	for i := 0; i < 12; i++ {
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1, LeaseDuration: time.Minute, Now: now})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		_, err = s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: now})
		require.NoError(t, err)
	}
	var before string
	require.NoError(t, s.writer.QueryRow(`SELECT group_concat(unsatisfied_parents) FROM (SELECT unsatisfied_parents FROM steps ORDER BY id)`).Scan(&before))
	require.NotEqual(t, strings.Repeat("0,", 29)+"0", before)
	// Back to schema version 1.
	rewindTo0002(t, s)
	_, err = s.writer.Exec(`DROP INDEX steps_claimable;
		ALTER TABLE steps DROP COLUMN unsatisfied_parents;
		CREATE INDEX steps_claimable ON steps (task_id, position) WHERE state IN ('pending', 'error');
		DELETE FROM taskerd_schema_migrations WHERE version > 1`)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s2, err := Open(ctx, "sqlite:"+path+"?synchronous=normal")
	require.NoError(t, err)
	defer s2.Close()
	var after string
	require.NoError(t, s2.writer.QueryRow(`SELECT group_concat(unsatisfied_parents) FROM (SELECT unsatisfied_parents FROM steps ORDER BY id)`).Scan(&after))
	require.Equal(t, before, after)
	require.Empty(t, wrongCounters(t, s2))
}
