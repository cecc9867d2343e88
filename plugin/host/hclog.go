package host

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns the hclog.Logger go-plugin writes to (its own
// messages and every line of the plugin's stderr, parsed when it is hclog
// JSON, which the SDK's Logger writes) routed into l.
func newHCLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Info
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "plugin", Level: level, Output: io.Discard})
	il.RegisterSink(slogSink{l: l})
	return il
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	var lv slog.Level
	switch level {
	case hclog.Trace:
		lv = slog.LevelDebug - 4
	case hclog.Debug:
		lv = slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		lv = slog.LevelInfo
	case hclog.Warn:
		lv = slog.LevelWarn
	default:
		lv = slog.LevelError
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, len(args)+2)
	attrs = append(attrs, "source", name)
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		switch k {
		case "timestamp":
			continue // the plugin's own clock; the host's record has one
		case "plugin":
			// go-plugin's own lines name the executable "plugin"; the
			// host's logger already says which plugin by name, and a
			// JSON object with the key twice is read differently by
			// every parser.
			attrs = append(attrs, "plugin_path", args[i+1])
			continue
		}
		attrs = append(attrs, args[i], args[i+1])
	}
	s.l.Log(ctx, lv, msg, attrs...)
}
