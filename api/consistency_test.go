package api_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// movedBetweenReads is a store whose first readiness read sees the task's
// steps one move later than the steps read just before it: each claimed
// for a new attempt (in_progress, not ready).
type movedBetweenReads struct {
	backends.Store
	reads atomic.Int32
}

func (m *movedBetweenReads) StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]backends.ReadinessRow, error) {
	rows, err := m.Store.StepReadiness(ctx, taskID, now)
	if m.reads.Add(1) == 1 {
		for i := range rows {
			rows[i].CurrentState, rows[i].Attempts = backends.StateInProgress, rows[i].Attempts+1
			rows[i].ReadyForExecution, rows[i].NextRetryAt = false, nil
		}
	}
	return rows, err
}

// A step is never shown with the readiness of another instant: when a
// step moved between the read of the steps and the read of their
// readiness, the task is read again.
func TestStepViewsReadinessAgreesWithItsStep(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := &movedBetweenReads{Store: open(t)}
		c := newClient(t, store, options{noRun: true})
		id := createTask(t, c, goodOrder)
		store.reads.Store(0)
		r := c.do("GET", fmt.Sprintf("/v1/tasks/%d", id), nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.EqualValues(t, 2, store.reads.Load(), "read again after a disagreement")
		first := r.json(t)["steps"].([]any)[0].(map[string]any)
		require.Equal(t, "pending", first["status"])
		require.Equal(t, true, first["readiness"].(map[string]any)["ready_for_execution"], "the pending root step is ready")
	})
}
