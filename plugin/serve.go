package plugin

import (
	"context"
	"encoding/json"
	"sort"

	"go.opentelemetry.io/otel/trace"
)

// HandlerFunc handles one attempt of a step. Its result is the step's
// result: a json.RawMessage is used as is, nil becomes {}, anything else is
// encoded with json.Marshal.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// Handlers maps handler names (the HANDLER of PLUGIN.HANDLER) to handlers.
type Handlers map[string]HandlerFunc

// ServeOption configures Serve.
type ServeOption interface{ apply(*serveOptions) }

type serveOptions struct {
	descriptions map[string]string
	configure    func(ctx context.Context, config json.RawMessage) error
	// tracerProvider is the handlers' spans' provider; nil: the global
	// one (tests set it).
	tracerProvider trace.TracerProvider
}

type optionFunc func(*serveOptions)

func (f optionFunc) apply(o *serveOptions) { f(o) }

// WithDescriptions gives each handler a one-line description, shown by
// `taskerd plugins list`.
func WithDescriptions(d map[string]string) ServeOption {
	return optionFunc(func(o *serveOptions) { o.descriptions = d })
}

// WithConfigure sets the function that receives the plugin's config (the
// `config` attribute of its block in taskerd.hcl, as JSON; {} when unset),
// called once at start before any handler runs. An error stops the plugin
// from starting.
func WithConfigure(f func(ctx context.Context, config json.RawMessage) error) ServeOption {
	return optionFunc(func(o *serveOptions) { o.configure = f })
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Serve runs the plugin: it answers taskerd's handshake and serves h until
// taskerd stops it (or taskerd's process goes away). Run outside taskerd,
// it prints a note to stderr and exits 1.
func Serve(h Handlers, opts ...ServeOption) {
	var o serveOptions
	for _, opt := range opts {
		opt.apply(&o)
	}
	serve(h, &o)
}
