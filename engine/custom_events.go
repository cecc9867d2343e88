package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/internal/customevent"
)

// ErrNoAttempt is Emit's error when ctx is not (derived from) the ctx a
// handler was called with.
var ErrNoAttempt = customevent.ErrNoAttempt

// ErrAttemptEnded is Emit's error once the engine has taken the attempt's
// result (a goroutine of the handler that outlived it).
var ErrAttemptEnded = customevent.ErrAttemptEnded

// Emit records a custom event of the step attempt ctx belongs to: ctx is
// (derived from) the one the Handler was called with. The event is written
// with the attempt's result, success or failure, before the step's own
// event. name must be declared in the step's `events = [...]`; payload is
// encoded with json.Marshal (a json.RawMessage is used as it is).
//
// An event that breaks a rule fails the attempt, even if the handler
// ignores the error Emit returns, and none of its events is written: a
// name that cannot be declared (kind undeclared_event), more than 100
// events, a payload over 64 KiB or 1 MiB of payloads in all, a payload that
// cannot be encoded or stored (kind invalid_event). A name the step does
// not declare fails it too (undeclared_event), once the handler returned.
// Neither is retryable.
func Emit(ctx context.Context, name string, payload any) error {
	return customevent.Emit(ctx, name, payload)
}

// collectEvents puts a collector of custom events in a handler's ctx.
func collectEvents(ctx context.Context) (context.Context, *customevent.Collector) {
	return customevent.Collect(ctx)
}

// attemptEvents decides what the custom events an attempt emitted become:
// the events to write with its result, or, when they break a rule, none and
// the failure that replaces the attempt's outcome (handlerErr, when it
// failed, is kept in the failure's message). Every emitted name must be one
// the step declares in the definition of the workflow version its task
// runs, as loaded now.
func (e *Engine) attemptEvents(c *backends.Claim, col *customevent.Collector, handlerErr *backends.StepError) ([]backends.CustomEvent, *backends.StepError) {
	events, refused := col.Close()
	if refused == nil && len(events) == 0 {
		return nil, nil
	}
	s, t := c.Step, c.Task
	fail := func(kind, msg string) ([]backends.CustomEvent, *backends.StepError) {
		if handlerErr != nil {
			msg += fmt.Sprintf(" (the attempt had failed too: %s: %s)", handlerErr.Kind, handlerErr.Message)
		}
		return nil, &backends.StepError{Message: msg, Retryable: false, Kind: kind}
	}
	if refused != nil {
		return fail(refused.Kind, fmt.Sprintf("step %s (handler %s): %s", s.Name, s.Handler, refused.Message))
	}
	wfID := workflowID(t)
	var declared []string
	st, err := e.stepDefinition(c)
	if st != nil {
		declared = st.Events
	}
	if err != nil {
		// Fail closed: what the step may emit is unknown here.
		return fail(backends.ErrorKindUndeclaredEvent, fmt.Sprintf(
			"step %s emitted %s, but workflow %s, which its task runs, is not loaded on node %s, so the events the step declares are unknown; load that version and retry the step",
			s.Name, quoteNames(names(events)), wfID, e.nodeID))
	}
	var undeclared []string
	for _, ev := range events {
		if !slices.Contains(declared, ev.Name) && !slices.Contains(undeclared, ev.Name) {
			undeclared = append(undeclared, ev.Name)
		}
	}
	if len(undeclared) > 0 {
		return fail(backends.ErrorKindUndeclaredEvent, fmt.Sprintf(
			"step %s (handler %s) emitted %s, which it does not declare: add it to the step's events in workflow %s (it declares %s)",
			s.Name, s.Handler, quoteNames(undeclared), wfID, declaredNames(declared)))
	}
	return events, nil
}

// workflowID is the namespace/name@version of the workflow t runs.
func workflowID(t *backends.Task) string {
	return fmt.Sprintf("%s/%s@%s", t.Namespace, t.WorkflowName, t.WorkflowVersion)
}

// stepDefinition is the definition of the claimed step in the workflow
// version its task runs, as loaded now: an error when that version is not
// loaded, nil and no error when it has no such step.
func (e *Engine) stepDefinition(c *backends.Claim) (*definition.Step, error) {
	t := c.Task
	v, err := definition.ParseVersion(t.WorkflowVersion)
	if err != nil {
		return nil, err
	}
	wf, err := e.Catalog().Lookup(definition.Ref{Namespace: t.Namespace, Name: t.WorkflowName, Version: &v})
	if err != nil {
		return nil, err
	}
	return wf.Step(c.Step.Name), nil
}

func names(events []backends.CustomEvent) []string {
	var out []string
	for _, ev := range events {
		if !slices.Contains(out, ev.Name) {
			out = append(out, ev.Name)
		}
	}
	return out
}

// quoteNames writes names as `event "a.b"` or `events "a.b", "c.d"`.
func quoteNames(ns []string) string {
	if len(ns) == 1 {
		return "event " + quoted(ns)
	}
	return "events " + quoted(ns)
}

// declaredNames writes a step's declared names, or "none".
func declaredNames(ns []string) string {
	if len(ns) == 0 {
		return "none"
	}
	return quoted(ns)
}

func quoted(ns []string) string {
	q := make([]string, len(ns))
	for i, n := range ns {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
