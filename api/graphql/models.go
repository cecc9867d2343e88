package graphql

import "time"

// Task, Step and Transition are decoded from the REST API's JSON views,
// so the GraphQL answer is exactly what the REST route would show.

// Task is a task as GET /v1/tasks/{id} shows it.
type Task struct {
	ID             int       `json:"id"`
	Namespace      string    `json:"namespace"`
	Workflow       string    `json:"workflow"`
	Version        string    `json:"version"`
	Status         string    `json:"status"`
	Context        JSON      `json:"context"`
	Initiator      string    `json:"initiator"`
	SourceSystem   string    `json:"source_system"`
	Reason         string    `json:"reason"`
	Tags           []string  `json:"tags"`
	IdempotencyKey *string   `json:"idempotency_key"`
	RequestedAt    time.Time `json:"requested_at"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`

	// Steps, when the answer carried them (GET /v1/tasks/{id} does; a list
	// does not): the steps field then needs no second call.
	Steps []*Step `json:"steps"`

	group *group // the list it was read in (loaders.go)
}

// Step is a step as GET /v1/tasks/{id}/steps/{name} shows it.
type Step struct {
	ID              int        `json:"id"`
	TaskID          int        `json:"task_id"`
	Name            string     `json:"name"`
	Position        int        `json:"position"`
	Handler         string     `json:"handler"`
	Status          string     `json:"status"`
	Attempts        int        `json:"attempts"`
	RetryLimit      int        `json:"retry_limit"`
	Retryable       bool       `json:"retryable"`
	Skippable       bool       `json:"skippable"`
	Results         JSON       `json:"results"`
	Error           JSON       `json:"error"`
	StartedAt       *time.Time `json:"started_at"`
	ProcessedAt     *time.Time `json:"processed_at"`
	CancelRequested bool       `json:"cancel_requested"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`

	group *group // its task's list (loaders.go)
}

// Transition is one row of GET /v1/tasks/{id}/transitions.
type Transition struct {
	ID        int       `json:"id"`
	TaskID    int       `json:"task_id"`
	StepID    *int      `json:"step_id"`
	StepName  *string   `json:"step_name"`
	From      *string   `json:"from"`
	To        string    `json:"to"`
	Reason    string    `json:"reason"`
	Metadata  JSON      `json:"metadata"`
	CreatedAt time.Time `json:"created_at"`
}

// Event is one event of GET /v1/events; Data is its JSON as sent.
type Event struct {
	Seq       string    `json:"-"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	TaskID    *int      `json:"task_id"`
	Namespace *string   `json:"namespace"`
	Workflow  *string   `json:"workflow"`
	StepName  *string   `json:"step_name"`
	Data      JSON      `json:"-"`
}

// The workflow and health types are decoded from GET /v1/workflows,
// GET /v1/workflows/{ns}/{name} and GET /health/status (api/graphs.go,
// api/health.go), field for field.

// WorkflowSummary is one item of GET /v1/workflows.
type WorkflowSummary struct {
	Namespace         string   `json:"namespace"`
	Name              string   `json:"name"`
	Version           string   `json:"version"`
	Description       string   `json:"description"`
	Steps             int      `json:"steps"`
	File              string   `json:"file"`
	Available         bool     `json:"available"`
	MissingHandlers   []string `json:"missing_handlers"`
	UnavailableReason *string  `json:"unavailable_reason"`
}

// Workflow is GET /v1/workflows/{ns}/{name}.
type Workflow struct {
	Namespace string             `json:"namespace"`
	Name      string             `json:"name"`
	Versions  []*WorkflowVersion `json:"versions"`
}

// WorkflowVersion is one of a Workflow's versions.
type WorkflowVersion struct {
	Namespace         string          `json:"namespace"`
	Name              string          `json:"name"`
	Version           string          `json:"version"`
	Description       string          `json:"description"`
	ContextSchema     JSON            `json:"context_schema"`
	Steps             []*WorkflowStep `json:"steps"`
	Levels            [][]string      `json:"levels"`
	Edges             []*WorkflowEdge `json:"edges"`
	Available         bool            `json:"available"`
	MissingHandlers   []string        `json:"missing_handlers"`
	UnavailableReason *string         `json:"unavailable_reason"`
}

// WorkflowStep is one step of a WorkflowVersion.
type WorkflowStep struct {
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

// WorkflowEdge is one edge of a WorkflowVersion's graph.
type WorkflowEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Health is GET /health/status (a healthy node's: an unhealthy one
// answers 503, an error).
type Health struct {
	Status               string                 `json:"status"`
	Tasks                StateCounts            `json:"tasks"`
	Steps                StateCounts            `json:"steps"`
	RetryableErrors      int                    `json:"retryable_errors"`
	InBackoff            int                    `json:"in_backoff"`
	Exhausted            int                    `json:"exhausted"`
	UnavailableWorkflows []*UnavailableWorkflow `json:"unavailable_workflows"`
	Node                 HealthNode             `json:"node"`
}

// StateCounts is a count by state (the keys are backends.AllStates).
type StateCounts struct {
	Pending          int `json:"pending"`
	InProgress       int `json:"in_progress"`
	Complete         int `json:"complete"`
	Error            int `json:"error"`
	Cancelled        int `json:"cancelled"`
	ResolvedManually int `json:"resolved_manually"`
}

// UnavailableWorkflow is one of Health's unavailable workflows.
type UnavailableWorkflow struct {
	Workflow        string   `json:"workflow"`
	MissingHandlers []string `json:"missing_handlers"`
	Reason          string   `json:"reason"`
}

// HealthNode is Health's node.
type HealthNode struct {
	ID            string    `json:"id"`
	Hostname      string    `json:"hostname"`
	PID           int       `json:"pid"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	GoVersion     string    `json:"go_version"`
	Goroutines    int       `json:"goroutines"`
	Workflows     int       `json:"workflows"`
}
