package plugin

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/logging"
	"github.com/taskerd/taskerd/plugin/internal/sdkbridge"
)

// logger writes JSON lines in the shape go-plugin's host reads from a
// plugin's stderr (hclog's @level, @message, @timestamp); taskerd re-logs
// each line at its level, with its attributes, under the plugin's name. A
// line logged with a handler's ctx (InfoContext and the like) carries the
// trace_id and span_id of the step attempt's trace.
var logger = slog.New(captureHandler{inner: logging.TraceHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
	Level:       slog.LevelDebug,
	ReplaceAttr: hclogShape,
}))})

// captureHandler hands a line logged with a ctx that carries a test's log
// sink (plugintest) to that sink, with the attributes the logger was given
// (WithAttrs, flattened as group.key), instead of writing it to stderr.
type captureHandler struct {
	inner slog.Handler
	attrs []slog.Attr
	group string // the WithGroup prefix, "a.b." or ""
}

func (h captureHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return sdkbridge.Logs(ctx) != nil || h.inner.Enabled(ctx, l)
}

func (h captureHandler) Handle(ctx context.Context, r slog.Record) error {
	sink := sdkbridge.Logs(ctx)
	if sink == nil {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		a.Key = h.group + a.Key
		out.AddAttrs(a)
		return true
	})
	sink(out)
	return nil
}

func (h captureHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := captureHandler{inner: h.inner.WithAttrs(attrs), group: h.group, attrs: slices.Clone(h.attrs)}
	for _, a := range attrs {
		a.Key = h.group + a.Key
		c.attrs = append(c.attrs, a)
	}
	return c
}

func (h captureHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return captureHandler{inner: h.inner.WithGroup(name), attrs: h.attrs, group: h.group + name + "."}
}

func hclogShape(groups []string, a slog.Attr) slog.Attr {
	// A duration is written as "1.5s", as taskerd writes its own, not as
	// the integer nanoseconds slog's JSON would hold (which taskerd could
	// not tell from any other number).
	a = logging.ReplaceAttr(groups, a)
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "@message"
	case slog.LevelKey:
		a.Key = "@level"
		if l, ok := a.Value.Any().(slog.Level); ok {
			a.Value = slog.StringValue(hclogLevel(l))
		}
	case slog.TimeKey:
		a.Key = "@timestamp"
		if t, ok := a.Value.Any().(time.Time); ok {
			a.Value = slog.StringValue(t.Format("2006-01-02T15:04:05.000000Z07:00"))
		}
	}
	return a
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return strings.ToLower(slog.LevelError.String())
	}
}

// Logger returns a logger writing to stderr; taskerd shows its lines in its
// own log with the plugin's name. Log with a handler's ctx
// (Logger().InfoContext(ctx, ...)) for the line to carry the trace_id and
// span_id of the step attempt's trace, when taskerd traces. Never write to
// stdout in a plugin: the go-plugin handshake uses it.
func Logger() *slog.Logger { return logger }
