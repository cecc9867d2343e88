package engine

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/internal/tracing"
)

// tracerName names the engine's spans' instrumentation scope.
const tracerName = "github.com/taskerd/taskerd/engine"

// Attributes of the engine's spans (docs/tracing.md).
const (
	attrTaskID      = attribute.Key("taskerd.task.id")
	attrWorkflow    = attribute.Key("taskerd.workflow")
	attrStepID      = attribute.Key("taskerd.step.id")
	attrStepName    = attribute.Key("taskerd.step.name")
	attrHandler     = attribute.Key("taskerd.step.handler")
	attrAttempt     = attribute.Key("taskerd.step.attempt")
	attrMaxAttempts = attribute.Key("taskerd.step.max_attempts")
	attrNode        = attribute.Key("taskerd.node")
	attrOutcome     = attribute.Key("taskerd.step.outcome")
	attrErrorKind   = attribute.Key("taskerd.error.kind")
	attrRetryable   = attribute.Key("taskerd.error.retryable")
)

// startAttemptSpan starts the span of one attempt of a claimed step, "step
// NAME", a child of its task's span (tracing.TaskSpanContext), and returns
// ctx carrying it: the handler's calls (into a plugin) are its children.
// Without tracing it returns ctx and a nil span, and costs nothing.
func (e *Engine) startAttemptSpan(ctx context.Context, c *backends.Claim) (context.Context, trace.Span) {
	if e.tracer == nil {
		return ctx, nil
	}
	s := c.Step
	attrs := []attribute.KeyValue{
		attrTaskID.Int64(s.TaskID), attrStepID.Int64(s.ID), attrStepName.String(s.Name),
		attrHandler.String(s.Handler), attrAttempt.Int(s.Attempts), attrMaxAttempts.Int(s.RetryLimit),
		attrNode.String(e.nodeID),
	}
	if t := c.Task; t != nil {
		ctx = tracing.ContextWithTask(ctx, t.ID, t.CreatedAt)
		attrs = append(attrs, attrWorkflow.String(t.Namespace+"/"+t.WorkflowName+"@"+t.WorkflowVersion))
	}
	return e.tracer.Start(ctx, "step "+s.Name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// endAttemptSpan ends an attempt's span with its outcome: completed, or
// failed (status error, with the failure's kind and message), timeout or
// cancelled. cause is why the handler's context ended, if it did.
func endAttemptSpan(span trace.Span, out outcome, cause error) {
	if span == nil {
		return
	}
	defer span.End()
	if out.err == nil {
		span.SetAttributes(attrOutcome.String("completed"))
		return
	}
	se, _ := failureFromError(out.err)
	result := "failed"
	switch {
	case errors.Is(cause, errStepTimeout):
		result, se.Kind = "timeout", backends.ErrorKindTimeout
	case errors.Is(cause, errCancelRequested):
		result, se.Kind = "cancelled", backends.ErrorKindCancelled
	}
	span.SetAttributes(attrOutcome.String(result), attrErrorKind.String(se.Kind), attrRetryable.Bool(se.Retryable))
	span.SetStatus(codes.Error, truncate(se.Message, MaxLoggedError))
}

// taskLogContext is the context of task t's lifecycle log lines: with
// tracing on, it carries the task's span, so that the lines have the
// task's trace_id.
func (e *Engine) taskLogContext(t *backends.Task) context.Context {
	if e.tracer == nil {
		return context.Background()
	}
	return tracing.ContextWithTask(context.Background(), t.ID, t.CreatedAt)
}
