package plugin

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/logging"
)

// logger writes JSON lines in the shape go-plugin's host reads from a
// plugin's stderr (hclog's @level, @message, @timestamp); taskerd re-logs
// each line at its level, with its attributes, under the plugin's name. A
// line logged with a handler's ctx (InfoContext and the like) carries the
// trace_id and span_id of the step attempt's trace.
var logger = slog.New(logging.TraceHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
	Level:       slog.LevelDebug,
	ReplaceAttr: hclogShape,
})))

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
