package plugin

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/tracing"
)

// tracerName names the SDK's spans' instrumentation scope.
const tracerName = "github.com/taskerd/taskerd/plugin"

// setupTracing starts the plugin process's tracing when its environment
// asks for it: taskerd, tracing, gives its plugins its OTEL_* variables
// (OTEL_EXPORTER_OTLP_ENDPOINT among them). The service name is
// OTEL_SERVICE_NAME, or the executable's name. The returned func flushes
// the spans left at exit; it does nothing when tracing is off.
func setupTracing() func() {
	tp, err := tracing.Setup(context.Background(), nil, serviceName(), "", logger)
	if err != nil {
		logger.Warn("tracing is not set up", "err", err.Error())
		return func() {}
	}
	if tp == nil {
		return func() {}
	}
	return func() {
		// taskerd kills a plugin 2 s after asking it to stop.
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}
}

func serviceName() string {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	if name == "" || name == "." {
		return "taskerd-plugin"
	}
	return name
}

// tracer is the SDK's tracer: the options' provider (tests), else the
// global one (setupTracing's, one the plugin's author set, or a no-op).
func (o *serveOptions) tracer() trace.Tracer {
	if o.tracerProvider != nil {
		return o.tracerProvider.Tracer(tracerName)
	}
	return otel.GetTracerProvider().Tracer(tracerName)
}

// startHandlerSpan starts the span of one handler call, "handler NAME" (a
// server span), under the trace context taskerd sent in the call's
// metadata: the plugin call span of the step attempt. The handler's ctx
// carries it, so the author's own spans are its children and log lines
// written with ctx carry its trace_id. Without a provider set up it starts
// nothing, but ctx still carries taskerd's span context.
func (o *serveOptions) startHandlerSpan(ctx context.Context, in handlerCall) (context.Context, trace.Span) {
	ctx = tracing.ExtractGRPC(ctx)
	return o.tracer().Start(ctx, in.spanName, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(in.attrs...))
}

type handlerCall struct {
	spanName string
	attrs    []attribute.KeyValue
}

// endHandlerSpan ends a handler's span; failed is the failure's message
// ("" for a success).
func endHandlerSpan(span trace.Span, failed string) {
	if failed != "" {
		span.SetStatus(codes.Error, failed)
	}
	span.End()
}
