package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// Listing limits.
const (
	defaultListLimit = 50
	maxListLimit     = 500
)

// decodeBody reads a JSON object into v, refusing unknown fields, trailing
// data and (through the server's MaxBytesReader) oversized bodies. An
// empty body is allowed when optional.
func decodeBody(r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return badRequest("reading the request body: %s", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return badRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %s", jsonMessage(err))
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the JSON object")
	}
	// Decoding turned what cannot be stored into U+FFFD (bytes that are not
	// UTF-8, unpaired surrogates) or kept it (\u0000): refuse it, from the
	// raw bytes, rather than store it "fixed" on one backend and fail on
	// the other.
	return checkBodyText(body)
}

// jsonMessage makes a decoding error readable.
func jsonMessage(err error) string {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s at byte %d", syntax, syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// createTaskBody is POST /v1/tasks.
type createTaskBody struct {
	Workflow     string          `json:"workflow"`
	Version      string          `json:"version"`
	Context      json.RawMessage `json:"context"`
	Initiator    string          `json:"initiator"`
	SourceSystem string          `json:"source_system"`
	Reason       string          `json:"reason"`
	Tags         []string        `json:"tags"`
	BypassSteps  []string        `json:"bypass_steps"`
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) error {
	var body createTaskBody
	if err := decodeBody(r, &body, false); err != nil {
		return err
	}
	if body.Workflow == "" {
		return badRequest("workflow is required (NAMESPACE/NAME)")
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	if strings.Contains(body.Workflow, "@") {
		return badRequest("workflow %q: give the version in the version field", body.Workflow)
	}
	ref := body.Workflow
	if body.Version != "" {
		ref += "@" + body.Version
	}
	parsed, err := definition.ParseRef(ref)
	if err != nil {
		return badRequest("workflow: %s", err)
	}
	res := CreateTaskResource(parsed.Namespace, parsed.Name, body.Version)
	if err := s.authorize(r, "task:create", res); err != nil {
		return err
	}
	task, created, err := s.eng.CreateTask(r.Context(), engine.CreateRequest{
		Workflow: ref, Context: body.Context, Initiator: body.Initiator, SourceSystem: body.SourceSystem,
		Reason: body.Reason, Tags: body.Tags, BypassSteps: body.BypassSteps,
		IdempotencyKey: key,
	})
	if err != nil {
		return err
	}
	s.traceTask(r.Context(), task, created)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.metrics.tasksCreated.WithLabelValues(res.Workflow).Inc()
		w.Header().Set("Location", fmt.Sprintf("/v1/tasks/%d", task.ID))
	}
	writeJSON(w, status, newTaskView(task))
	return nil
}

// listFilters are the query parameters of GET /v1/tasks.
var listFilters = []string{"limit", "cursor", "status", "namespace", "workflow", "created_after", "created_before", "tag"}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	query, q := r.URL.Query(), map[string]string{}
	for _, name := range listFilters {
		v, err := queryText(query, name)
		if err != nil {
			return err
		}
		q[name] = v
	}
	p := backends.ListTasksParams{Limit: defaultListLimit}
	if v := q["limit"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return fieldError("limit", "query", "limit must be an integer from 1 to %d, not %q", maxListLimit, v)
		}
		p.Limit = n
	}
	if v := q["cursor"]; v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return fieldError("cursor", "query", "cursor %q is not one this server returned", v)
		}
		p.BeforeID = id
	}
	if v := q["status"]; v != "" {
		for _, st := range strings.Split(v, ",") {
			state := backends.State(strings.TrimSpace(st))
			if !validState(state) {
				return fieldError("status", "query", "status %q is not a task state (pending, in_progress, complete, error, cancelled, resolved_manually)", st)
			}
			p.States = append(p.States, state)
		}
	}
	namespace := q["namespace"]
	if v := q["workflow"]; v != "" {
		ns, name, ok := strings.Cut(v, "/")
		if !ok {
			ns, name = definition.DefaultNamespace, v
		}
		if namespace != "" && namespace != ns {
			// Both filters hold for no task.
			writeJSON(w, http.StatusOK, map[string]any{"tasks": []taskView{}, "next_cursor": nil})
			return nil
		}
		namespace, p.WorkflowName = ns, name
	}
	if namespace != "" {
		p.Namespaces = []string{namespace}
	}
	for _, f := range []struct {
		name string
		into **time.Time
	}{{"created_after", &p.CreatedAfter}, {"created_before", &p.CreatedBefore}} {
		if v := q[f.name]; v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fieldError(f.name, "query", "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, not %q", f.name, v)
			}
			t = t.UTC()
			*f.into = &t
		}
	}
	p.Tag = q["tag"]
	if err := s.authorize(r, "task:index", Resource{Type: "task", Namespace: namespace}); err != nil {
		if namespace != "" {
			return err
		}
		// Not every namespace: list the tasks of those the subject may see,
		// one decision per namespace rather than per row.
		allowed, ferr := s.visibleNamespaces(r)
		if ferr != nil || len(allowed) == 0 {
			return err
		}
		p.Namespaces = allowed
	}
	want := p.Limit
	p.Limit++ // one more tells whether there is a next page
	tasks, err := s.store.ListTasks(r.Context(), &p)
	if err != nil {
		return err
	}
	var next any
	if len(tasks) > want {
		tasks = tasks[:want]
		next = strconv.FormatInt(tasks[want-1].ID, 10)
	}
	views := make([]taskView, len(tasks))
	for i, t := range tasks {
		views[i] = newTaskView(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": views, "next_cursor": next})
	return nil
}

func validState(s backends.State) bool {
	for _, st := range backends.AllStates {
		if s == st {
			return true
		}
	}
	return false
}

// loadTask reads the task of the {id} path value and authorizes action on
// it.
func (s *Server) loadTask(r *http.Request, action string) (*backends.Task, error) {
	return s.loadTaskFor(r, action, "task", "")
}

// loadTaskFor reads the task of {id} and authorizes action on a resource of
// type typ in it (step: the step's name, or "" for all its steps): one
// decision per request.
func (s *Server) loadTaskFor(r *http.Request, action, typ, step string) (*backends.Task, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	return s.authorizeTask(r, id, action, typ, step)
}

// authorizeTask reads task id and authorizes action on a resource of type
// typ in it: 404 for a task that does not exist only to a subject the
// policy allows the action without a namespace, 403 otherwise.
func (s *Server) authorizeTask(r *http.Request, id int64, action, typ, step string) (*backends.Task, error) {
	task, err := s.store.GetTask(r.Context(), id)
	if errors.Is(err, backends.ErrNotFound) {
		// Authorize before saying whether it exists, as for a task of a
		// namespace one may not see.
		if aerr := s.authorize(r, action, Resource{Type: typ, TaskID: id, Step: step}); aerr != nil {
			return nil, aerr
		}
		return nil, notFound("task %d does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	res := TaskResource(task, typ, step)
	if err := s.authorize(r, action, res); err != nil {
		return nil, err
	}
	return task, nil
}

// TaskResource is the Resource the routes of a task authorize on: typ
// "task" for the task itself, "step" for one of its steps (step: its name,
// or "" for all of them). The web UI asks the policy with it too, so that
// its buttons mirror what these routes would allow.
func TaskResource(task *backends.Task, typ, step string) Resource {
	return Resource{Type: typ, Namespace: task.Namespace, Workflow: task.Namespace + "/" + task.WorkflowName,
		Version: task.WorkflowVersion, TaskID: task.ID, Step: step}
}

// CreateTaskResource is the Resource POST /v1/tasks authorizes
// task:create on for workflow namespace/name (version: as the request
// gives it, "" for the highest loaded).
func CreateTaskResource(namespace, name, version string) Resource {
	return Resource{Type: "task", Namespace: namespace, Workflow: namespace + "/" + name, Version: version}
}

// taskDetail is the task with its steps (with readiness) and its execution
// context, read at one instant.
func (s *Server) taskDetail(r *http.Request, task *backends.Task, graph bool) (taskView, error) {
	ctx, now := r.Context(), s.now()
	v := newTaskView(task)
	steps, err := s.stepViews(r, task.ID, now)
	if err != nil {
		return v, err
	}
	ec, err := s.store.TaskExecutionContext(ctx, task.ID, now)
	if err != nil {
		return v, err
	}
	v.Steps, v.ExecutionContext = steps, newContextView(ec)
	if graph {
		g, err := s.taskGraph(r, task.ID, steps)
		if err != nil {
			return v, err
		}
		v.Graph = g
	}
	return v, nil
}

func (s *Server) stepViews(r *http.Request, taskID int64, now time.Time) ([]stepView, error) {
	return consistentStepViews(func() ([]*backends.Step, []backends.ReadinessRow, error) {
		steps, err := s.store.ListSteps(r.Context(), taskID)
		if err != nil {
			return nil, nil, err
		}
		rows, err := s.store.StepReadiness(r.Context(), taskID, now)
		return steps, rows, err
	})
}

// consistentStepViews builds step views from read, which reads the steps
// and then their readiness in two statements: a step that moved between
// them (failed, then claimed for its retry) would be shown in one state
// with the readiness of another, say "error" with no retry time. It reads
// again, a few times, until every readiness row agrees with its step's
// state and attempts.
func consistentStepViews(read func() ([]*backends.Step, []backends.ReadinessRow, error)) ([]stepView, error) {
	for try := 1; ; try++ {
		steps, rows, err := read()
		if err != nil {
			return nil, err
		}
		if try == 3 || readinessAgrees(steps, rows) {
			return stepViewsOf(steps, rows), nil
		}
	}
}

// readinessAgrees reports whether every readiness row has its step's state
// and attempts.
func readinessAgrees(steps []*backends.Step, rows []backends.ReadinessRow) bool {
	byID := make(map[int64]*backends.Step, len(steps))
	for _, st := range steps {
		byID[st.ID] = st
	}
	for _, row := range rows {
		if st := byID[row.StepID]; st != nil && (st.State != row.CurrentState || st.Attempts != row.Attempts) {
			return false
		}
	}
	return true
}

// stepViewsOf is the views of steps with their readiness rows (of any
// tasks: a step without a row has no readiness).
func stepViewsOf(steps []*backends.Step, rows []backends.ReadinessRow) []stepView {
	byID := make(map[int64]backends.ReadinessRow, len(rows))
	for _, row := range rows {
		byID[row.StepID] = row
	}
	views := make([]stepView, len(steps))
	for i, st := range steps {
		views[i] = newStepView(st)
		if row, ok := byID[st.ID]; ok {
			views[i].Readiness = newReadinessView(row)
		}
	}
	return views
}

func (s *Server) showTask(w http.ResponseWriter, r *http.Request) error {
	task, err := s.loadTask(r, "task:show")
	if err != nil {
		return err
	}
	include := r.URL.Query().Get("include")
	if include != "" && include != "graph" {
		return badRequest("include may only be graph, not %q", include)
	}
	v, err := s.taskDetail(r, task, include == "graph")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

type patchTaskBody struct {
	Reason *string   `json:"reason"`
	Tags   *[]string `json:"tags"`
}

func (s *Server) patchTask(w http.ResponseWriter, r *http.Request) error {
	task, err := s.loadTask(r, "task:update")
	if err != nil {
		return err
	}
	var body patchTaskBody
	if err := decodeBody(r, &body, false); err != nil {
		return err
	}
	if body.Reason == nil && body.Tags == nil {
		return badRequest("nothing to change: send reason and/or tags (the only fields a task may change)")
	}
	p := &backends.UpdateTaskParams{TaskID: task.ID, Reason: body.Reason, Now: s.now()}
	if body.Tags != nil {
		p.Tags = *body.Tags
		if p.Tags == nil {
			p.Tags = []string{}
		}
	}
	updated, err := s.eng.UpdateTask(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newTaskView(updated))
	return nil
}

type actionBody struct {
	Reason string `json:"reason"`
}

// taskAction is POST /v1/tasks/{id}/cancel|retry|resolve.
func (s *Server) taskAction(verb string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		task, err := s.loadTask(r, "task:"+verb)
		if err != nil {
			return err
		}
		var body actionBody
		if err := decodeBody(r, &body, true); err != nil {
			return err
		}
		reason := actionReason(r, verb, body.Reason)
		switch verb {
		case "cancel":
			_, err = s.eng.CancelTask(r.Context(), task.ID, reason)
		case "retry":
			_, err = s.eng.RetryTask(r.Context(), task.ID, reason)
		case "resolve":
			_, err = s.eng.ResolveTask(r.Context(), task.ID, reason)
		}
		if err != nil {
			return err
		}
		return s.writeTask(w, r, task.ID)
	}
}

func (s *Server) writeTask(w http.ResponseWriter, r *http.Request, id int64) error {
	task, err := s.store.GetTask(r.Context(), id)
	if err != nil {
		return err
	}
	v, err := s.taskDetail(r, task, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// actionReason is the audit trail's reason for an operator action: the
// caller's, or who asked over the API.
func actionReason(r *http.Request, verb, given string) string {
	if given != "" {
		return given
	}
	return verb + " requested over the API by " + subjectID(r)
}

func subjectID(r *http.Request) string {
	if sub := SubjectFrom(r.Context()); sub != nil {
		return sub.ID
	}
	return "unknown"
}

func (s *Server) listTransitions(w http.ResponseWriter, r *http.Request) error {
	task, err := s.loadTask(r, "task:show")
	if err != nil {
		return err
	}
	trs, err := s.store.ListTransitions(r.Context(), task.ID)
	if err != nil {
		return err
	}
	steps, err := s.store.ListSteps(r.Context(), task.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"transitions": transitionViews(trs, steps)})
	return nil
}

// transitionViews is the views of trs, their step names taken from steps.
func transitionViews(trs []*backends.Transition, steps []*backends.Step) []transitionView {
	names := make(map[int64]string, len(steps))
	for _, st := range steps {
		names[st.ID] = st.Name
	}
	views := make([]transitionView, len(trs))
	for i, t := range trs {
		views[i] = newTransitionView(t, names)
	}
	return views
}

// NamespaceFilter is an Authorizer that can tell, of some namespaces,
// which ones a subject may act in, one decision per namespace (the policy
// engine is one).
type NamespaceFilter interface {
	AllowedNamespaces(ctx context.Context, subject *Subject, action string, candidates []string) ([]string, error)
}

// visibleNamespaces are the namespaces in which the subject may task:show,
// among those that hold a task (whether or not a loaded workflow still
// names them) and those of the loaded workflows.
func (s *Server) visibleNamespaces(r *http.Request) ([]string, error) {
	nf, ok := s.authz.(NamespaceFilter)
	if !ok {
		return nil, errors.New("the authorizer cannot filter by namespace")
	}
	candidates, err := s.store.TaskNamespaces(r.Context())
	if err != nil {
		s.log.Warn("reading the namespaces that hold tasks failed; denying", "request_id", RequestID(r.Context()), "err", err)
		return nil, err
	}
	for _, wf := range s.eng.Catalog().All() {
		if !slices.Contains(candidates, wf.Namespace) {
			candidates = append(candidates, wf.Namespace)
		}
	}
	allowed, err := nf.AllowedNamespaces(r.Context(), SubjectFrom(r.Context()), "task:show", candidates)
	if err != nil {
		s.log.Warn("filtering the task list by namespace failed; denying", "request_id", RequestID(r.Context()), "err", err)
		return nil, err
	}
	return allowed, nil
}
