package main

import (
	"context"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/internal/tracing"
	"github.com/taskerd/taskerd/plugin/host"
)

// serveTracing is serve's tracing (docs/tracing.md): on with a tracing
// block in the config or OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) in the environment, off otherwise.
type serveTracing struct {
	provider *tracing.Provider // nil: off
	// pluginEnv is the environment plugins get: the OTEL_* variables, so
	// that the SDK in each exports its spans where serve does.
	pluginEnv []string
}

// startTracing sets up serve's tracing, and logs where spans go. stop
// flushes the spans not yet exported (call it last, once the engine and
// the plugins have stopped); it does nothing when tracing is off.
func startTracing(ctx context.Context, cfg *config.Config, log *slog.Logger) (*serveTracing, func(), error) {
	var tc *tracing.Config
	if cfg != nil && cfg.Tracing != nil {
		tc = &tracing.Config{Endpoint: cfg.Tracing.Endpoint, Protocol: cfg.Tracing.Protocol, SampleRatio: cfg.Tracing.SampleRatio}
	}
	tp, err := tracing.Setup(ctx, tc, "taskerd", readBuildVersion().Version, log)
	if err != nil {
		return nil, nil, &exitError{code: 1, err: err}
	}
	if tp == nil {
		return &serveTracing{}, func() {}, nil
	}
	endpoint := tp.Endpoint
	if endpoint == "" {
		endpoint = "(the exporter's default)"
	}
	log.Info("tracing on", "protocol", tp.Protocol, "endpoint", endpoint, "sample_ratio", tp.Ratio)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracing.ShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: flushing the last spans failed", "err", err.Error())
		}
	}
	return &serveTracing{provider: tp, pluginEnv: tracing.PluginEnv(tc, os.Environ())}, stop, nil
}

// tracerProvider is the provider components trace with; nil when off.
func (t *serveTracing) tracerProvider() trace.TracerProvider {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.TracerProvider
}

// hostOptions are the plugin host's options under this tracing.
func (t *serveTracing) hostOptions(log *slog.Logger) host.Options {
	o := host.Options{Logger: log}
	if tp := t.tracerProvider(); tp != nil {
		o.TracerProvider, o.Env = tp, t.pluginEnv
	}
	return o
}
