package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Subject is who made a request, as an Authenticator established it.
type Subject struct {
	ID     string          `json:"id"`
	Roles  []string        `json:"roles"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// Authenticator decides who made a request. Any error means 401: a failing
// authenticator never lets a request through.
type Authenticator interface {
	Authenticate(r *http.Request) (*Subject, error)
}

// ErrNoCredentials is what an Authenticator returns for a request that
// carries nothing it recognises.
var ErrNoCredentials = errors.New("no credentials")

// Resource is what an action is on (SEMANTICS §8). Fields that do not apply
// are empty.
type Resource struct {
	Type      string `json:"type"`
	Namespace string `json:"namespace,omitempty"`
	Workflow  string `json:"workflow,omitempty"`
	Version   string `json:"version,omitempty"`
	TaskID    int64  `json:"task_id,omitempty"`
	Step      string `json:"step,omitempty"`
}

// AuthzRequest is everything a policy decides on.
type AuthzRequest struct {
	Subject  *Subject
	Action   string // "task:create", ...
	Resource Resource
	Request  *http.Request
}

// Decision is an Authorizer's answer.
type Decision struct {
	Allow   bool
	Reasons []string
}

// Authorizer decides whether a subject may do an action. Any error means
// deny (403).
type Authorizer interface {
	Authorize(ctx context.Context, req *AuthzRequest) (Decision, error)
}

// NoAuth is auth { mode = "none" }: every request comes from the subject
// "anonymous" with role admin, and every action is allowed. It exists for
// development only; the server logs a warning when it is used.
type NoAuth struct{}

// Authenticate implements Authenticator.
func (NoAuth) Authenticate(*http.Request) (*Subject, error) {
	return &Subject{ID: "anonymous", Roles: []string{"admin"}}, nil
}

// Authorize implements Authorizer.
func (NoAuth) Authorize(context.Context, *AuthzRequest) (Decision, error) {
	return Decision{Allow: true, Reasons: []string{"auth mode none"}}, nil
}

type subjectKey struct{}

func withSubject(ctx context.Context, s *Subject) context.Context {
	return context.WithValue(ctx, subjectKey{}, s)
}

// SubjectFrom returns the authenticated subject of a request's context.
func SubjectFrom(ctx context.Context) *Subject {
	s, _ := ctx.Value(subjectKey{}).(*Subject)
	return s
}
