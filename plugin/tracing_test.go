package plugin

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// The SDK's server side: a call whose metadata carries taskerd's W3C
// trace context runs its handler under a span that is a child of it, and
// the author's own spans, started from the handler's ctx, are children of
// that.
func TestHandlerSpanIsAChildOfTheCallersSpan(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	var seen trace.SpanContext
	s := newServer(Handlers{
		"charge": func(ctx context.Context, req *Request) (any, error) {
			seen = trace.SpanContextFromContext(ctx)
			// What docs/plugins.md tells authors to do.
			_, child := trace.SpanFromContext(ctx).TracerProvider().Tracer("charge").Start(ctx, "call the bank")
			child.End()
			return map[string]any{"ok": true}, nil
		},
		"refuse": func(context.Context, *Request) (any, error) { return nil, Permanent(errors.New("card declined")) },
	}, &serveOptions{tracerProvider: tp})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", "00-"+traceID+"-"+parentID+"-01"))
	resp, err := s.Execute(ctx, &pb.ExecuteRequest{Handler: "charge", TaskId: 7, StepName: "charge", Attempt: 2})
	require.NoError(t, err)
	require.NotNil(t, resp.GetSuccess())

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	child, handler := spans[0], spans[1]
	require.Equal(t, "handler charge", handler.Name)
	require.Equal(t, trace.SpanKindServer, handler.SpanKind)
	require.Equal(t, traceID, handler.SpanContext.TraceID().String())
	require.Equal(t, parentID, handler.Parent.SpanID().String(), "the host's span is the handler span's parent")
	require.True(t, handler.Parent.IsRemote())
	require.Equal(t, handler.SpanContext, seen, "the handler's ctx carries its span")
	require.Equal(t, "call the bank", child.Name)
	require.Equal(t, handler.SpanContext.SpanID(), child.Parent.SpanID())

	exp.Reset()
	resp, err = s.Execute(ctx, &pb.ExecuteRequest{Handler: "refuse"})
	require.NoError(t, err)
	require.NotNil(t, resp.GetFailure())
	spans = exp.GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, codes.Error, spans[0].Status.Code)
	require.Equal(t, "card declined", spans[0].Status.Description)

	// No trace context sent (taskerd does not trace): the handler's span is
	// a root of its own, when the plugin traces at all.
	exp.Reset()
	_, err = s.Execute(context.Background(), &pb.ExecuteRequest{Handler: "charge"})
	require.NoError(t, err)
	require.False(t, exp.GetSpans()[1].Parent.IsValid())
}
