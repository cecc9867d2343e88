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

func TestClaimQueryUsesPartialIndex(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "plan.db")+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	plan := queryPlan(t, s, claimSQL, sql.Named("now", 0), sql.Named("limit", 10))
	t.Log("claim plan:\n" + plan)
	// The claim walks the partial index of unfinished steps in claim order:
	// no full scan of steps, no sort.
	require.Contains(t, plan, "SCAN s USING INDEX steps_claimable")
	require.NotContains(t, plan, "TEMP B-TREE")
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
