package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// taskGraph is a task's DAG with each step's status, from the task's own
// steps and edges (its workflow may no longer be loaded).
func (s *Server) taskGraph(r *http.Request, taskID int64, steps []stepView) (*taskGraphView, error) {
	edges, err := s.store.ListEdges(r.Context(), taskID)
	if err != nil {
		return nil, err
	}
	return graphOf(steps, edges), nil
}

// graphOf is the graph of a task's steps (in Position order) and edges.
func graphOf(steps []stepView, edges []backends.Edge) *taskGraphView {
	byID := make(map[int64]*stepView, len(steps))
	for i := range steps {
		byID[steps[i].ID] = &steps[i]
	}
	parents := map[int64][]int64{}
	g := &taskGraphView{Nodes: []taskGraphNode{}, Edges: []graphEdge{}, Levels: [][]string{}}
	for _, e := range edges {
		parents[e.ChildStepID] = append(parents[e.ChildStepID], e.ParentStepID)
		g.Edges = append(g.Edges, graphEdge{From: byID[e.ParentStepID].Name, To: byID[e.ChildStepID].Name})
	}
	// Steps are in topological order (Position), so a parent's level is
	// known before its children's: level = longest path from a root.
	level := map[int64]int{}
	for _, st := range steps {
		l := 0
		for _, p := range parents[st.ID] {
			l = max(l, level[p]+1)
		}
		level[st.ID] = l
		for len(g.Levels) <= l {
			g.Levels = append(g.Levels, []string{})
		}
		g.Levels[l] = append(g.Levels[l], st.Name)
		g.Nodes = append(g.Nodes, taskGraphNode{Name: st.Name, Handler: st.Handler, Level: l, Status: st.Status, Attempts: st.Attempts})
	}
	return g
}

// statusColours fill a task's Mermaid nodes by step status.
var statusColours = map[string]string{
	string(backends.StatePending):          "fill:#eeeeee,stroke:#999999",
	string(backends.StateInProgress):       "fill:#cfe2ff,stroke:#0d6efd",
	string(backends.StateComplete):         "fill:#d1e7dd,stroke:#198754",
	string(backends.StateError):            "fill:#f8d7da,stroke:#dc3545",
	string(backends.StateCancelled):        "fill:#fff3cd,stroke:#997404",
	string(backends.StateResolvedManually): "fill:#e2d9f3,stroke:#6f42c1",
}

// taskMermaid renders a task's graph as Mermaid, nodes showing name, status
// and attempts, coloured by status (SEMANTICS §7).
func taskMermaid(task *backends.Task, g *taskGraphView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: task %d (%s/%s@%s) %s\n---\ngraph TD\n", task.ID, task.Namespace, task.WorkflowName, task.WorkflowVersion, task.State)
	ids := make(map[string]string, len(g.Nodes))
	for i, n := range g.Nodes {
		id := fmt.Sprintf("s%d", i)
		ids[n.Name] = id
		fmt.Fprintf(&b, "  %s[\"%s<br/><small>%s · attempts %d</small>\"]:::%s\n", id, mermaidText(n.Name), n.Status, n.Attempts, n.Status)
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s --> %s\n", ids[e.From], ids[e.To])
	}
	for _, st := range backends.AllStates {
		fmt.Fprintf(&b, "  classDef %s %s\n", st, statusColours[string(st)])
	}
	return b.String()
}

// mermaidText escapes a label's quotes.
func mermaidText(s string) string { return strings.ReplaceAll(s, `"`, "#quot;") }

func graphFormat(r *http.Request) (string, error) {
	f := r.URL.Query().Get("format")
	switch f {
	case "", "mermaid":
		return "mermaid", nil
	case "json":
		return "json", nil
	}
	return "", badRequest("format must be mermaid or json, not %q", f)
}

func writeMermaid(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/vnd.mermaid; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(text))
}

func (s *Server) taskGraphRoute(w http.ResponseWriter, r *http.Request) error {
	format, err := graphFormat(r)
	if err != nil {
		return err
	}
	task, err := s.loadTask(r, "task:show")
	if err != nil {
		return err
	}
	steps, err := s.stepViews(r, task.ID, s.now())
	if err != nil {
		return err
	}
	g, err := s.taskGraph(r, task.ID, steps)
	if err != nil {
		return err
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, g)
		return nil
	}
	writeMermaid(w, taskMermaid(task, g))
	return nil
}

// Workflows.

type workflowSummary struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	Steps       int    `json:"steps"`
	File        string `json:"file"`
	availability
}

// availability says whether this node can run a workflow: false when a
// handler it names is not registered (a plugin not configured); tasks of
// it are then refused with workflow_unavailable.
type availability struct {
	Available       bool     `json:"available"`
	MissingHandlers []string `json:"missing_handlers,omitempty"`
	Reason          string   `json:"unavailable_reason,omitempty"`
}

func (s *Server) availability(wf *definition.Workflow) availability {
	missing := s.eng.MissingHandlers(wf)
	if len(missing) == 0 {
		return availability{Available: true}
	}
	return availability{MissingHandlers: missing, Reason: engine.UnavailableReason(missing)}
}

type workflowView struct {
	Namespace     string            `json:"namespace"`
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	Description   string            `json:"description"`
	ContextSchema any               `json:"context_schema"`
	Steps         []workflowStep    `json:"steps"`
	Levels        [][]string        `json:"levels"`
	Edges         []definition.Edge `json:"edges"`
	availability
}

type workflowStep struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Handler     string   `json:"handler"`
	DependsOn   []string `json:"depends_on"`
	Level       int      `json:"level"`
	Skippable   bool     `json:"skippable"`
	Retryable   bool     `json:"retryable"`
	RetryLimit  int      `json:"retry_limit"`
	TimeoutMs   int64    `json:"timeout_ms"`
}

func (s *Server) listWorkflows(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "workflow:index", Resource{Type: "workflow"}); err != nil {
		return err
	}
	out := []workflowSummary{}
	for _, wf := range s.eng.Catalog().All() {
		out = append(out, workflowSummary{Namespace: wf.Namespace, Name: wf.Name, Version: wf.Version.String(),
			Description: wf.Description, Steps: len(wf.Steps), File: wf.Filename(), availability: s.availability(wf)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflows": out})
	return nil
}

// loadWorkflowVersions reads {namespace}/{name} and authorizes action.
func (s *Server) loadWorkflowVersions(r *http.Request, action string) ([]*definition.Workflow, error) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := s.authorize(r, action, Resource{Type: "workflow", Namespace: ns, Workflow: ns + "/" + name}); err != nil {
		return nil, err
	}
	versions := s.eng.Catalog().Versions(ns, name)
	if len(versions) == 0 {
		return nil, notFound("no workflow %s/%s is loaded", ns, name)
	}
	return versions, nil
}

func newWorkflowView(wf *definition.Workflow) workflowView {
	g := wf.Graph()
	v := workflowView{Namespace: wf.Namespace, Name: wf.Name, Version: wf.Version.String(), Description: wf.Description,
		Levels: g.Levels, Edges: g.Edges, Steps: []workflowStep{}}
	if len(wf.ContextSchema) > 0 {
		v.ContextSchema = wf.ContextSchema
	}
	for _, st := range wf.Order() {
		deps := st.DependsOn
		if deps == nil {
			deps = []string{}
		}
		v.Steps = append(v.Steps, workflowStep{Name: st.Name, Description: st.Description, Handler: st.Handler.String(),
			DependsOn: deps, Level: st.Level, Skippable: st.Skippable, Retryable: st.Retryable,
			RetryLimit: st.Retry.Limit, TimeoutMs: st.Timeout.Milliseconds()})
	}
	return v
}

func (s *Server) showWorkflow(w http.ResponseWriter, r *http.Request) error {
	versions, err := s.loadWorkflowVersions(r, "workflow:show")
	if err != nil {
		return err
	}
	views := make([]workflowView, len(versions))
	for i, wf := range versions {
		views[i] = newWorkflowView(wf)
		views[i].availability = s.availability(wf)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"namespace": versions[0].Namespace, "name": versions[0].Name, "versions": views,
	})
	return nil
}

func (s *Server) workflowGraph(w http.ResponseWriter, r *http.Request) error {
	format, err := graphFormat(r)
	if err != nil {
		return err
	}
	versions, err := s.loadWorkflowVersions(r, "workflow:show")
	if err != nil {
		return err
	}
	wf := versions[0] // the highest
	if v := r.URL.Query().Get("version"); v != "" {
		wf = nil
		for _, c := range versions {
			if c.Version.String() == v {
				wf = c
			}
		}
		if wf == nil {
			return notFound("workflow %s/%s has no version %s loaded", versions[0].Namespace, versions[0].Name, v)
		}
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, wf.Graph())
		return nil
	}
	writeMermaid(w, wf.Mermaid())
	return nil
}
