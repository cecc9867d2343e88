package api

import (
	"encoding/json"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// The JSON shapes of the API. Times are RFC 3339 UTC; absent times are null.

type taskView struct {
	ID             int64           `json:"id"`
	Namespace      string          `json:"namespace"`
	Workflow       string          `json:"workflow"` // namespace/name
	Version        string          `json:"version"`
	Status         string          `json:"status"`
	Context        json.RawMessage `json:"context"`
	Initiator      string          `json:"initiator"`
	SourceSystem   string          `json:"source_system"`
	Reason         string          `json:"reason"`
	Tags           []string        `json:"tags"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	RequestedAt    time.Time       `json:"requested_at"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`

	// Only in GET /v1/tasks/{id}.
	Steps            []stepView     `json:"steps,omitempty"`
	ExecutionContext *contextView   `json:"execution_context,omitempty"`
	Graph            *taskGraphView `json:"graph,omitempty"`
}

func newTaskView(t *backends.Task) taskView {
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	return taskView{
		ID: t.ID, Namespace: t.Namespace, Workflow: t.Namespace + "/" + t.WorkflowName, Version: t.WorkflowVersion,
		Status: string(t.State), Context: t.Context, Initiator: t.Initiator, SourceSystem: t.SourceSystem,
		Reason: t.Reason, Tags: tags, IdempotencyKey: t.IdempotencyKey,
		RequestedAt: t.RequestedAt, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
}

type stepView struct {
	ID                    int64           `json:"id"`
	TaskID                int64           `json:"task_id"`
	Name                  string          `json:"name"`
	Position              int             `json:"position"`
	Handler               string          `json:"handler"`
	Status                string          `json:"status"`
	Attempts              int             `json:"attempts"`
	RetryLimit            int             `json:"retry_limit"`
	Retryable             bool            `json:"retryable"`
	Skippable             bool            `json:"skippable"`
	Results               json.RawMessage `json:"results"`
	Error                 json.RawMessage `json:"error"`
	StartedAt             *time.Time      `json:"started_at"`
	LastAttemptedAt       *time.Time      `json:"last_attempted_at"`
	LastFailureAt         *time.Time      `json:"last_failure_at"`
	ProcessedAt           *time.Time      `json:"processed_at"`
	BackoffRequestSeconds *int            `json:"backoff_request_seconds"`
	LeaseOwner            string          `json:"lease_owner,omitempty"`
	LeaseExpiresAt        *time.Time      `json:"lease_expires_at,omitempty"`
	CancelRequested       bool            `json:"cancel_requested"`
	CreatedAt             time.Time       `json:"created_at"`
	UpdatedAt             time.Time       `json:"updated_at"`

	// Readiness, when the step is shown with it.
	Readiness *readinessView `json:"readiness,omitempty"`
}

func rawOrNull(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

func newStepView(s *backends.Step) stepView {
	return stepView{
		ID: s.ID, TaskID: s.TaskID, Name: s.Name, Position: s.Position, Handler: s.Handler,
		Status: string(s.State), Attempts: s.Attempts, RetryLimit: s.RetryLimit, Retryable: s.Retryable,
		Skippable: s.Skippable, Results: rawOrNull(s.Results), Error: rawOrNull(s.Error),
		StartedAt: s.StartedAt, LastAttemptedAt: s.LastAttemptedAt, LastFailureAt: s.LastFailureAt,
		ProcessedAt: s.ProcessedAt, BackoffRequestSeconds: s.BackoffRequestSeconds,
		LeaseOwner: s.LeaseOwner, LeaseExpiresAt: s.LeaseExpiresAt, CancelRequested: s.CancelRequested,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

type readinessView struct {
	DependenciesSatisfied bool       `json:"dependencies_satisfied"`
	RetryEligible         bool       `json:"retry_eligible"`
	ReadyForExecution     bool       `json:"ready_for_execution"`
	PermanentlyBlocked    bool       `json:"permanently_blocked"`
	NextRetryAt           *time.Time `json:"next_retry_at"`
	TotalParents          int        `json:"total_parents"`
	CompletedParents      int        `json:"completed_parents"`
}

func newReadinessView(r backends.ReadinessRow) *readinessView {
	return &readinessView{
		DependenciesSatisfied: r.DependenciesSatisfied, RetryEligible: r.RetryEligible,
		ReadyForExecution: r.ReadyForExecution, PermanentlyBlocked: r.PermanentlyBlocked(),
		NextRetryAt: r.NextRetryAt, TotalParents: r.TotalParents, CompletedParents: r.CompletedParents,
	}
}

type contextView struct {
	TotalSteps           int     `json:"total_steps"`
	PendingSteps         int     `json:"pending_steps"`
	InProgressSteps      int     `json:"in_progress_steps"`
	CompletedSteps       int     `json:"completed_steps"`
	FailedSteps          int     `json:"failed_steps"`
	ReadySteps           int     `json:"ready_steps"`
	BlockedSteps         int     `json:"blocked_steps"`
	WaitingSteps         int     `json:"waiting_steps"`
	ExecutionStatus      string  `json:"execution_status"`
	RecommendedAction    string  `json:"recommended_action"`
	HealthStatus         string  `json:"health_status"`
	CompletionPercentage float64 `json:"completion_percentage"`
}

func newContextView(ec *backends.ExecutionContext) *contextView {
	return &contextView{
		TotalSteps: ec.TotalSteps, PendingSteps: ec.PendingSteps, InProgressSteps: ec.InProgressSteps,
		CompletedSteps: ec.CompletedSteps, FailedSteps: ec.FailedSteps, ReadySteps: ec.ReadySteps,
		BlockedSteps: ec.BlockedSteps, WaitingSteps: ec.WaitingSteps, ExecutionStatus: ec.ExecutionStatus, RecommendedAction: ec.RecommendedAction,
		HealthStatus: ec.HealthStatus, CompletionPercentage: ec.CompletionPercentage,
	}
}

type transitionView struct {
	ID         int64           `json:"id"`
	TaskID     int64           `json:"task_id"`
	StepID     *int64          `json:"step_id"` // null for the task's own
	StepName   string          `json:"step_name,omitempty"`
	From       *string         `json:"from"` // null for a task's first
	To         string          `json:"to"`
	Reason     string          `json:"reason"`
	Metadata   json.RawMessage `json:"metadata"`
	SortKey    int             `json:"sort_key"`
	MostRecent bool            `json:"most_recent"`
	CreatedAt  time.Time       `json:"created_at"`
}

func newTransitionView(t *backends.Transition, stepNames map[int64]string) transitionView {
	v := transitionView{ID: t.ID, TaskID: t.TaskID, To: string(t.To), Reason: t.Reason,
		Metadata: rawOrNull(t.Metadata), SortKey: t.SortKey, MostRecent: t.MostRecent, CreatedAt: t.CreatedAt}
	if t.StepID != 0 {
		id := t.StepID
		v.StepID, v.StepName = &id, stepNames[id]
	}
	if t.From != "" {
		from := string(t.From)
		v.From = &from
	}
	return v
}

type taskGraphView struct {
	Nodes  []taskGraphNode `json:"nodes"`
	Edges  []graphEdge     `json:"edges"`
	Levels [][]string      `json:"levels"`
}

type taskGraphNode struct {
	Name     string `json:"name"`
	Handler  string `json:"handler"`
	Level    int    `json:"level"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
}

type graphEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}
