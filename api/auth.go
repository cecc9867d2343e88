package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
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
	// Schedule names the schedule of a schedule:* action.
	Schedule string `json:"schedule,omitempty"`
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

// authenticatedKey marks the context of an authenticated request that
// is not a stream with the server serving it, for the routes it calls in
// process: see authenticateOnce.
type authenticatedKey struct{}

// authenticateOnce is the subject of r. A request made in process by a
// route of the same server while it serves an authenticated request (a
// POST /v1/graphql's fields, each a REST route) is that request's
// subject: its credentials were authenticated a moment ago, and the
// outer request, not a stream, ends within the store timeout, so a
// revoked key is not honoured for longer than it takes to answer.
// Anything else is authenticated from its credentials. The mark is a
// context value, which no client can send.
func (s *Server) authenticateOnce(r *http.Request) (*Subject, error) {
	if by, _ := r.Context().Value(authenticatedKey{}).(*Server); by == s {
		if sub := SubjectFrom(r.Context()); sub != nil {
			return sub, nil
		}
	}
	return authenticate(s.authn, r)
}

// credentialHeaders are the headers that carry credentials: the
// authenticators shipped with taskerd (the bootstrap key, the apikey and
// jwt plugins) read these and no other.
var credentialHeaders = []string{"Authorization", "X-Api-Key"}

// credential is one credential a request carries: a header and one of its
// values.
type credential struct{ header, value string }

// credentials lists the non-empty values of the request's credential
// headers, in the order of credentialHeaders and then of the request.
func credentials(h http.Header) []credential {
	var out []credential
	for _, name := range credentialHeaders {
		for key, vs := range h {
			if !strings.EqualFold(key, name) {
				continue
			}
			for _, v := range vs {
				if strings.TrimSpace(v) != "" {
					out = append(out, credential{header: name, value: v})
				}
			}
		}
	}
	return out
}

// ErrCredentialsDisagree: a request carries several credentials and they
// do not all authenticate the same subject.
var ErrCredentialsDisagree = errors.New("the request's credentials do not all authenticate the same subject")

// authenticate asks authn who made r. A request with one credential (or
// none) is authenticated as it is. A request with several (Authorization
// given twice, or with X-API-Key, ...) is authenticated once per
// credential, each time as if it were the only one; every one must
// authenticate, all to the same subject id, or the request is refused:
// otherwise an authenticator reading only one of them (the bootstrap key
// reads X-API-Key before Authorization) would let a request through with
// the other one wrong, or a request could speak for two subjects at once.
// The subject is that of the first credential, Authorization before
// X-API-Key. The error never holds a credential.
func authenticate(authn Authenticator, r *http.Request) (*Subject, error) {
	creds := credentials(r.Header)
	if len(creds) <= 1 {
		return authn.Authenticate(r)
	}
	var first *Subject
	for i, c := range creds {
		one := r.Clone(r.Context())
		for key := range one.Header {
			if slices.ContainsFunc(credentialHeaders, func(name string) bool { return strings.EqualFold(key, name) }) {
				delete(one.Header, key)
			}
		}
		one.Header.Set(c.header, c.value)
		sub, err := authn.Authenticate(one)
		if err == nil && sub == nil {
			err = ErrNoCredentials
		}
		if err != nil {
			return nil, fmt.Errorf("credential %d of %d (%s header): %w", i+1, len(creds), c.header, err)
		}
		if first == nil {
			first = sub
		} else if sub.ID != first.ID {
			return nil, fmt.Errorf("%w: credential %d of %d (%s header) is %q's, credential 1 is %q's",
				ErrCredentialsDisagree, i+1, len(creds), c.header, sub.ID, first.ID)
		}
	}
	return first, nil
}
