package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/logging"
)

func TestDurationsAreStringsInJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(logging.NewHandler(&buf, logging.JSON, slog.LevelInfo))
	log.Info("stopping", "grace", 30*time.Second, "wait", slog.AnyValue(1500*time.Millisecond),
		slog.Group("lease", "duration", 2*time.Minute, "count", 3), "plain", 42)
	log.With("lease", 10*time.Second).WithGroup("g").Info("derived", "took", time.Duration(0))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "30s", rec["grace"])
	require.Equal(t, "1.5s", rec["wait"])
	require.Equal(t, map[string]any{"duration": "2m0s", "count": float64(3)}, rec["lease"], "durations inside groups too")
	require.Equal(t, float64(42), rec["plain"], "other numbers are untouched")
	require.Equal(t, "INFO", rec["level"])
	require.Equal(t, "stopping", rec["msg"])
	require.Contains(t, rec, "time")

	rec = nil
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &rec))
	require.Equal(t, "10s", rec["lease"], "attributes of With")
	require.Equal(t, map[string]any{"took": "0s"}, rec["g"])
}

func TestTextFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(logging.NewHandler(&buf, logging.Text, slog.LevelWarn))
	log.Info("not written")
	log.Warn("step failed; retrying", "retry_in", 2*time.Second)
	require.Regexp(t, `^time=\S+ level=WARN msg="step failed; retrying" retry_in=2s\n$`, buf.String())
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		got, err := logging.ParseLevel(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "verbose", "info+2", "debug-4"} {
		_, err := logging.ParseLevel(in)
		require.ErrorContains(t, err, "want debug, info, warn or error", in)
	}
}

func TestFormatChoice(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	for in, want := range map[string]string{"json": logging.JSON, "text": logging.Text, "": logging.JSON} {
		got, err := logging.ParseFormat(in, &buf)
		require.NoError(t, err)
		require.Equal(t, want, got, "%q to a buffer", in)
	}
	_, err := logging.ParseFormat("logfmt", &buf)
	require.ErrorContains(t, err, `"logfmt": want json or text`)

	// A file or a pipe gets JSON; a character device (a terminal) text.
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, logging.JSON, logging.DefaultFormat(f))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.Equal(t, logging.JSON, logging.DefaultFormat(w))
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer dev.Close()
	require.True(t, logging.IsTerminal(dev), "%s is a character device", os.DevNull)
	require.Equal(t, logging.Text, logging.DefaultFormat(dev))
	got, err := logging.ParseFormat("json", dev)
	require.NoError(t, err)
	require.Equal(t, logging.JSON, got, "the flag wins over the terminal")
}

func TestWriterKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := logging.NewWriter(&buf)
	require.False(t, w.Wrote())
	a := slog.New(logging.NewHandler(w, logging.JSON, slog.LevelInfo))
	b := slog.New(logging.NewHandler(w, logging.JSON, slog.LevelInfo))
	var wg sync.WaitGroup
	for _, l := range []*slog.Logger{a, b} {
		wg.Go(func() {
			for range 200 {
				l.Info("line", "pad", strings.Repeat("x", 512))
			}
		})
	}
	wg.Wait()
	require.True(t, w.Wrote())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 400)
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), "two handlers on one writer never interleave: %q", l)
	}
}

// A line logged with a context holding a span carries its trace_id and
// span_id; one without, or logged without its context, carries neither.
func TestTraceIDs(t *testing.T) {
	t.Parallel()
	for _, format := range []string{logging.JSON, logging.Text} {
		var buf bytes.Buffer
		log := slog.New(logging.NewHandler(&buf, format, slog.LevelInfo)).With("node", "n1")
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		})
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		log.InfoContext(ctx, "traced", "k", 1)
		log.InfoContext(context.Background(), "untraced")
		log.Info("no context")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		require.Len(t, lines, 3)
		if format == logging.JSON {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
			require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", rec["trace_id"])
			require.Equal(t, "00f067aa0ba902b7", rec["span_id"])
			require.Equal(t, "n1", rec["node"])
		} else {
			require.Contains(t, lines[0], "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7")
		}
		for _, l := range lines[1:] {
			require.NotContains(t, l, "trace_id")
		}
	}
}
