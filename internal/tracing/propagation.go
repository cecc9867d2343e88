package tracing

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Propagator is the W3C trace context (traceparent, tracestate): what the
// API reads from its callers and the host sends to plugins.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// metadataCarrier is gRPC metadata as a propagation.TextMapCarrier (keys
// are lower case in gRPC metadata, as in the W3C headers).
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectGRPC returns ctx with the trace context of its span added to its
// outgoing gRPC metadata; ctx unchanged when it has no span.
func InjectGRPC(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	Propagator.Inject(ctx, metadataCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// ExtractGRPC returns ctx with the trace context of its incoming gRPC
// metadata as its remote parent span; ctx unchanged when there is none.
func ExtractGRPC(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get("traceparent")) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, metadataCarrier(md))
}

// UnaryClientInterceptor injects the trace context of each call's ctx
// into its metadata (InjectGRPC): the host's dial option for plugins,
// when tracing is on.
func UnaryClientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(InjectGRPC(ctx), method, req, reply, cc, opts...)
}

// ExtractHTTP returns ctx with the trace context of an HTTP request's
// traceparent header as its remote parent span; ctx unchanged when there
// is none (or it is not valid).
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	if h.Get("traceparent") == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}
