package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/internal/tracing/otlptest"
)

// serve with a tracing block exports its spans over OTLP: the request, the
// task it created and the task's step attempts, flushed at stop; its log
// says where they go, and its request lines carry trace_id.
func TestServeTracing(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	col := otlptest.Start(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows", "work.hcl"), []byte(serveHCL), 0o644))
	cfg := fmt.Sprintf("database = %q\nworkflows = \"workflows\"\ntracing {\n  endpoint = %q\n}\n",
		"sqlite:"+filepath.Join(dir, "taskerd.db"), col.URL)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "taskerd.hcl"), []byte(cfg), 0o644))

	s := startServe(t, bin, "--config", filepath.Join(dir, "taskerd.hcl"))
	s.waitLog(t, `"msg":"tracing on"`)
	s.waitLog(t, `"endpoint":"`+col.URL+`/v1/traces"`)
	req, err := http.NewRequest("POST", s.url+"/v1/tasks", bytes.NewBufferString(`{"workflow": "default/work"}`))
	require.NoError(t, err)
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	require.Eventually(t, func() bool { return s.countTasks(t, "complete") == 1 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	// Flushed at stop: everything is there without waiting for a batch.
	post, ok := col.Named("POST /v1/tasks")
	require.True(t, ok, "spans: %v", spanNames(col.Spans()))
	require.Equal(t, callerTrace, post.TraceID())
	require.Equal(t, "taskerd", post.Service)
	task, ok := col.Named("task default/work")
	require.True(t, ok)
	require.Equal(t, post.Attr("taskerd.task.trace_id"), task.TraceID())
	for _, name := range []string{"step a", "step b", "step c"} {
		step, ok := col.Named(name)
		require.True(t, ok, "spans: %v", spanNames(col.Spans()))
		require.Equal(t, task.SpanID(), step.ParentSpanID(), "%s is a child of the task's span", name)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	traced := false
	for _, l := range s.log {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "request" && rec["method"] == "POST" {
			traced = rec["trace_id"] == callerTrace
		}
	}
	require.True(t, traced, "the request's log line carries its trace_id:\n%s", strings.Join(s.log, "\n"))
}

func spanNames(spans []otlptest.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}
