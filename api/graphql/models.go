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
