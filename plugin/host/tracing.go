package host

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/engine"
)

// tracerName names the host's spans' instrumentation scope.
const tracerName = "github.com/taskerd/taskerd/plugin/host"

// startCall starts the span of one call into a step-handler plugin,
// "plugin PLUGIN.HANDLER" (a client span, child of the step attempt's), and
// returns ctx carrying it: its W3C trace context goes to the plugin in the
// call's gRPC metadata (tracing.UnaryClientInterceptor), and the SDK starts
// the handler's span under it. Without tracing it returns ctx and a nil
// span.
func (p *Plugin) startCall(ctx context.Context, handler string, req *engine.StepRequest) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	return p.tracer.Start(ctx, "plugin "+p.spec.Name+"."+handler, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", "taskerd.plugin.v1.StepHandler"),
		attribute.String("rpc.method", "Execute"),
		attribute.String("taskerd.plugin", p.spec.Name),
		attribute.String("taskerd.step.handler", p.spec.Name+"."+handler),
		attribute.Int64("taskerd.task.id", req.TaskID),
		attribute.String("taskerd.step.name", req.StepName),
		attribute.Int("taskerd.step.attempt", req.Attempt),
	))
}

// endCall ends a call's span: an error status with the failure's kind
// when the call failed.
func endCall(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		var f *engine.StepFailure
		if errors.As(err, &f) && f.Kind != "" {
			span.SetAttributes(attribute.String("taskerd.error.kind", f.Kind))
		}
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// startAuthCall starts the span of one call into an authenticator plugin,
// "authenticate PLUGIN" (a client span, child of the API request's).
func (p *Plugin) startAuthCall(ctx context.Context) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	return p.tracer.Start(ctx, "authenticate "+p.spec.Name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", "taskerd.plugin.v1.Authenticator"),
		attribute.String("rpc.method", "Authenticate"),
		attribute.String("taskerd.plugin", p.spec.Name),
	))
}

// endAuthCall ends an authenticator call's span with its outcome:
// authenticated, not_mine, rejected, or an error (timeout, crashed, error).
// Never the subject or a credential.
func endAuthCall(span trace.Span, sub *api.Subject, err error) {
	if span == nil {
		return
	}
	outcome := "not_mine"
	var ae *AuthError
	switch {
	case err == nil && sub != nil:
		outcome = "authenticated"
	case errors.As(err, &ae) && ae.Kind == "rejected":
		outcome = "rejected"
	case errors.As(err, &ae):
		outcome = ae.Kind
		span.SetStatus(codes.Error, ae.Kind)
	case err != nil:
		outcome = "error"
		span.SetStatus(codes.Error, "error")
	}
	span.SetAttributes(attribute.String("taskerd.auth.outcome", outcome))
	span.End()
}
