package host_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/tracing"
	"github.com/taskerd/taskerd/internal/tracing/otlptest"
	"github.com/taskerd/taskerd/plugin/host"
)

// tracedResult is what testplugin's traced handler reports.
type tracedResult struct {
	TraceID      string `json:"trace_id"`
	SpanID       string `json:"span_id"`
	ParentSpanID string `json:"parent_span_id"`
	Name         string `json:"name"`
	Recording    bool   `json:"recording"`
	Sampled      bool   `json:"sampled"`
	OTelEndpoint string `json:"otel_endpoint"`
}

// The whole chain with a real plugin process: a task's step attempt (the
// engine's span, child of the task's) calls the plugin (the host's span,
// captured by the in-memory exporter), whose W3C trace context travels in
// the call's gRPC metadata; the SDK in the plugin starts the handler's
// span under it and exports it over OTLP to the collector the host's
// environment named. The plugin's log line, written with the handler's
// ctx, reaches taskerd's log with the trace_id.
func TestTracePluginSpanIsAChildOfTheCall(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewTracerProvider(sdktrace.WithSyncer(exp))
	col := otlptest.Start(t)
	b := startTestPluginWith(t, nil, host.Options{RestartMin: 20 * time.Millisecond, TracerProvider: tp,
		Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.URL, "OTEL_BSP_SCHEDULE_DELAY=20"}})
	reg := builtin.NewRegistry()
	require.NoError(t, b.host.Register(reg))
	wfs, diags := definition.NewParser().ParseSource("wf.hcl", []byte(`
workflow "traced" {
  step "first" {
    handler = "builtin.noop"
  }
  step "call" {
    handler    = "testp.traced"
    depends_on = [step.first]
  }
}`))
	require.False(t, diags.HasErrors(), diags.Error())
	store := storetest.SQLite(t)
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(wfs), Registry: reg, TracerProvider: tp})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	task, _, err := eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: "default/traced"})
	require.NoError(t, err)
	var result tracedResult
	eventually(t, 10*time.Second, func() bool {
		steps, err := store.ListSteps(context.Background(), task.ID)
		require.NoError(t, err)
		for _, s := range steps {
			if s.Name == "call" && s.State == backends.StateComplete {
				require.NoError(t, json.Unmarshal(s.Results, &result))
				return true
			}
		}
		return false
	}, "step call never completed")

	var spans tracetest.SpanStubs
	eventually(t, 5*time.Second, func() bool {
		spans = exp.GetSpans()
		return spanNamed(spans, "step call") != nil
	}, "no step span")
	taskSC := tracing.TaskSpanContext(task.ID, task.CreatedAt)
	step := spanNamed(spans, "step call")
	call := spanNamed(spans, "plugin testp.traced")
	require.NotNil(t, call)
	require.Equal(t, taskSC.TraceID(), step.SpanContext.TraceID())
	require.Equal(t, taskSC.SpanID(), step.Parent.SpanID(), "the step attempt is a child of its task's span")
	require.Equal(t, step.SpanContext.SpanID(), call.Parent.SpanID(), "the plugin call is a child of the step attempt")
	require.Equal(t, trace.SpanKindClient, call.SpanKind)

	// What the plugin saw: its handler's span, recording, a child of the
	// host's call span, in the task's trace.
	require.Equal(t, col.URL, result.OTelEndpoint, "the plugin got its OTEL_* environment")
	require.True(t, result.Recording, "the SDK set tracing up from the environment: %+v", result)
	require.Equal(t, "handler traced", result.Name)
	require.Equal(t, call.SpanContext.TraceID().String(), result.TraceID)
	require.Equal(t, call.SpanContext.SpanID().String(), result.ParentSpanID, "the plugin's span is a child of the host's call span")
	require.True(t, result.Sampled)

	// The plugin exported its span: same ids, parent the host's span.
	var got otlptest.Span
	eventually(t, 10*time.Second, func() bool {
		var ok bool
		got, ok = col.Named("handler traced")
		return ok
	}, "the plugin's span never reached the collector")
	require.Equal(t, result.SpanID, got.SpanID())
	require.Equal(t, result.TraceID, got.TraceID())
	require.Equal(t, call.SpanContext.SpanID().String(), got.ParentSpanID())
	require.Equal(t, "testplugin", got.Service, "a plugin's service name is its executable's")

	eventually(t, 5*time.Second, func() bool {
		for _, l := range strings.Split(b.logs.String(), "\n") {
			if strings.Contains(l, `msg="traced called"`) && strings.Contains(l, "trace_id="+result.TraceID) && strings.Contains(l, "span_id="+result.SpanID) {
				return true
			}
		}
		return false
	}, "the plugin's log line lacks its trace_id:\n%s", b.logs.String())
}

// Without a TracerProvider the host sends no trace context: the plugin's
// handler runs in no trace.
func TestTraceOffSendsNothing(t *testing.T) {
	t.Parallel()
	b := startTestPlugin(t, nil)
	exp := tracetest.NewInMemoryExporter()
	ctx, span := tracing.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	out, err := b.p.Execute(ctx, "traced", stepRequest("charge", nil))
	require.NoError(t, err)
	var result tracedResult
	require.NoError(t, json.Unmarshal(out, &result))
	require.Equal(t, trace.TraceID{}.String(), result.TraceID, "no trace context reached the plugin")
	require.False(t, result.Recording)
	require.Empty(t, result.OTelEndpoint)
}

func spanNamed(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}
