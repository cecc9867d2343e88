package tracing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/taskerd/taskerd/internal/tracing"
	"github.com/taskerd/taskerd/internal/tracing/otlptest"
)

func TestEnabled(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	require.False(t, tracing.Enabled(nil, env()), "off by default")
	require.True(t, tracing.Enabled(&tracing.Config{}, env()), "a tracing block")
	require.True(t, tracing.Enabled(nil, env(tracing.EnvEndpoint, "http://c:4318")))
	require.True(t, tracing.Enabled(nil, env(tracing.EnvTracesEndpoint, "http://c:4318/v1/traces")))
	require.False(t, tracing.Enabled(&tracing.Config{}, env(tracing.EnvSDKDisabled, "true")), "OTEL_SDK_DISABLED wins")
}

// A task's span context is derived from the task alone: the same on every
// node, at any time, and different for every task.
func TestTaskSpanContextIsDerived(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)
	a := tracing.TaskSpanContext(7, created)
	require.True(t, a.IsValid())
	require.True(t, a.IsRemote())
	require.True(t, a.IsSampled(), "ratio 1 by default")
	require.Equal(t, a, tracing.TaskSpanContext(7, created.In(time.FixedZone("x", 3600))), "an instant, whatever its zone")
	require.NotEqual(t, a.TraceID(), tracing.TaskSpanContext(8, created).TraceID())
	require.NotEqual(t, a.TraceID(), tracing.TaskSpanContext(7, created.Add(time.Microsecond)).TraceID())

	ctx := tracing.ContextWithTask(context.Background(), 7, created)
	require.Equal(t, a, trace.SpanContextFromContext(ctx))
}

// StartTaskSpan records the task's span with the derived ids, as a root
// linked to the creating request's span; spans started under
// ContextWithTask are its children.
func TestTaskSpan(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewTracerProvider(sdktrace.WithSyncer(exp))
	tracer := tp.Tracer("test")
	created := time.Now().UTC().Truncate(time.Microsecond)

	reqCtx, req := tracer.Start(context.Background(), "POST /v1/tasks")
	tracing.StartTaskSpan(reqCtx, tracer, "task default/hello", 42, created)
	req.End()
	_, step := tracer.Start(tracing.ContextWithTask(context.Background(), 42, created), "step greet")
	step.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 3)
	task, reqSpan, stepSpan := spans[0], spans[1], spans[2]
	want := tracing.TaskSpanContext(42, created)
	require.Equal(t, "task default/hello", task.Name)
	require.Equal(t, want.TraceID(), task.SpanContext.TraceID())
	require.Equal(t, want.SpanID(), task.SpanContext.SpanID())
	require.False(t, task.Parent.IsValid(), "a root: the task's trace is its own")
	require.Equal(t, created, task.StartTime.UTC())
	require.Len(t, task.Links, 1)
	require.Equal(t, reqSpan.SpanContext.SpanID(), task.Links[0].SpanContext.SpanID(), "linked to the request that created it")
	require.Equal(t, want.SpanID(), stepSpan.Parent.SpanID())
	require.Equal(t, want.TraceID(), stepSpan.SpanContext.TraceID())

	// Other spans get random ids.
	_, other := tracer.Start(context.Background(), "other")
	other.End()
	require.NotEqual(t, want.TraceID(), exp.GetSpans()[3].SpanContext.TraceID())
}

// The sample ratio decides a task's trace the same way for its span (a
// root, decided by the sampler) and for its derived span context (the
// parent of its steps' spans).
func TestTaskSamplingMatchesTheSampler(t *testing.T) {
	// Not parallel: it changes the package's task sample ratio.
	tracing.SetTaskSampleRatio(0.5)
	t.Cleanup(func() { tracing.SetTaskSampleRatio(1) })
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5))
	created := time.Now()
	sampled := 0
	for id := int64(1); id <= 200; id++ {
		sc := tracing.TaskSpanContext(id, created)
		d := sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: sc.TraceID()}).Decision
		require.Equal(t, d == sdktrace.RecordAndSample, sc.IsSampled(), "task %d", id)
		if sc.IsSampled() {
			sampled++
		}
	}
	require.InDelta(t, 100, sampled, 40)
}

func TestGRPCPropagation(t *testing.T) {
	t.Parallel()
	tp := tracing.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	defer span.End()

	require.Equal(t, context.Background(), tracing.InjectGRPC(context.Background()), "no span: nothing sent")
	out := tracing.InjectGRPC(metadata.AppendToOutgoingContext(ctx, "x-other", "kept"))
	md, _ := metadata.FromOutgoingContext(out)
	require.Len(t, md.Get("traceparent"), 1)
	require.Equal(t, []string{"kept"}, md.Get("x-other"))

	in := tracing.ExtractGRPC(metadata.NewIncomingContext(context.Background(), md))
	got := trace.SpanContextFromContext(in)
	require.True(t, got.IsRemote())
	require.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, span.SpanContext().SpanID(), got.SpanID())

	bare := context.Background()
	require.Equal(t, bare, tracing.ExtractGRPC(bare))
}

func TestPluginEnv(t *testing.T) {
	t.Parallel()
	environ := []string{
		"HOME=/root", "DATABASE_URL=postgres://secret",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://env:4318", "OTEL_EXPORTER_OTLP_HEADERS=x-key=1",
		"OTEL_SERVICE_NAME=taskerd-prod", "OTEL_RESOURCE_ATTRIBUTES=service.name=taskerd,deployment.environment=prod",
	}
	require.Nil(t, tracing.PluginEnv(nil, []string{"HOME=/root"}), "tracing off: nothing")
	require.ElementsMatch(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://env:4318", "OTEL_EXPORTER_OTLP_HEADERS=x-key=1",
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod",
	}, tracing.PluginEnv(nil, environ), "the OTEL_* variables but the service name; nothing else")

	ratio := 0.1
	env := tracing.PluginEnv(&tracing.Config{Endpoint: "http://file:4317", Protocol: "grpc", SampleRatio: &ratio},
		append(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://env:4318/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"))
	require.Contains(t, env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://file:4317", "the block's endpoint wins")
	require.Contains(t, env, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
	for _, kv := range env {
		require.False(t, strings.HasPrefix(kv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="), "the environment's endpoint is dropped: %v", env)
		require.NotEqual(t, "OTEL_EXPORTER_OTLP_ENDPOINT=http://env:4318", kv)
		require.NotEqual(t, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", kv)
	}
	require.Equal(t, []string{"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317"},
		tracing.PluginEnv(&tracing.Config{Protocol: "grpc"}, nil), "a block with no endpoint: the default one, named")
}

// Setup with an endpoint exports spans over OTLP/HTTP, and Shutdown
// flushes them; without one (and no block) it sets up nothing.
func TestSetupExportsOverOTLP(t *testing.T) {
	// Not parallel: t.Setenv.
	for _, k := range []string{tracing.EnvEndpoint, tracing.EnvTracesEndpoint, tracing.EnvProtocol, tracing.EnvTracesProtocol,
		tracing.EnvServiceName, tracing.EnvResourceAttrs, tracing.EnvSDKDisabled, tracing.EnvTracesSampler, tracing.EnvTracesSamplerArg} {
		t.Setenv(k, "")
	}
	tp, err := tracing.Setup(context.Background(), nil, "taskerd", "v1", nil)
	require.NoError(t, err)
	require.Nil(t, tp, "off unless configured")

	col := otlptest.Start(t)
	t.Setenv(tracing.EnvServiceName, "taskerd-test")
	tp, err = tracing.Setup(context.Background(), &tracing.Config{Endpoint: col.URL}, "taskerd", "v1", nil)
	require.NoError(t, err)
	require.NotNil(t, tp)
	require.Equal(t, tracing.ProtocolHTTP, tp.Protocol)
	require.Equal(t, col.URL+"/v1/traces", tp.Endpoint)
	_, span := tp.Tracer("test").Start(context.Background(), "exported")
	span.End()
	require.NoError(t, tp.Shutdown(context.Background()))

	got := col.Spans()
	require.Len(t, got, 1, "flushed by Shutdown")
	require.Equal(t, "exported", got[0].GetName())
	require.Equal(t, "taskerd-test", got[0].Service, "OTEL_SERVICE_NAME beats the default")

	ratio := 2.0
	_, err = tracing.Setup(context.Background(), &tracing.Config{SampleRatio: &ratio}, "taskerd", "", nil)
	require.ErrorContains(t, err, "sample_ratio")
	_, err = tracing.Setup(context.Background(), &tracing.Config{Protocol: "udp"}, "taskerd", "", nil)
	require.ErrorContains(t, err, `protocol "udp"`)
}
