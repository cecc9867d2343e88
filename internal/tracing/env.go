package tracing

import (
	"strings"
)

// PluginEnv is the environment taskerd gives its plugins while tracing is
// on, so that the SDK in each plugin exports its spans where taskerd's go
// (a plugin otherwise gets no environment from taskerd): the OTEL_*
// variables of environ, less the service name (a plugin's is its own:
// OTEL_SERVICE_NAME is dropped, and so is service.name from
// OTEL_RESOURCE_ATTRIBUTES), with the tracing block's endpoint and protocol
// in place of the environment's. Nil when tracing is off.
func PluginEnv(cfg *Config, environ []string) []string {
	getenv := func(name string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v
			}
		}
		return ""
	}
	if !Enabled(cfg, getenv) {
		return nil
	}
	drop := map[string]bool{EnvServiceName: true}
	var env []string
	if cfg != nil && cfg.Endpoint != "" {
		drop[EnvEndpoint], drop[EnvTracesEndpoint] = true, true
		env = append(env, EnvEndpoint+"="+cfg.Endpoint)
	}
	if cfg != nil && cfg.Protocol != "" {
		drop[EnvProtocol], drop[EnvTracesProtocol] = true, true
		env = append(env, EnvProtocol+"="+cfg.Protocol)
	}
	if cfg != nil && cfg.SampleRatio != nil {
		drop[EnvTracesSampler], drop[EnvTracesSamplerArg] = true, true
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "OTEL_") || drop[k] {
			continue
		}
		if k == EnvResourceAttrs {
			v = withoutServiceName(v)
			if v == "" {
				continue
			}
			kv = k + "=" + v
		}
		env = append(env, kv)
	}
	if cfg != nil && cfg.Endpoint == "" && getenv(EnvEndpoint) == "" && getenv(EnvTracesEndpoint) == "" {
		// A tracing block with no endpoint: the SDK in the plugin turns
		// tracing on only for an endpoint, so name the default one.
		env = append(env, EnvEndpoint+"="+defaultEndpoint(cfg.Protocol, getenv))
	}
	return env
}

// defaultEndpoint is the exporter's default for the protocol in use.
func defaultEndpoint(protocol string, getenv func(string) string) string {
	if protocol == "" {
		protocol = getenv(EnvTracesProtocol)
	}
	if protocol == "" {
		protocol = getenv(EnvProtocol)
	}
	if protocol == ProtocolGRPC {
		return "http://localhost:4317"
	}
	return "http://localhost:4318"
}

// withoutServiceName removes service.name from an OTEL_RESOURCE_ATTRIBUTES
// value (key=value pairs separated by commas).
func withoutServiceName(v string) string {
	var keep []string
	for _, kv := range strings.Split(v, ",") {
		if k, _, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "service.name" {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(keep, ",")
}
