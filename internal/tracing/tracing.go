// Package tracing sets up OpenTelemetry tracing for taskerd and for the
// plugins built with its SDK (docs/tracing.md): an OTLP exporter
// configured by the standard OTEL_* variables, or the tracing { } block of
// taskerd.hcl. It is off, with nothing set up, unless that block or
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
// set: the components it traces take a trace.TracerProvider that is nil
// when tracing is off, and then do nothing at all.
//
// It also holds what the components share: the W3C trace context
// propagator, the carrier that puts it in gRPC metadata (the host injects
// it into its calls into plugins, the SDK extracts it), and the span
// context of a task, which every node derives from the task alone
// (TaskSpanContext) so that the task's step attempts, run by any node at
// any time, are children of the task's span without the database keeping
// anything.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols of the OTLP exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Environment variables read here (the exporter reads the other OTEL_*
// variables itself: headers, certificates, timeouts, compression).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvServiceName    = "OTEL_SERVICE_NAME"
	EnvResourceAttrs  = "OTEL_RESOURCE_ATTRIBUTES"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesSampler  = "OTEL_TRACES_SAMPLER"
	// EnvTracesSamplerArg is the sampler's argument (a ratio).
	EnvTracesSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
)

// Config is the tracing { } block of taskerd.hcl. Each field left empty
// is taken from the OTEL_* environment, as the exporter would without it.
type Config struct {
	// Endpoint is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT:
	// http://collector:4318 (http/protobuf; /v1/traces is appended) or
	// http://collector:4317 (grpc). https:// uses TLS. Empty: the
	// environment's, or the exporter's default (localhost).
	Endpoint string
	// Protocol is "grpc" or "http/protobuf"; empty: the environment's
	// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL), or
	// http/protobuf.
	Protocol string
	// SampleRatio is the share of new traces recorded, 0 to 1; nil: the
	// environment's OTEL_TRACES_SAMPLER (a traceidratio sampler's
	// argument, always_on or always_off), or 1. A trace whose caller sent a
	// sampled traceparent is recorded whatever the ratio.
	SampleRatio *float64
}

// Enabled reports whether tracing is on: a tracing block (cfg not nil), or
// an OTLP endpoint in the environment, and OTEL_SDK_DISABLED is not true.
func Enabled(cfg *Config, getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") {
		return false
	}
	return cfg != nil || getenv(EnvEndpoint) != "" || getenv(EnvTracesEndpoint) != ""
}

// Provider is tracing set up: the SDK's TracerProvider with its OTLP
// exporter. Shut it down before the process exits, or the last spans are
// lost.
type Provider struct {
	*sdktrace.TracerProvider
	// Protocol and Endpoint say where spans go, for a log line ("" for the
	// exporter's default endpoint).
	Protocol, Endpoint string
	// Ratio is the share of new traces sampled.
	Ratio float64
}

// Setup starts tracing when Enabled: an OTLP exporter (batched), the
// sampler ParentBased(TraceIDRatioBased(ratio)), a resource whose
// service.name is service unless OTEL_SERVICE_NAME (or service.name in
// OTEL_RESOURCE_ATTRIBUTES) says otherwise, and the W3C trace context as
// the global propagator. It also makes the provider the global one, for
// libraries that trace through otel.GetTracerProvider. It returns nil, and
// sets up nothing, when tracing is off.
//
// Errors of the exporter (a collector that does not answer) are logged to
// log as warnings, at most one a minute.
func Setup(ctx context.Context, cfg *Config, service, version string, log *slog.Logger) (*Provider, error) {
	if !Enabled(cfg, os.Getenv) {
		return nil, nil
	}
	if log != nil {
		otel.SetErrorHandler(&errorLog{log: log})
	}
	if cfg == nil {
		cfg = &Config{}
	}
	protocol := cfg.Protocol
	if protocol == "" {
		protocol = firstEnv(EnvTracesProtocol, EnvProtocol)
	}
	ratio, err := sampleRatio(cfg.SampleRatio, os.Getenv)
	if err != nil {
		return nil, err
	}
	exp, endpoint, err := newExporter(ctx, protocol, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME
	)
	if err != nil {
		if res == nil {
			return nil, fmt.Errorf("tracing: resource: %w", err)
		}
		if log != nil { // a partial resource: an OTEL_RESOURCE_ATTRIBUTES entry it could not read, say
			log.Warn("tracing: some resource attributes were left out", "err", err.Error())
		}
	}
	tp := NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	SetTaskSampleRatio(ratio)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if endpoint == "" {
		endpoint = firstEnv(EnvTracesEndpoint, EnvEndpoint)
	}
	if protocol == "" {
		protocol = ProtocolHTTP
	}
	return &Provider{TracerProvider: tp, Protocol: protocol, Endpoint: endpoint, Ratio: ratio}, nil
}

// Shutdown flushes the spans not yet exported and stops the exporter,
// within ctx's deadline. A nil Provider does nothing.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.TracerProvider.Shutdown(ctx)
}

// NewTracerProvider is sdktrace.NewTracerProvider with the ID generator
// that gives a task's span its derived ids (TaskSpanContext). Tests
// build their providers (with an in-memory exporter) with it.
func NewTracerProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(idGenerator{})}, opts...)...)
}

func newExporter(ctx context.Context, protocol, endpoint string) (*otlptrace.Exporter, string, error) {
	switch protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("tracing: OTLP gRPC exporter: %w", err)
		}
		return exp, endpoint, nil
	case "", ProtocolHTTP, "http/json":
		var opts []otlptracehttp.Option
		if endpoint != "" {
			// A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path
			// is appended.
			u, err := url.Parse(endpoint)
			if err != nil {
				return nil, "", fmt.Errorf("tracing: endpoint %q: %w", endpoint, err)
			}
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
			endpoint = u.String()
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("tracing: OTLP HTTP exporter: %w", err)
		}
		return exp, endpoint, nil
	}
	return nil, "", fmt.Errorf("tracing: protocol %q: want %q or %q", protocol, ProtocolGRPC, ProtocolHTTP)
}

// sampleRatio is the configured ratio, else the one OTEL_TRACES_SAMPLER
// asks for, else 1.
func sampleRatio(cfg *float64, getenv func(string) string) (float64, error) {
	if cfg != nil {
		if math.IsNaN(*cfg) || *cfg < 0 || *cfg > 1 {
			return 0, fmt.Errorf("tracing: sample_ratio %v: want a number from 0 to 1", *cfg)
		}
		return *cfg, nil
	}
	switch strings.ToLower(strings.TrimSpace(getenv(EnvTracesSampler))) {
	case "always_off", "parentbased_always_off":
		return 0, nil
	case "traceidratio", "parentbased_traceidratio":
		arg := strings.TrimSpace(getenv(EnvTracesSamplerArg))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			return 0, fmt.Errorf("tracing: %s=%q: want a number from 0 to 1", EnvTracesSamplerArg, arg)
		}
		return r, nil
	}
	return 1, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// ShutdownTimeout is how long a process waits, when it stops, for its last
// spans to be exported.
const ShutdownTimeout = 5 * time.Second

// taskRatio is the sample ratio applied to tasks' traces (float64 bits).
var taskRatio atomic.Uint64

func init() { taskRatio.Store(math.Float64bits(1)) }

// SetTaskSampleRatio sets the share of tasks whose traces are sampled
// (Setup sets it to its ratio; it is 1 otherwise).
func SetTaskSampleRatio(r float64) { taskRatio.Store(math.Float64bits(r)) }

// errorLog logs the SDK's errors (failed exports), at most one a minute:
// a collector that is down must not flood the log.
type errorLog struct {
	log  *slog.Logger
	last atomic.Int64 // unix nanoseconds of the last line
}

const errorLogEvery = time.Minute

func (h *errorLog) Handle(err error) {
	now := time.Now().UnixNano()
	last := h.last.Load()
	if last != 0 && now-last < int64(errorLogEvery) {
		return
	}
	if !h.last.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("tracing: the OpenTelemetry exporter failed (further errors within a minute are not logged)", "err", err.Error())
}
