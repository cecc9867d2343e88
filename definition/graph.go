package definition

import (
	"fmt"
	"strings"
)

// Graph is the JSON form of a workflow's DAG.
type Graph struct {
	Workflow string      `json:"workflow"`
	Nodes    []GraphNode `json:"nodes"`
	Edges    []Edge      `json:"edges"`
	Levels   [][]string  `json:"levels"`
}

// GraphNode is one step in a Graph.
type GraphNode struct {
	Name    string `json:"name"`
	Handler string `json:"handler"`
	Level   int    `json:"level"`
}

// Graph returns the workflow's DAG: nodes in topological order, edges ordered
// by child, and the steps of each level.
func (w *Workflow) Graph() Graph {
	g := Graph{Workflow: w.ID(), Edges: w.Edges(), Nodes: []GraphNode{}, Levels: [][]string{}}
	if g.Edges == nil {
		g.Edges = []Edge{}
	}
	for _, s := range w.order {
		g.Nodes = append(g.Nodes, GraphNode{Name: s.Name, Handler: s.Handler.String(), Level: s.Level})
	}
	for _, level := range w.levels {
		names := make([]string, len(level))
		for i, s := range level {
			names[i] = s.Name
		}
		g.Levels = append(g.Levels, names)
	}
	return g
}

// Mermaid renders the workflow as a Mermaid flowchart (graph TD), each node
// showing the step's name and handler.
func (w *Workflow) Mermaid() string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: %s\n---\ngraph TD\n", w.ID())
	for _, s := range w.order {
		fmt.Fprintf(&b, "  %s[\"%s<br/><small>%s</small>\"]\n", MermaidID(s), s.Name, s.Handler)
	}
	for _, e := range w.Edges() {
		fmt.Fprintf(&b, "  %s --> %s\n", MermaidID(w.byName[e.From]), MermaidID(w.byName[e.To]))
	}
	return b.String()
}

// MermaidID is the Mermaid node id of a step. The prefix keeps names such as
// "end", which Mermaid reserves, from breaking the chart; a name with a dash
// (Mermaid reads dashes as edge syntax) is identified by its index instead,
// which cannot collide with a step_ id.
func MermaidID(s *Step) string {
	if strings.Contains(s.Name, "-") {
		return fmt.Sprintf("s%d", s.Index)
	}
	return "step_" + s.Name
}
