// Command testplugin is the step-handler plugin plugin/host's tests run as a
// real subprocess. Its handlers misbehave on purpose.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/plugin"
)

var configured atomic.Pointer[json.RawMessage]

func main() {
	plugin.Serve(plugin.Handlers{
		"echo":       echo,
		"raw":        raw,
		"noop":       noop,
		"crash_once": crashOnce,
		"block":      block,
		"slow":       slow,
		"fail":       fail,
		"emit":       emit,
		"traced":     traced,
	},
		plugin.WithDescriptions(map[string]string{
			"echo":       "returns what it was given",
			"crash_once": "exits mid-call on the first attempt",
		}),
		plugin.WithConfigure(func(_ context.Context, cfg json.RawMessage) error {
			var c struct {
				Refuse    bool   `json:"refuse"`
				CrashFile string `json:"crash_file"`
			}
			if err := json.Unmarshal(cfg, &c); err != nil {
				return err
			}
			if c.CrashFile != "" {
				crashIfBroken(c.CrashFile)
			}
			if c.Refuse {
				return errors.New("configured to refuse")
			}
			configured.Store(&cfg)
			plugin.Logger().Info("configured", "bytes", len(cfg))
			return nil
		}),
	)
}

// crashIfBroken plays a broken build: while the file exists, the process
// appends its pid to it and dies while being configured, so every launch
// fails. Removing the file "fixes" the plugin.
func crashIfBroken(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return // no file: healthy
	}
	fmt.Fprintln(f, os.Getpid())
	_ = f.Close()
	os.Exit(4)
}

func echo(_ context.Context, req *plugin.Request) (any, error) {
	plugin.Logger().Info("echo called", "step", req.StepName, "attempt", req.Attempt)
	cfg := configured.Load()
	return map[string]any{
		"context":         req.Context,
		"config":          req.Config,
		"parents":         req.ParentResults,
		"attempt":         req.Attempt,
		"idempotency_key": req.IdempotencyKey,
		"plugin_config":   cfg,
		"pid":             os.Getpid(),
		"has_deadline":    !req.Deadline.IsZero(),
		"env_home":        os.Getenv("HOME"),
	}, nil
}

// noop does nothing: the handler of taskerd bench's plugin-1 scenario.
func noop(context.Context, *plugin.Request) (any, error) { return nil, nil }

// raw returns the task context as it came: the benchmark's echo.
func raw(_ context.Context, req *plugin.Request) (any, error) { return req.Context, nil }

type markerConfig struct {
	Marker  string `json:"marker"`
	Started string `json:"started"`
}

// crashOnce exits the process mid-call when its marker file does not exist
// yet (creating it first), and succeeds when it does.
func crashOnce(_ context.Context, req *plugin.Request) (any, error) {
	var cfg markerConfig
	if err := req.DecodeConfig(&cfg); err != nil || cfg.Marker == "" {
		return nil, plugin.Permanent(fmt.Errorf("crash_once needs config.marker: %v", err))
	}
	if _, err := os.Stat(cfg.Marker); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(cfg.Marker, []byte(fmt.Sprint(os.Getpid())), 0o600); err != nil {
			return nil, err
		}
		os.Exit(3)
	}
	return map[string]any{"attempt": req.Attempt, "pid": os.Getpid()}, nil
}

// block waits until its ctx ends, then writes why to config.marker.
func block(ctx context.Context, req *plugin.Request) (any, error) {
	var cfg markerConfig
	if err := req.DecodeConfig(&cfg); err != nil {
		return nil, err
	}
	if cfg.Started != "" {
		_ = os.WriteFile(cfg.Started, nil, 0o600)
	}
	<-ctx.Done()
	if cfg.Marker != "" {
		_ = os.WriteFile(cfg.Marker, []byte(ctx.Err().Error()), 0o600)
	}
	return nil, ctx.Err()
}

// slow sleeps config.ms milliseconds (or until ctx ends).
func slow(ctx context.Context, req *plugin.Request) (any, error) {
	var cfg struct {
		Ms int `json:"ms"`
	}
	if err := req.DecodeConfig(&cfg); err != nil {
		return nil, err
	}
	select {
	case <-time.After(time.Duration(cfg.Ms) * time.Millisecond):
		return map[string]any{"slept_ms": cfg.Ms}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fail fails as configured: permanent, retry_after_seconds, kind.
func fail(_ context.Context, req *plugin.Request) (any, error) {
	var cfg struct {
		Permanent  bool   `json:"permanent"`
		RetryAfter int    `json:"retry_after_seconds"`
		Kind       string `json:"kind"`
		Panic      bool   `json:"panic"`
	}
	if err := req.DecodeConfig(&cfg); err != nil {
		return nil, err
	}
	if cfg.Panic {
		panic("fail was told to panic")
	}
	err := errors.New("fail handler failed as configured")
	if cfg.Kind != "" {
		err = plugin.WithKind(err, cfg.Kind)
	}
	switch {
	case cfg.Permanent:
		return nil, plugin.Permanent(err)
	case cfg.RetryAfter > 0:
		return nil, plugin.RetryAfter(err, time.Duration(cfg.RetryAfter)*time.Second)
	}
	return nil, err
}

// emit emits config.emit's events ({name, payload}), ignoring Emit's
// errors (a refused event must fail the attempt anyway), then fails when
// config.fail is set.
func emit(ctx context.Context, req *plugin.Request) (any, error) {
	var cfg struct {
		Emit []struct {
			Name    string          `json:"name"`
			Payload json.RawMessage `json:"payload"`
		} `json:"emit"`
		Fail bool `json:"fail"`
	}
	if err := req.DecodeConfig(&cfg); err != nil {
		return nil, plugin.Permanent(err)
	}
	for _, ev := range cfg.Emit {
		_ = plugin.Emit(ctx, ev.Name, ev.Payload)
	}
	if cfg.Fail {
		return nil, errors.New("emit failed as configured")
	}
	return map[string]int{"emitted": len(cfg.Emit)}, nil
}

// traced reports the span its ctx carries (the SDK's span of the call,
// started under the trace context taskerd sent) and its parent, and logs a
// line with ctx (which carries the trace_id to taskerd's log).
func traced(ctx context.Context, req *plugin.Request) (any, error) {
	plugin.Logger().InfoContext(ctx, "traced called", "step", req.StepName)
	sc := trace.SpanContextFromContext(ctx)
	out := map[string]any{
		"trace_id":      sc.TraceID().String(),
		"span_id":       sc.SpanID().String(),
		"sampled":       sc.IsSampled(),
		"otel_endpoint": os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
	}
	if ro, ok := trace.SpanFromContext(ctx).(sdktrace.ReadOnlySpan); ok {
		out["recording"] = true
		out["name"] = ro.Name()
		out["parent_span_id"] = ro.Parent().SpanID().String()
	}
	return out, nil
}
