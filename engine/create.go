package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

// CreateRequest asks for one task (SEMANTICS §5.1).
type CreateRequest struct {
	// Workflow is "namespace/name", "namespace/name@version" or "name"
	// (default namespace); without a version the highest loaded one runs.
	Workflow string
	// Context is the task's context: a JSON object (nil means {}).
	Context      json.RawMessage
	Initiator    string
	SourceSystem string
	Reason       string
	Tags         []string
	// BypassSteps names skippable steps that start resolved_manually.
	BypassSteps []string
	// IdempotencyKey, when set, makes the request safe to repeat: the same
	// key with the same request returns the task created first.
	IdempotencyKey string
}

// ErrUnknownWorkflow: the request names no loaded workflow or version. The
// error also wraps the *definition.UnknownWorkflowError that says what is
// loaded.
var ErrUnknownWorkflow = errors.New("unknown workflow")

// RequestError is a malformed request: a workflow reference that does not
// parse, or a value past the limits of input.go or that not every backend
// can store. Field names the request field ("reason", "tags[3]", ...).
type RequestError struct {
	Field   string
	Message string
	// Err is the cause, if any (backends.ErrUnstorable for text or JSON a
	// backend cannot store).
	Err error
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Message }

func (e *RequestError) Unwrap() error { return e.Err }

// ContextViolation is one way a task context fails the workflow's
// context_schema: where (a JSON pointer into the context, "" for the whole
// context) and what.
type ContextViolation = definition.Violation

// ContextValidationError: the context is not a JSON object, or does not
// match the workflow's context_schema. The API answers 422.
type ContextValidationError struct {
	Workflow   string
	Violations []ContextViolation
	// Err is the cause, if any: backends.ErrUnstorable for a context not
	// every backend can store.
	Err error
}

func (e *ContextValidationError) Unwrap() error { return e.Err }

func (e *ContextValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "context does not match workflow %s:", e.Workflow)
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString(";")
		}
		ptr := v.Pointer
		if ptr == "" {
			ptr = "(root)"
		}
		fmt.Fprintf(&b, " at %s: %s", ptr, v.Message)
	}
	return b.String()
}

// BypassError: bypass_steps names a step the workflow does not have, or one
// that is not skippable.
type BypassError struct {
	Workflow string
	Step     string
	// Unknown: no step has that name; otherwise it is not skippable.
	Unknown bool
}

func (e *BypassError) Error() string {
	if e.Unknown {
		return fmt.Sprintf("bypass_steps: workflow %s has no step %q", e.Workflow, e.Step)
	}
	return fmt.Sprintf("bypass_steps: step %q of workflow %s is not skippable", e.Step, e.Workflow)
}

// CreateTask validates a request and inserts its task in one transaction.
// created is false when IdempotencyKey matched an earlier identical
// request (that task is returned); a different request with the same key is
// backends.ErrDuplicate. Errors: ErrUnknownWorkflow, *UnavailableError (a
// handler of the workflow is not registered), *RequestError (also
// for text past the limits of input.go or that not every backend can
// store), *ContextValidationError (also for a context not every backend can
// store), *BypassError, or the store's. A refused request writes nothing.
func (e *Engine) CreateTask(ctx context.Context, req CreateRequest) (*backends.Task, bool, error) {
	p, wf, err := e.createParams(req)
	if err != nil {
		return nil, false, err
	}
	w := e.gate.begin(p.Now)
	wctx, wrote := e.collect(ctx)
	task, created, err := e.store.CreateTask(wctx, p)
	if err != nil {
		w.end(e.publish, nil)
		return nil, false, fmt.Errorf("creating task of workflow %s: %w", wf.ID(), err)
	}
	events := wrote.all()
	e.logLifecycle(events, task)
	w.end(e.publish, events)
	if created {
		e.Wake()
	}
	return task, created, nil
}

// createParams validates a request and builds the store's parameters for
// its task (CreateTask's rules).
func (e *Engine) createParams(req CreateRequest) (*backends.CreateTaskParams, *definition.Workflow, error) {
	ref, err := definition.ParseRef(req.Workflow)
	if err != nil {
		return nil, nil, &RequestError{Field: "workflow", Message: err.Error()}
	}
	if err := checkCreate(&req); err != nil {
		return nil, nil, err
	}
	wf, err := e.Catalog().Lookup(ref)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnknownWorkflow, err)
	}
	// Before the context: no context makes it run here.
	if missing := e.MissingHandlers(wf); len(missing) > 0 {
		return nil, nil, &UnavailableError{Workflow: wf.ID(), Missing: missing}
	}
	if err := checkContext(wf.ID(), req.Context); err != nil {
		return nil, nil, err
	}
	taskContext, err := validateContext(wf, req.Context)
	if err != nil {
		return nil, nil, err
	}
	bypass := map[string]bool{}
	for _, name := range req.BypassSteps {
		s := wf.Step(name)
		if s == nil {
			return nil, nil, &BypassError{Workflow: wf.ID(), Step: name, Unknown: true}
		}
		if !s.Skippable {
			return nil, nil, &BypassError{Workflow: wf.ID(), Step: name}
		}
		bypass[name] = true
	}

	p := &backends.CreateTaskParams{
		Namespace:       wf.Namespace,
		WorkflowName:    wf.Name,
		WorkflowVersion: wf.Version.String(),
		Context:         taskContext,
		Initiator:       req.Initiator,
		SourceSystem:    req.SourceSystem,
		Reason:          req.Reason,
		Tags:            req.Tags,
		IdempotencyKey:  req.IdempotencyKey,
		RequestHash:     requestHash(ref, taskContext, req),
		Now:             e.now(),
	}
	if p.Tags == nil {
		p.Tags = []string{}
	}
	for _, s := range wf.Order() {
		timeout := s.Timeout
		if timeout <= 0 {
			timeout = definition.DefaultTimeout
		}
		p.Steps = append(p.Steps, backends.NewStep{
			Name:        s.Name,
			Handler:     s.Handler.String(),
			Config:      s.Config,
			Retryable:   s.Retryable,
			RetryLimit:  s.Retry.Limit,
			BackoffBase: s.Retry.Base,
			BackoffMax:  s.Retry.Max,
			Timeout:     timeout,
			Skippable:   s.Skippable,
			Bypass:      bypass[s.Name],
			Parents:     slices.Clone(s.DependsOn),
		})
	}
	return p, wf, nil
}

// validateContext checks that raw is a JSON object matching the workflow's
// schema, and returns it compacted ({} for nothing).
func validateContext(wf *definition.Workflow, raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	notObject := &ContextValidationError{Workflow: wf.ID(), Violations: []ContextViolation{{Pointer: "", Message: "context must be a JSON object"}}}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		notObject.Violations[0].Message = "context is not valid JSON: " + err.Error()
		return nil, notObject
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, notObject
	}
	if err := wf.ValidateContext(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("validating context against workflow %s: %w", wf.ID(), err)
		}
		return nil, &ContextValidationError{Workflow: wf.ID(), Violations: definition.Violations(ve)}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, notObject
	}
	return buf.Bytes(), nil
}

// requestHash digests what makes two requests the same: the workflow as
// requested, the context (compacted, keys sorted), initiator, source
// system, reason, tags and the set of bypassed steps.
func requestHash(ref definition.Ref, taskContext json.RawMessage, req CreateRequest) string {
	var ctxValue any
	dec := json.NewDecoder(bytes.NewReader(taskContext))
	dec.UseNumber()
	_ = dec.Decode(&ctxValue) // already validated
	bypass := slices.Clone(req.BypassSteps)
	slices.Sort(bypass)
	bypass = slices.Compact(bypass)
	tags := req.Tags
	if tags == nil {
		tags = []string{}
	}
	if bypass == nil {
		bypass = []string{}
	}
	canonical, _ := json.Marshal(struct {
		Workflow     string   `json:"workflow"`
		Context      any      `json:"context"`
		Initiator    string   `json:"initiator"`
		SourceSystem string   `json:"source_system"`
		Reason       string   `json:"reason"`
		Tags         []string `json:"tags"`
		BypassSteps  []string `json:"bypass_steps"`
	}{ref.String(), ctxValue, req.Initiator, req.SourceSystem, req.Reason, tags, bypass})
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}
