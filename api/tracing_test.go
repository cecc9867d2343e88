package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/internal/logging"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/internal/tracing"
)

// A request joins its caller's trace; the task it creates has its own
// trace, whose span links to the request's; each step attempt is a child
// of the task's span; and the log lines carry the trace ids.
func TestTracingRequestTaskSteps(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		exp := tracetest.NewInMemoryExporter()
		tp := tracing.NewTracerProvider(sdktrace.WithSyncer(exp))
		logs := &logsink.Buffer{}
		c := newClient(t, open(t), options{tracer: tp, logger: slog.New(logging.NewHandler(logs, logging.JSON, slog.LevelInfo))})

		const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		r := c.do("POST", "/v1/tasks", map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": "A-1"}},
			"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		id := r.json(t)["id"].(float64)
		c.waitStatus(id, "complete")
		task, err := c.store.GetTask(t.Context(), int64(id))
		require.NoError(t, err)
		want := tracing.TaskSpanContext(task.ID, task.CreatedAt)

		var spans tracetest.SpanStubs
		require.Eventually(t, func() bool {
			spans = exp.GetSpans()
			return byName(spans, "step ship") != nil
		}, 5*time.Second, 10*time.Millisecond, "spans: %v", names(exp.GetSpans()))

		req := byName(spans, "POST /v1/tasks")
		require.NotNil(t, req, "spans: %v", names(spans))
		require.Equal(t, trace.SpanKindServer, req.SpanKind)
		require.Equal(t, callerTrace, req.SpanContext.TraceID().String(), "the caller's traceparent is the request's parent")
		require.Equal(t, callerSpan, req.Parent.SpanID().String())
		require.Equal(t, "/v1/tasks", attr(req, "http.route").AsString())
		require.Equal(t, int64(201), attr(req, "http.response.status_code").AsInt64())
		require.Equal(t, want.TraceID().String(), attr(req, "taskerd.task.trace_id").AsString())

		ts := byName(spans, "task shop/orders")
		require.NotNil(t, ts, "spans: %v", names(spans))
		require.Equal(t, want.TraceID(), ts.SpanContext.TraceID(), "the task's trace is derived from the task")
		require.Equal(t, want.SpanID(), ts.SpanContext.SpanID())
		require.Len(t, ts.Links, 1)
		require.Equal(t, req.SpanContext.SpanID(), ts.Links[0].SpanContext.SpanID(), "linked to the request that created it")
		require.Equal(t, task.ID, attr(ts, "taskerd.task.id").AsInt64())

		for _, name := range []string{"validate", "ship"} {
			s := byName(spans, "step "+name)
			require.NotNil(t, s, "spans: %v", names(spans))
			require.Equal(t, want.TraceID(), s.SpanContext.TraceID())
			require.Equal(t, want.SpanID(), s.Parent.SpanID(), "step %s is a child of the task's span", name)
			require.Equal(t, name, attr(s, "taskerd.step.name").AsString())
			require.Equal(t, int64(1), attr(s, "taskerd.step.attempt").AsInt64())
			require.Equal(t, "completed", attr(s, "taskerd.step.outcome").AsString())
			require.Equal(t, codes.Unset, s.Status.Code)
		}

		// A step that fails: its span says so, and the log line that
		// reports it carries its task's trace_id.
		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "broken"})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		bid := r.json(t)["id"].(float64)
		c.waitStatus(bid, "error")
		broken, err := c.store.GetTask(t.Context(), int64(bid))
		require.NoError(t, err)
		bt := tracing.TaskSpanContext(broken.ID, broken.CreatedAt).TraceID().String()
		var boom *tracetest.SpanStub
		require.Eventually(t, func() bool {
			boom = byName(exp.GetSpans(), "step boom")
			return boom != nil
		}, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, codes.Error, boom.Status.Code)
		require.Equal(t, "card declined", boom.Status.Description)
		require.Equal(t, "failed", attr(boom, "taskerd.step.outcome").AsString())
		require.Equal(t, bt, boom.SpanContext.TraceID().String())

		require.Eventually(t, func() bool { return len(logLines(logs, "step blocked")) == 1 }, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, bt, logLines(logs, "step blocked")[0]["trace_id"])
		var reqLine map[string]any
		for _, l := range logLines(logs, "request") {
			if l["method"] == "POST" && l["trace_id"] == callerTrace {
				reqLine = l
			}
		}
		require.NotNil(t, reqLine, "the request's log line carries its trace_id:\n%s", logs.String())
		require.Equal(t, req.SpanContext.SpanID().String(), reqLine["span_id"])
		created := logLines(logs, "task created")
		require.NotEmpty(t, created)
		require.Equal(t, want.TraceID().String(), created[0]["trace_id"], "lifecycle lines carry the task's trace_id")
	})
}

// Without a TracerProvider nothing is traced and no line carries a
// trace_id, whatever the request sends.
func TestTracingOffByDefault(t *testing.T) {
	t.Parallel()
	logs := &logsink.Buffer{}
	c := newClient(t, storetest.SQLite(t), options{logger: slog.New(logging.NewHandler(logs, logging.JSON, slog.LevelInfo))})
	r := c.do("POST", "/v1/tasks", map[string]any{"workflow": "shop/orders", "context": map[string]any{"order_id": "A-1"}},
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	require.Equal(t, http.StatusCreated, r.status)
	c.waitStatus(r.json(t)["id"].(float64), "complete")
	require.NotContains(t, logs.String(), "trace_id")
}

func byName(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(s *tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

// logLines are the JSON log lines whose msg is msg.
func logLines(logs *logsink.Buffer, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
