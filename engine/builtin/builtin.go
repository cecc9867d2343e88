// Package builtin holds the step handlers taskerd ships, reached from a
// workflow as builtin.NAME: noop, echo, fail and sleep. They are for tests,
// demos and glue (docs/workflows.md, "Built-in handlers").
package builtin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// Handlers returns the built-in handlers by short name (noop, echo, fail,
// sleep).
func Handlers() map[string]engine.Handler {
	return map[string]engine.Handler{
		"noop":  engine.HandlerFunc(Noop),
		"echo":  engine.HandlerFunc(Echo),
		"fail":  engine.HandlerFunc(Fail),
		"sleep": engine.HandlerFunc(Sleep),
	}
}

// Names lists the built-in handler short names, sorted.
func Names() []string { return slices.Sorted(maps.Keys(Handlers())) }

// Register adds every built-in handler to r as builtin.NAME.
func Register(r *engine.Registry) error {
	for _, name := range Names() {
		if err := r.Register(definition.BuiltinPlugin+"."+name, Handlers()[name]); err != nil {
			return err
		}
	}
	return nil
}

// NewRegistry returns a registry holding the built-in handlers.
func NewRegistry() *engine.Registry {
	r := engine.NewRegistry()
	if err := Register(r); err != nil {
		panic(err) // cannot happen: the names are fixed and valid
	}
	return r
}

// decodeConfig reads a step's config into v; no config leaves v as is.
func decodeConfig(req *engine.StepRequest, v any) error {
	if len(req.Config) == 0 || string(req.Config) == "null" {
		return nil
	}
	if err := json.Unmarshal(req.Config, v); err != nil {
		return engine.Permanent(fmt.Errorf("%s: invalid config: %w", req.Handler, err))
	}
	return nil
}

// Noop succeeds; its result is config.result if given, else {}. It first
// emits the custom events of config.emit, in order (engine.Emit; the step
// must declare them).
//
//	config = {
//	  result = { ok = true }
//	  emit   = [{ name = "order.validated", payload = { id = 7 } }]
//	}
func Noop(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	var cfg struct {
		Result json.RawMessage `json:"result"`
		Emit   []struct {
			Name    string          `json:"name"`
			Payload json.RawMessage `json:"payload"`
		} `json:"emit"`
	}
	if err := decodeConfig(req, &cfg); err != nil {
		return nil, err
	}
	for _, ev := range cfg.Emit {
		if err := engine.Emit(ctx, ev.Name, ev.Payload); err != nil {
			return nil, engine.Permanent(fmt.Errorf("%s: emitting %q: %w", req.Handler, ev.Name, err))
		}
	}
	return resultOrEmpty(cfg.Result), nil
}

// Echo succeeds with {"context": <task context>, "parents": <parent
// results by step name>, "config": <config>}.
func Echo(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	parents := req.ParentResults
	if parents == nil {
		parents = map[string]json.RawMessage{}
	}
	out := struct {
		Context json.RawMessage            `json:"context"`
		Parents map[string]json.RawMessage `json:"parents"`
		Config  json.RawMessage            `json:"config"`
	}{resultOrEmpty(req.Context), parents, req.Config}
	if len(out.Config) == 0 {
		out.Config = json.RawMessage("null")
	}
	return json.Marshal(out)
}

// Fail fails its first `times` attempts (every attempt when times is not
// given), then succeeds with config.result (or {}).
//
//	config = {
//	  times           = 2        # attempts that fail; default: all
//	  retryable       = true     # default true; false is a permanent failure
//	  backoff_seconds = 120      # ask for this backoff before the next attempt
//	  message         = "boom"   # the failure's message
//	  result          = { ... }  # the result once it succeeds
//	}
func Fail(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	var cfg struct {
		Times          *int            `json:"times"`
		Retryable      *bool           `json:"retryable"`
		BackoffSeconds *int            `json:"backoff_seconds"`
		Message        string          `json:"message"`
		Result         json.RawMessage `json:"result"`
	}
	if err := decodeConfig(req, &cfg); err != nil {
		return nil, err
	}
	if cfg.Times != nil && req.Attempt > *cfg.Times {
		return resultOrEmpty(cfg.Result), nil
	}
	msg := cfg.Message
	if msg == "" {
		msg = fmt.Sprintf("builtin.fail: attempt %d fails as configured", req.Attempt)
	}
	f := &engine.StepFailure{Message: msg, Retryable: cfg.Retryable == nil || *cfg.Retryable}
	if cfg.BackoffSeconds != nil && *cfg.BackoffSeconds > 0 {
		b := *cfg.BackoffSeconds
		f.BackoffSeconds = &b
	}
	return nil, f
}

// Sleep waits config.duration (a Go duration such as "200ms"; default 0),
// then succeeds with {"slept": "<duration>"}. It stops early, failing, when
// its context ends (cancellation or the step's deadline).
func Sleep(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	var cfg struct {
		Duration string `json:"duration"`
	}
	if err := decodeConfig(req, &cfg); err != nil {
		return nil, err
	}
	var d time.Duration
	if cfg.Duration != "" {
		var err error
		if d, err = time.ParseDuration(cfg.Duration); err != nil || d < 0 {
			return nil, engine.Permanent(fmt.Errorf("builtin.sleep: invalid duration %q", cfg.Duration))
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return json.Marshal(map[string]string{"slept": d.String()})
	case <-ctx.Done():
		return nil, fmt.Errorf("builtin.sleep interrupted after less than %s: %w", d, context.Cause(ctx))
	}
}

func resultOrEmpty(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return json.RawMessage("{}")
	}
	return r
}
