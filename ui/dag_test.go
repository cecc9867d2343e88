package ui

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildDAG(t *testing.T) {
	long := strings.Repeat("x", 100)
	steps := []stepJSON{
		{Name: "a", Status: "complete", Attempts: 1},
		{Name: "b", Status: "error", Attempts: 3, Error: json.RawMessage(`{"message":"` + long + `"}`)},
		{Name: "c", Status: "pending"},
		{Name: "d/with space", Status: "pending"},
	}
	levels := [][]string{{"a"}, {"b", "c"}, {"d/with space"}}
	edges := []edgeJSON{{From: "a", To: "b"}, {From: "a", To: "c"}, {From: "b", To: "d/with space"}, {From: "c", To: "d/with space"}, {From: "a", To: "gone"}}
	d := buildDAG(levels, edges, steps, "/ui/tasks/7/steps/")
	require.Len(t, d.Nodes, 4)
	require.Len(t, d.Edges, 4, "an edge to a step that is not drawn is left out")
	byName := map[string]dagNode{}
	for _, n := range d.Nodes {
		byName[n.FullName] = n
	}
	a, b, c, dd := byName["a"], byName["b"], byName["c"], byName["d/with space"]
	assert.Equal(t, a.Y, b.Y, "the first of each level is on the top row")
	assert.Less(t, a.X, b.X)
	assert.Equal(t, b.X, c.X, "one column per level")
	assert.Greater(t, c.Y, b.Y)
	assert.Greater(t, dd.X, c.X)
	assert.Equal(t, "error", b.Status)
	assert.Equal(t, "error · attempts 3", b.Detail)
	assert.Equal(t, long, b.FullError)
	assert.LessOrEqual(t, len([]rune(b.Error)), 30, "the box shows the error truncated")
	assert.Equal(t, "/ui/tasks/7/steps/d%2Fwith%20space", dd.Href)
	healed := buildDAG([][]string{{"a"}}, nil, []stepJSON{{Name: "a", Status: "complete", Error: json.RawMessage(`{"message":"once"}`)}}, "")
	assert.Empty(t, healed.Nodes[0].Error, "a step that succeeded since shows no error in its box")
	assert.Equal(t, "once", healed.Nodes[0].FullError)
	assert.GreaterOrEqual(t, d.Width, dd.X+dd.W)
	assert.GreaterOrEqual(t, d.Height, c.Y+c.H)

	wf := buildDAG(levels, edges, nil, "")
	assert.Empty(t, wf.Nodes[0].Status, "a workflow's DAG has no states")
	assert.Empty(t, wf.Nodes[0].Href)
	empty := buildDAG(nil, nil, nil, "")
	assert.Empty(t, empty.Nodes)
}
