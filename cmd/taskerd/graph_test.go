package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGraphJSONPrintsLevels(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "graph", "../../workflows/diamond.hcl", "--workflow", "default/diamond", "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var g struct {
		Workflow string `json:"workflow"`
		Nodes    []struct {
			Name    string `json:"name"`
			Handler string `json:"handler"`
			Level   int    `json:"level"`
		} `json:"nodes"`
		Edges []struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"edges"`
		Levels [][]string `json:"levels"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &g))
	require.Equal(t, "default/diamond@0.1.0", g.Workflow)
	require.Equal(t, [][]string{{"start"}, {"branch_a1", "branch_b1"}, {"branch_a2", "branch_b2"}, {"merge"}, {"end"}}, g.Levels)
	require.Len(t, g.Nodes, 7)
	require.Equal(t, "start", g.Nodes[0].Name)
	require.Equal(t, "builtin.noop", g.Nodes[0].Handler)
	require.Equal(t, 4, g.Nodes[6].Level)
	require.Len(t, g.Edges, 7)
}

func TestGraphMermaidIsTheDefault(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "graph", "../../workflows/", "-w", "ecommerce/order_fulfillment@1.0.0")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "graph TD\n")
	require.Contains(t, r.stdout, "  step_validate_order --> step_reserve_inventory\n")
	require.Contains(t, r.stdout, "  step_process_payment --> step_send_confirmation\n")
}

func TestGraphSingleWorkflowNeedsNoFlag(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "graph", "../../workflows/linear.hcl", "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"workflow": "default/linear@0.1.0"`)
}

func TestGraphBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"graph", "../../workflows/"}, 2, "the paths hold 6 workflows: choose one with --workflow"},
		{[]string{"graph", "../../workflows/", "-w", "default/nope"}, 2, "unknown workflow default/nope (loaded: default/diamond,"},
		{[]string{"graph", "../../workflows/", "-w", "default/linear@9.9.9"}, 2, "workflow default/linear has no version 9.9.9 (loaded: 0.1.0)"},
		{[]string{"graph", "../../workflows/", "-w", "a/b/c"}, 2, "want NAMESPACE/NAME or NAMESPACE/NAME@VERSION"},
		{[]string{"graph", "../../workflows/", "-w", "default/linear", "--format", "dot"}, 2, `--format must be mermaid or json, not "dot"`},
	}
	for _, tc := range cases {
		r := runCLI(t, tc.args...)
		require.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.stderr)
		require.Empty(t, r.stdout)
	}

	path := writeFile(t, "cycle.hcl", cycleHCL)
	r := runCLI(t, "graph", path)
	require.Equal(t, 1, r.code, "an invalid workflow file is exit 1, as for validate")
	require.Contains(t, r.stderr, "Dependency cycle")
}
