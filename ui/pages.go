package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

// The API's JSON shapes, as far as the pages use them.

type taskJSON struct {
	ID               int64           `json:"id"`
	Namespace        string          `json:"namespace"`
	Workflow         string          `json:"workflow"`
	Version          string          `json:"version"`
	Status           string          `json:"status"`
	Context          json.RawMessage `json:"context"`
	Initiator        string          `json:"initiator"`
	SourceSystem     string          `json:"source_system"`
	Reason           string          `json:"reason"`
	Tags             []string        `json:"tags"`
	RequestedAt      time.Time       `json:"requested_at"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
	Steps            []stepJSON      `json:"steps"`
	ExecutionContext map[string]any  `json:"execution_context"`
	Graph            *graphJSON      `json:"graph"`
}

type stepJSON struct {
	ID              int64           `json:"id"`
	Name            string          `json:"name"`
	Handler         string          `json:"handler"`
	Status          string          `json:"status"`
	Attempts        int             `json:"attempts"`
	RetryLimit      int             `json:"retry_limit"`
	Retryable       bool            `json:"retryable"`
	Skippable       bool            `json:"skippable"`
	Results         json.RawMessage `json:"results"`
	Error           json.RawMessage `json:"error"`
	StartedAt       *time.Time      `json:"started_at"`
	LastAttemptedAt *time.Time      `json:"last_attempted_at"`
	LastFailureAt   *time.Time      `json:"last_failure_at"`
	ProcessedAt     *time.Time      `json:"processed_at"`
	LeaseOwner      string          `json:"lease_owner"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	Readiness       map[string]any  `json:"readiness"`
}

type graphJSON struct {
	Edges  []edgeJSON `json:"edges"`
	Levels [][]string `json:"levels"`
}

type edgeJSON struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type transitionJSON struct {
	StepName  string          `json:"step_name"`
	From      *string         `json:"from"`
	To        string          `json:"to"`
	Reason    string          `json:"reason"`
	Metadata  json.RawMessage `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
}

type eventJSON struct {
	Seq        int64           `json:"seq"`
	Type       string          `json:"type"`
	Timestamp  *time.Time      `json:"timestamp"`
	StepName   string          `json:"step_name"`
	Attempt    int             `json:"attempt"`
	DurationMs *int64          `json:"duration_ms"`
	Error      json.RawMessage `json:"error"`
}

type workflowJSON struct {
	Namespace       string          `json:"namespace"`
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	Description     string          `json:"description"`
	Steps           any             `json:"steps"`
	ContextSchema   json.RawMessage `json:"context_schema"`
	Levels          [][]string      `json:"levels"`
	Edges           []edgeJSON      `json:"edges"`
	Available       bool            `json:"available"`
	MissingHandlers []string        `json:"missing_handlers"`
	File            string          `json:"file"`
}

func (t *taskJSON) resource(typ, step string) api.Resource {
	ns, name, _ := strings.Cut(t.Workflow, "/")
	if ns == "" {
		ns = t.Namespace
	}
	return api.TaskResource(&backends.Task{ID: t.ID, Namespace: ns, WorkflowName: name, WorkflowVersion: t.Version}, typ, step)
}

// Tasks.

var taskStates = []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"}

func (u *UI) tasksPage(c *call) error {
	d, err := u.tasksData(c)
	if err != nil {
		return err
	}
	u.render(c, http.StatusOK, "tasks.html", "Tasks", d)
	return nil
}

// tasksRows is the first page's rows again, for app.js to refresh.
func (u *UI) tasksRows(c *call) error {
	c.fragment = true
	d, err := u.tasksData(c)
	if err != nil {
		return err
	}
	u.fragment(c, "tasks.html", "rows", d)
	return nil
}

func (u *UI) tasksData(c *call) (map[string]any, error) {
	q := c.r.URL.Query()
	f := map[string]string{}
	params := url.Values{}
	for _, name := range []string{"status", "namespace", "workflow", "tag", "cursor"} {
		if v := strings.TrimSpace(q.Get(name)); v != "" {
			f[name] = v
			params.Set(name, v)
		}
	}
	// The time filters come from datetime-local inputs, in the browser's
	// zone: app.js fills the hidden offset (minutes east of UTC).
	offset, _ := strconv.Atoi(q.Get("tz"))
	for _, name := range []string{"created_after", "created_before"} {
		v := strings.TrimSpace(q.Get(name))
		if v == "" {
			continue
		}
		f[name] = v
		t, err := time.ParseInLocation("2006-01-02T15:04", v, time.FixedZone("", offset*60))
		if err != nil {
			return nil, httpErr(http.StatusBadRequest, "%s must be a date and time such as 2026-01-02T15:04", name)
		}
		params.Set(name, t.UTC().Format(time.RFC3339))
	}
	params.Set("limit", "50")
	var out struct {
		Tasks      []taskJSON `json:"tasks"`
		NextCursor *string    `json:"next_cursor"`
	}
	if err := c.apiCall("GET", "/v1/tasks?"+params.Encode(), nil, &out); err != nil {
		return nil, err
	}
	next := ""
	if out.NextCursor != nil {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("cursor", *out.NextCursor)
		next = "/ui/tasks?" + nq.Encode()
	}
	return map[string]any{
		"Tasks": out.Tasks, "Next": next, "Filter": f, "States": taskStates, "TZ": q.Get("tz"),
		"First": f["cursor"] == "", "RowsURL": "/ui/tasks/rows?" + c.r.URL.RawQuery,
	}, nil
}

// countsFragment: the tasks and steps by state, as GET /health/status
// gives them (health:status). They are totals over every namespace, so
// they are shown only to a subject the policy lets list tasks without a
// namespace (task:index on no namespace: every namespace's); a subject
// scoped to some namespaces sees none, not even other namespaces' sizes.
func (u *UI) countsFragment(c *call) error {
	if !c.allowed("task:index", api.Resource{Type: "task"}) {
		u.fragment(c, "tasks.html", "counts", nil)
		return nil
	}
	var st struct {
		Tasks map[string]int `json:"tasks"`
	}
	if err := c.apiCall("GET", "/health/status", nil, &st); err != nil {
		return err
	}
	type count struct {
		State string
		N     int
	}
	var counts []count
	for _, s := range taskStates {
		counts = append(counts, count{s, st.Tasks[s]})
	}
	u.fragment(c, "tasks.html", "counts", counts)
	return nil
}

func taskID(c *call) (int64, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, httpErr(http.StatusNotFound, "no such task")
	}
	return id, nil
}

// taskData reads what the task page and its live fragment show.
func (u *UI) taskData(c *call) (map[string]any, error) {
	id, err := taskID(c)
	if err != nil {
		return nil, err
	}
	var t taskJSON
	if err := c.apiCall("GET", "/v1/tasks/"+strconv.FormatInt(id, 10)+"?include=graph", nil, &t); err != nil {
		return nil, err
	}
	var trs struct {
		Transitions []transitionJSON `json:"transitions"`
	}
	if err := c.apiCall("GET", "/v1/tasks/"+strconv.FormatInt(id, 10)+"/transitions", nil, &trs); err != nil {
		return nil, err
	}
	// Newest first.
	for i, j := 0, len(trs.Transitions)-1; i < j; i, j = i+1, j-1 {
		trs.Transitions[i], trs.Transitions[j] = trs.Transitions[j], trs.Transitions[i]
	}
	var evs struct {
		Events     []eventJSON `json:"events"`
		NextCursor *string     `json:"next_cursor"`
	}
	if err := c.apiCall("GET", "/v1/tasks/"+strconv.FormatInt(id, 10)+"/events?limit=200", nil, &evs); err != nil {
		return nil, err
	}
	can := map[string]bool{}
	for _, verb := range []string{"cancel", "retry", "resolve"} {
		can["task:"+verb] = c.allowed("task:"+verb, t.resource("task", ""))
	}
	stepCan := map[string]map[string]bool{}
	for _, s := range t.Steps {
		m := map[string]bool{}
		for _, verb := range []string{"cancel", "retry", "resolve"} {
			m[verb] = c.allowed("step:"+verb, t.resource("step", s.Name))
		}
		stepCan[s.Name] = m
	}
	var dag *dagView
	if t.Graph != nil {
		dag = buildDAG(t.Graph.Levels, t.Graph.Edges, t.Steps, "/ui/tasks/"+strconv.FormatInt(t.ID, 10)+"/steps/")
	}
	return map[string]any{"Task": t, "Can": can, "StepCan": stepCan, "DAG": dag,
		"Transitions": trs.Transitions, "Events": evs.Events, "MoreEvents": evs.NextCursor != nil,
		"Live": !isFinished(t.Status)}, nil
}

func (u *UI) taskPage(c *call) error {
	d, err := u.taskData(c)
	if err != nil {
		return err
	}
	t := d["Task"].(taskJSON)
	u.render(c, http.StatusOK, "task.html", "Task "+strconv.FormatInt(t.ID, 10), d)
	return nil
}

func (u *UI) taskLive(c *call) error {
	c.fragment = true
	d, err := u.taskData(c)
	if err != nil {
		return err
	}
	u.fragment(c, "task.html", "live", d)
	return nil
}

func actionBody(c *call) map[string]any {
	b := map[string]any{}
	if reason := strings.TrimSpace(c.r.PostForm.Get("reason")); reason != "" {
		b["reason"] = reason
	} else if c.subject != nil {
		b["reason"] = "requested in the web UI by " + c.subject.ID
	}
	return b
}

func (u *UI) taskAction(c *call) error {
	id, err := taskID(c)
	if err != nil {
		return err
	}
	verb := c.r.PathValue("verb")
	switch verb {
	case "cancel", "retry", "resolve":
	default:
		return httpErr(http.StatusNotFound, "no such action")
	}
	path := "/v1/tasks/" + strconv.FormatInt(id, 10)
	if err := c.apiCall("POST", path+"/"+verb, actionBody(c), nil); err != nil {
		return err
	}
	return c.redirect("/ui/tasks/" + strconv.FormatInt(id, 10))
}

func (u *UI) stepPage(c *call) error {
	id, err := taskID(c)
	if err != nil {
		return err
	}
	name := c.r.PathValue("name")
	base := "/v1/tasks/" + strconv.FormatInt(id, 10)
	var s stepJSON
	if err := c.apiCall("GET", base+"/steps/"+url.PathEscape(name), nil, &s); err != nil {
		return err
	}
	var t taskJSON
	if err := c.apiCall("GET", base, nil, &t); err != nil {
		return err
	}
	var trs struct {
		Transitions []transitionJSON `json:"transitions"`
	}
	if err := c.apiCall("GET", base+"/transitions", nil, &trs); err != nil {
		return err
	}
	var mine []transitionJSON
	for i := len(trs.Transitions) - 1; i >= 0; i-- {
		if trs.Transitions[i].StepName == name {
			mine = append(mine, trs.Transitions[i])
		}
	}
	can := map[string]bool{}
	for _, verb := range []string{"cancel", "retry", "resolve"} {
		can[verb] = c.allowed("step:"+verb, t.resource("step", name))
	}
	u.render(c, http.StatusOK, "step.html", "Step "+name, map[string]any{"Task": t, "Step": s, "Can": can, "Transitions": mine})
	return nil
}

func (u *UI) stepAction(c *call) error {
	id, err := taskID(c)
	if err != nil {
		return err
	}
	name, verb := c.r.PathValue("name"), c.r.PathValue("verb")
	switch verb {
	case "cancel", "retry", "resolve":
	default:
		return httpErr(http.StatusNotFound, "no such action")
	}
	body := actionBody(c)
	if verb == "resolve" {
		if raw := strings.TrimSpace(c.r.PostForm.Get("results")); raw != "" {
			if !json.Valid([]byte(raw)) || raw[0] != '{' {
				return httpErr(http.StatusBadRequest, "results must be a JSON object")
			}
			body["results"] = json.RawMessage(raw)
		}
	}
	path := "/v1/tasks/" + strconv.FormatInt(id, 10) + "/steps/" + url.PathEscape(name) + "/" + verb
	if err := c.apiCall("POST", path, body, nil); err != nil {
		return err
	}
	back := "/ui/tasks/" + strconv.FormatInt(id, 10)
	if c.r.PostForm.Get("back") == "step" {
		back += "/steps/" + url.PathEscape(name)
	}
	return c.redirect(back)
}

// Workflows.

func (u *UI) workflowsPage(c *call) error {
	var out struct {
		Workflows []struct {
			Namespace       string   `json:"namespace"`
			Name            string   `json:"name"`
			Version         string   `json:"version"`
			Description     string   `json:"description"`
			Steps           int      `json:"steps"`
			Available       bool     `json:"available"`
			MissingHandlers []string `json:"missing_handlers"`
		} `json:"workflows"`
	}
	if err := c.apiCall("GET", "/v1/workflows", nil, &out); err != nil {
		return err
	}
	u.render(c, http.StatusOK, "workflows.html", "Workflows", map[string]any{"Workflows": out.Workflows})
	return nil
}

func (u *UI) workflowData(c *call) (map[string]any, error) {
	ns, name := c.r.PathValue("namespace"), c.r.PathValue("name")
	var out struct {
		Versions []workflowJSON `json:"versions"`
	}
	if err := c.apiCall("GET", "/v1/workflows/"+url.PathEscape(ns)+"/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	type version struct {
		W   workflowJSON
		DAG *dagView
	}
	var vs []version
	for _, w := range out.Versions {
		vs = append(vs, version{W: w, DAG: buildDAG(w.Levels, w.Edges, nil, "")})
	}
	return map[string]any{"Namespace": ns, "Name": name, "Versions": vs,
		"CanCreate": c.allowed("task:create", api.CreateTaskResource(ns, name, "")),
		"Context":   "{}"}, nil
}

func (u *UI) workflowPage(c *call) error {
	d, err := u.workflowData(c)
	if err != nil {
		return err
	}
	u.render(c, http.StatusOK, "workflow.html", "Workflow "+d["Namespace"].(string)+"/"+d["Name"].(string), d)
	return nil
}

func (u *UI) createTask(c *call) error {
	ns, name := c.r.PathValue("namespace"), c.r.PathValue("name")
	f := c.r.PostForm
	rawCtx := strings.TrimSpace(f.Get("context"))
	if rawCtx == "" {
		rawCtx = "{}"
	}
	body := map[string]any{"workflow": ns + "/" + name, "initiator": "", "source_system": "web-ui"}
	if c.subject != nil {
		body["initiator"] = c.subject.ID
	}
	if v := strings.TrimSpace(f.Get("version")); v != "" {
		body["version"] = v
	}
	if v := strings.TrimSpace(f.Get("reason")); v != "" {
		body["reason"] = v
	}
	if v := strings.TrimSpace(f.Get("tags")); v != "" {
		var tags []string
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
		body["tags"] = tags
	}
	var formErr string
	if !json.Valid([]byte(rawCtx)) {
		formErr = "the context is not valid JSON"
	} else {
		body["context"] = json.RawMessage(rawCtx)
		var t taskJSON
		err := c.apiCall("POST", "/v1/tasks", body, &t)
		if err == nil {
			return c.redirect("/ui/tasks/" + strconv.FormatInt(t.ID, 10))
		}
		var he *httpError
		if !errors.As(err, &he) || he.status >= 500 || he.status == http.StatusForbidden || he.status == http.StatusNotFound {
			return err
		}
		formErr = he.msg
	}
	// The form again, with what was typed and why the API refused it.
	d, err := u.workflowData(c)
	if err != nil {
		return err
	}
	d["Context"], d["FormError"] = rawCtx, formErr
	d["Tags"], d["Reason"] = f.Get("tags"), f.Get("reason")
	u.render(c, http.StatusUnprocessableEntity, "workflow.html", "Workflow "+ns+"/"+name, d)
	return nil
}

// Health.

func (u *UI) healthPage(c *call) error {
	var st map[string]any
	if err := c.apiCall("GET", "/health/status", nil, &st); err != nil {
		return err
	}
	raw, _ := json.Marshal(st)
	u.render(c, http.StatusOK, "health.html", "Health", map[string]any{"Status": st["status"], "JSON": json.RawMessage(raw)})
	return nil
}
