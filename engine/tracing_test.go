package engine_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/tracing"
)

// Each step attempt is a span, child of its task's derived span, that
// says how the attempt ended: a timeout, a panic.
func TestAttemptSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	reg := builtin.NewRegistry()
	require.NoError(t, reg.Register("test.block", engine.HandlerFunc(func(ctx context.Context, _ *engine.StepRequest) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})))
	require.NoError(t, reg.Register("test.panic", engine.HandlerFunc(func(context.Context, *engine.StepRequest) (json.RawMessage, error) {
		panic("boom")
	})))
	cat := parseWorkflows(t, `
workflow "traced" {
  retry {
    limit = 1
  }
  step "stuck" {
    handler = "test.block"
    timeout = "50ms"
  }
  step "broken" {
    handler = "test.panic"
  }
}`)
	b := setup(t, storetest.SQLite(t), cat, withRegistry(reg), func(c *engine.Config) {
		c.TracerProvider = tracing.NewTracerProvider(sdktrace.WithSyncer(exp))
	})
	b.start()
	task := b.waitTask(b.create("default/traced", "").ID, backends.StateError)
	eventually(t, func() bool { return len(exp.GetSpans()) == 2 }, "two attempt spans")

	sc := tracing.TaskSpanContext(task.ID, task.CreatedAt)
	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		require.Equal(t, sc.TraceID(), s.SpanContext.TraceID())
		require.Equal(t, sc.SpanID(), s.Parent.SpanID(), "%s: a child of the task's span", s.Name)
		byName[s.Name] = s
	}
	attrs := func(s tracetest.SpanStub) map[string]string {
		m := map[string]string{}
		for _, a := range s.Attributes {
			m[string(a.Key)] = a.Value.Emit()
		}
		return m
	}
	stuck := byName["step stuck"]
	require.Equal(t, codes.Error, stuck.Status.Code)
	require.Equal(t, "timeout", attrs(stuck)["taskerd.step.outcome"])
	require.Equal(t, backends.ErrorKindTimeout, attrs(stuck)["taskerd.error.kind"])
	require.Equal(t, "test.block", attrs(stuck)["taskerd.step.handler"])
	require.Equal(t, "default/traced@0.1.0", attrs(stuck)["taskerd.workflow"])
	broken := byName["step broken"]
	require.Equal(t, codes.Error, broken.Status.Code)
	require.Contains(t, broken.Status.Description, "panicked: boom")
	require.Equal(t, "failed", attrs(broken)["taskerd.step.outcome"])
	require.Equal(t, "true", attrs(broken)["taskerd.error.retryable"])
}
