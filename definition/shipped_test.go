package definition

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The workflows shipped in workflows/ are the DAG shapes of Tasker's test
// scenarios; their levels and order are asserted by hand here.
func TestShippedWorkflows(t *testing.T) {
	t.Parallel()
	ws, _, diags := Load("../workflows")
	require.Empty(t, diags)
	c := NewCatalog(ws)

	cases := []struct {
		ref    string
		levels [][]string
		order  []string
	}{
		{
			ref:    "default/linear",
			levels: [][]string{{"step_1"}, {"step_2"}, {"step_3"}, {"step_4"}, {"step_5"}, {"step_6"}},
			order:  []string{"step_1", "step_2", "step_3", "step_4", "step_5", "step_6"},
		},
		{
			ref:    "default/diamond",
			levels: [][]string{{"start"}, {"branch_a1", "branch_b1"}, {"branch_a2", "branch_b2"}, {"merge"}, {"end"}},
			order:  []string{"start", "branch_a1", "branch_b1", "branch_a2", "branch_b2", "merge", "end"},
		},
		{
			ref:    "default/tree",
			levels: [][]string{{"root"}, {"setup_a", "setup_b"}, {"leaf_a1", "leaf_a2", "leaf_b1", "leaf_b2"}, {"aggregate"}},
			order:  []string{"root", "setup_a", "setup_b", "leaf_a1", "leaf_a2", "leaf_b1", "leaf_b2", "aggregate"},
		},
		{
			ref:    "default/parallel_merge",
			levels: [][]string{{"fetch_a", "fetch_b", "fetch_c", "fetch_d"}, {"transform_a", "transform_b"}, {"merge_all"}},
			order:  []string{"fetch_a", "fetch_b", "fetch_c", "fetch_d", "transform_a", "transform_b", "merge_all"},
		},
		{
			// publish depends on ingest (level 0) too, but its level is the
			// longest path: ingest -> enrich -> score -> review -> publish.
			ref:    "default/mixed",
			levels: [][]string{{"ingest"}, {"validate_schema", "enrich", "audit_log"}, {"score"}, {"review"}, {"publish"}},
			order:  []string{"ingest", "validate_schema", "enrich", "audit_log", "score", "review", "publish"},
		},
		{
			ref:    "ecommerce/order_fulfillment",
			levels: [][]string{{"validate_order"}, {"reserve_inventory", "process_payment"}, {"ship_order", "send_confirmation"}},
			order:  []string{"validate_order", "reserve_inventory", "process_payment", "ship_order", "send_confirmation"},
		},
	}
	require.Len(t, c.All(), len(cases), "every shipped workflow is covered here")
	for _, tc := range cases {
		t.Run(tc.ref, func(t *testing.T) {
			ref, err := ParseRef(tc.ref)
			require.NoError(t, err)
			w, err := c.Lookup(ref)
			require.NoError(t, err)
			require.Equal(t, tc.levels, w.Graph().Levels)
			require.Equal(t, tc.order, names(w.Order()))
			requireTopological(t, w)
		})
	}
}

func names(steps []*Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

// requireTopological checks the invariants every valid workflow holds: the
// order lists each step once with parents first, and each level is one more
// than the deepest parent's.
func requireTopological(t testing.TB, w *Workflow) {
	t.Helper()
	pos := map[string]int{}
	for i, s := range w.Order() {
		pos[s.Name] = i
	}
	require.Len(t, pos, len(w.Steps))
	total := 0
	for lvl, steps := range w.Levels() {
		total += len(steps)
		for _, s := range steps {
			require.Equal(t, lvl, s.Level)
		}
	}
	require.Equal(t, len(w.Steps), total)
	for _, s := range w.Steps {
		want := 0
		for _, p := range s.DependsOn {
			require.Less(t, pos[p], pos[s.Name], "%s must come before %s", p, s.Name)
			want = max(want, w.Step(p).Level+1)
		}
		require.Equal(t, want, s.Level, "level of %s", s.Name)
	}
}
