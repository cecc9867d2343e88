package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// queryPlan returns EXPLAIN QUERY PLAN's details, one per line.
func queryPlan(t testing.TB, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.reader.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		lines = append(lines, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, "\n")
}

// The claim statements walk the partial index of unfinished steps in claim
// order, lazily: the skip scan of task ids (claim_tasks, a co-routine read
// as the outermost loop, a seek per task), then each task's steps through
// the same index. No full scan of steps, no sort (which would read every
// task before the LIMIT could stop), no materialized recursion.
func TestClaimQueriesWalkTasksInOrder(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "plan.db")+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	for name, c := range map[string]struct {
		query, steps string
	}{
		"idle heads": {claimIdleHeadsSQL, "SEARCH h USING INDEX steps_claimable (task_id=?)"},
		"busy heads": {claimBusyHeadsSQL, "SEARCH h USING INDEX steps_claimable (task_id=?)"},
		"rest":       {claimRestSQL, "SEARCH s USING INDEX steps_claimable (task_id=?)"},
	} {
		plan := queryPlan(t, s, c.query, sql.Named("now", 0), sql.Named("limit", 10),
			sql.Named("excluded", "[]"), sql.Named("picked", "[]"))
		t.Logf("%s plan:\n%s", name, plan)
		require.Contains(t, plan, "CO-ROUTINE claim_tasks", name)
		require.Contains(t, plan, "SEARCH s USING INDEX steps_claimable (task_id>?)", name)
		require.Contains(t, plan, c.steps, name)
		if name != "rest" {
			require.Contains(t, plan, "SCAN steps USING INDEX steps_running", "%s: the busy tasks, from the running steps alone", name)
		}
		require.NotContains(t, plan, "TEMP B-TREE", name)
		require.NotContains(t, plan, "MATERIALIZE", name)
	}
}

// NextWakeup's candidates are the claim's: the same partial index, no full
// scan of steps.
func TestNextWakeupQueryUsesPartialIndex(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "plan.db")+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	plan := queryPlan(t, s, nextWakeupSQL, sql.Named("now", 0))
	t.Log("next wakeup plan:\n" + plan)
	require.Contains(t, plan, "SCAN s USING INDEX steps_claimable")
}

func TestQualifiedPrefixesEveryColumn(t *testing.T) {
	require.Equal(t, "tk.id, coalesce(tk.idempotency_key, ''), tk.state",
		qualified("tk", "id, coalesce(idempotency_key, ''), state"))
}
