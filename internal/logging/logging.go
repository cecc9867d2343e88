// Package logging builds the log handlers taskerd's commands write with, so
// that every line has one shape: slog's envelope (time, level, msg, then the
// line's attributes), as JSON lines or as logfmt-like text, with durations
// written as Go duration strings ("1.5s"), never as integer nanoseconds.
//
// It is internal: the shape is taskerd's interface (docs/operations.md), the
// package is not.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// Formats of log lines.
const (
	JSON = "json"
	Text = "text"
)

// ReplaceAttr is the handlers' slog.HandlerOptions.ReplaceAttr: it writes
// every time.Duration attribute, at any depth, as its String() ("30s",
// "1.5ms") where slog's JSON handler would write integer nanoseconds.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// NewHandler returns a handler writing lines of format (JSON or Text) to w,
// from level up. Each record is one Write to w. A record logged with a
// context holding a span carries its trace_id and span_id
// (TraceHandler).
func NewHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}
	if format == Text {
		return TraceHandler(slog.NewTextHandler(w, opts))
	}
	return TraceHandler(slog.NewJSONHandler(w, opts))
}

// ParseLevel reads a --log-level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil || !slices.Contains([]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, level) {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return level, nil
}

// ParseFormat reads a --log-format: json or text, or "" for the default
// of w (see DefaultFormat).
func ParseFormat(s string, w io.Writer) (string, error) {
	switch s {
	case JSON, Text:
		return s, nil
	case "":
		return DefaultFormat(w), nil
	}
	return "", fmt.Errorf("%q: want json or text", s)
}

// DefaultFormat is Text when w is a terminal (a person reads it) and JSON
// otherwise (a file, a pipe, a log collector).
func DefaultFormat(w io.Writer) string {
	if IsTerminal(w) {
		return Text
	}
	return JSON
}

// IsTerminal reports whether w is an *os.File open on a character device.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// Writer serializes the writes of several handlers sharing one stream (the
// daemon log and the decision log on stderr), so that their lines never
// interleave, and remembers whether anything was written.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	wrote atomic.Bool
}

// NewWriter wraps w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes p to the stream in one call, holding the lock.
func (s *Writer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrote.Store(true)
	return s.w.Write(p)
}

// Wrote reports whether any line was written.
func (s *Writer) Wrote() bool { return s.wrote.Load() }

// Keys of the trace attributes a line carries when its context holds a
// span (TraceHandler).
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// TraceHandler wraps h: a record logged with a context that carries a
// valid OpenTelemetry span context (InfoContext and the like) gets
// trace_id and span_id attributes, which tie the line to its trace. A
// record without one is passed on as it is.
func TraceHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r = r.Clone()
			r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
