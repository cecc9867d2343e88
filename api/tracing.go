package api

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/internal/tracing"
)

// tracerName names the API's spans' instrumentation scope.
const tracerName = "github.com/taskerd/taskerd/api"

// startRequestSpan starts the span of one API request, a server span named
// after its route ("GET /v1/tasks/{id}"), child of the caller's span when
// the request carries a W3C traceparent header. Without tracing it returns
// ctx and a nil span, and costs nothing.
func (s *Server) startRequestSpan(ctx context.Context, r *http.Request, rt route, id string) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, nil
	}
	ctx = tracing.ExtractHTTP(ctx, r.Header)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("http.route", rt.pattern),
		attribute.String("url.path", r.URL.Path),
		attribute.String("url.scheme", scheme),
		attribute.String("client.address", r.RemoteAddr),
		attribute.String("taskerd.request_id", id),
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	}
	return s.tracer.Start(ctx, rt.method+" "+rt.pattern, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// endRequestSpan ends a request's span with its status code; a 5xx is an
// error (a 4xx is the client's, not the server's).
func endRequestSpan(span trace.Span, code int) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
	span.End()
}

// traceTask records, for a task the request created, the task's span
// (tracing.StartTaskSpan: its own trace, linked to the request's span),
// and names the task and its trace on the request's span.
func (s *Server) traceTask(ctx context.Context, task *backends.Task, created bool) {
	if s.tracer == nil {
		return
	}
	sc := tracing.TaskSpanContext(task.ID, task.CreatedAt)
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.Int64("taskerd.task.id", task.ID),
		attribute.String("taskerd.task.trace_id", sc.TraceID().String()),
		attribute.Bool("taskerd.task.created", created),
	)
	if !created {
		return // an idempotent replay: the task and its span exist
	}
	tracing.StartTaskSpan(ctx, s.tracer, "task "+task.Namespace+"/"+task.WorkflowName, task.ID, task.CreatedAt,
		trace.WithAttributes(
			attribute.Int64("taskerd.task.id", task.ID),
			attribute.String("taskerd.workflow", task.Namespace+"/"+task.WorkflowName+"@"+task.WorkflowVersion),
			attribute.String("taskerd.request_id", RequestID(ctx)),
		))
}
