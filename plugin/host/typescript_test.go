package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

// tsPluginScript is the TypeScript SDK's test plugin.
const tsPluginScript = "testdata/tsplugin/main.js"

// requireNodeEnv makes a missing node or SDK install a failure instead of
// a skip (CI sets it, after `npm ci --prefix sdk/typescript`).
const requireNodeEnv = "TASKERD_TEST_REQUIRE_NODE"

// tsPluginSpec is the Spec of the node script plugin script, as plugin
// "tsp". It skips the test (fails it under TASKERD_TEST_REQUIRE_NODE=1)
// when node or the SDK's node_modules is missing.
//
// Every TypeScript test builds its Spec here: node runs the script, and
// the host checks the script's and its lockfile's checksum first, as for a
// configured script plugin.
func tsPluginSpec(t testing.TB, script string) host.Spec {
	t.Helper()
	node, err := exec.LookPath("node")
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(requireNodeEnv) == "1" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (set %s=1 to fail instead)", append(args, requireNodeEnv)...)
	}
	if err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join("..", "..", "sdk", "typescript", "node_modules", "@grpc", "grpc-js")); err != nil {
		missing("the TypeScript SDK's dependencies are not installed (npm ci --prefix sdk/typescript): %v", err)
	}
	// A plugin package with dependencies of its own needs them installed
	// (testdata/tsplugin has none: it loads the SDK by its path).
	dir := filepath.Dir(script)
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil && json.Unmarshal(raw, &pkg) == nil && len(pkg.Dependencies) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
			missing("the plugin's dependencies are not installed (npm ci --prefix %s): %v", dir, err)
		}
	}
	abs, err := filepath.Abs(script)
	require.NoError(t, err)
	// Verified as a configured script plugin is: the checksum of the
	// script and its lockfile, not dev mode.
	sum, err := host.ScriptSHA256(abs)
	require.NoError(t, err)
	return host.Spec{Name: "tsp", Command: node, Path: abs, SHA256: sum, Config: json.RawMessage(`{"greeting":"hi"}`)}
}

// startTSPlugin starts the TypeScript test plugin under a host.
func startTSPlugin(t testing.TB, opts host.Options) *bundle {
	t.Helper()
	spec := tsPluginSpec(t, tsPluginScript)
	logs := &logsink.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if opts.RestartMin == 0 {
		opts.RestartMin = 20 * time.Millisecond
	}
	h, err := host.Start(context.Background(), []host.Spec{spec}, opts)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, ok := h.Plugin(spec.Name)
	require.True(t, ok)
	return &bundle{host: h, p: p, logs: logs}
}

// startTSEngine runs an engine over the builtins and the TypeScript test
// plugin, with workflow src.
func startTSEngine(t *testing.T, open func(testing.TB) backends.Store, src string) *e2e {
	t.Helper()
	b := startTSPlugin(t, host.Options{})
	reg := builtin.NewRegistry()
	require.NoError(t, b.host.Register(reg))
	return startEngineWith(t, open, src, b, reg)
}

// drainEvents returns the engine events published so far.
func drainEvents(e *e2e) []engine.Event {
	var out []engine.Event
	for len(e.events) > 0 {
		out = append(out, <-e.events)
	}
	return out
}

// The plugin answers describe, configure and a call the way the Go SDK's
// plugin does, and its log lines reach the host's log under its name.
func TestTSPluginServesLikeTheGoSDK(t *testing.T) {
	t.Parallel()
	b := startTSPlugin(t, host.Options{})
	require.Equal(t, []host.HandlerInfo{
		{Name: "block"}, {Name: "crash_once", Description: "exits mid-call on the first attempt"},
		{Name: "echo", Description: "returns what it was given"}, {Name: "emit"}, {Name: "fail"}, {Name: "noop"}, {Name: "raw"},
	}, b.p.Handlers())

	req := stepRequest("charge", map[string]string{"currency": "EUR"})
	req.Deadline = time.Now().Add(time.Minute)
	out, err := b.p.Execute(context.Background(), "echo", req)
	require.NoError(t, err)
	var got struct {
		Context        map[string]string          `json:"context"`
		Config         map[string]string          `json:"config"`
		Parents        map[string]json.RawMessage `json:"parents"`
		Attempt        int                        `json:"attempt"`
		IdempotencyKey string                     `json:"idempotency_key"`
		PluginConfig   map[string]string          `json:"plugin_config"`
		HasDeadline    bool                       `json:"has_deadline"`
		EnvHome        string                     `json:"env_home"`
	}
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.Equal(t, "A-1", got.Context["order_id"])
	require.Equal(t, "EUR", got.Config["currency"])
	require.JSONEq(t, `{"ok":true}`, string(got.Parents["validate"]))
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, "7/charge", got.IdempotencyKey)
	require.Equal(t, "hi", got.PluginConfig["greeting"])
	require.True(t, got.HasDeadline)
	require.Empty(t, got.EnvHome, "the plugin must not see the host's environment")

	eventually(t, 5*time.Second, func() bool {
		l := b.logs.String()
		return strings.Contains(l, `msg="echo called"`) && strings.Contains(l, "plugin=tsp") && strings.Contains(l, "step=charge")
	}, "plugin log line missing from host log:\n%s", b.logs.String())

	// An unknown handler fails the attempt, not the call, as in Go.
	_, err = b.p.Execute(context.Background(), "nope", stepRequest("s", nil))
	f := stepFailure(t, err)
	require.False(t, f.Retryable)
	require.Contains(t, f.Message, `this plugin has no handler "nope"`)
}

func TestTSPluginFailuresCarryTheirKind(t *testing.T) {
	t.Parallel()
	b := startTSPlugin(t, host.Options{})
	tests := []struct {
		name      string
		config    map[string]any
		retryable bool
		kind      string
		backoff   *int
	}{
		{"plain error is retryable", map[string]any{}, true, "", nil},
		{"permanent", map[string]any{"permanent": true}, false, backends.ErrorKindPermanent, nil},
		{"permanent with kind", map[string]any{"permanent": true, "kind": "payment_declined"}, false, "payment_declined", nil},
		{"retry after rounds up to seconds", map[string]any{"retry_after_ms": 6500}, true, "", new(7)},
		{"kind keeps retryable", map[string]any{"kind": "rate_limited"}, true, "rate_limited", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.p.Execute(context.Background(), "fail", stepRequest("s", tt.config))
			f := stepFailure(t, err)
			require.Equal(t, tt.retryable, f.Retryable)
			require.Equal(t, tt.kind, f.Kind)
			require.Equal(t, tt.backoff, f.BackoffSeconds)
			require.Contains(t, f.Message, "fail handler failed as configured")
		})
	}
}

func TestTSPluginConfigureRefusalStopsStart(t *testing.T) {
	t.Parallel()
	spec := tsPluginSpec(t, tsPluginScript)
	spec.Config = json.RawMessage(`{"refuse":true}`)
	_, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
	require.ErrorContains(t, err, "configured to refuse")
}

const tsRetryWF = `workflow "retry" {
  retry {
    limit = 3
    base  = "5ms"
    max   = "20ms"
  }
  step "flaky" {
    handler = "tsp.fail"
    config  = { retry_after_ms = 1000, succeed_on = 2, kind = "rate_limited" }
  }
}
`

// retryAfter's backoff outweighs the workflow's 5 ms retry policy.
func TestTSRetryHonoursTheHandlersBackoff(t *testing.T) {
	t.Parallel()
	for _, sc := range storetest.Backends() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			e := startTSEngine(t, sc.Open, tsRetryWF)
			start := time.Now()
			id := e.create(t, "retry", `{}`)
			steps := e.waitTask(t, id, backends.StateComplete)
			require.GreaterOrEqual(t, time.Since(start), time.Second, "the retry came before the requested backoff")
			require.Equal(t, 2, steps["flaky"].Attempts)

			var backoffs []float64
			var kinds []string
			for _, ev := range drainEvents(e) {
				switch {
				case ev.Type == engine.EventStepBackoff && ev.StepName == "flaky":
					backoffs = append(backoffs, ev.BackoffSeconds)
				case ev.Type == engine.EventStepFailed && ev.StepName == "flaky":
					kinds = append(kinds, ev.Error.Kind)
				}
			}
			require.Equal(t, []float64{1}, backoffs)
			require.Equal(t, []string{"rate_limited"}, kinds)
		})
	}
}

const tsPermanentWF = `workflow "declined" {
  retry {
    limit = 5
    base  = "5ms"
  }
  step "charge" {
    handler = "tsp.fail"
    config  = { permanent = true, kind = "payment_declined" }
  }
}
`

// A permanent failure ends the step at its first attempt.
func TestTSPermanentFailureBlocks(t *testing.T) {
	t.Parallel()
	for _, sc := range storetest.Backends() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			e := startTSEngine(t, sc.Open, tsPermanentWF)
			id := e.create(t, "declined", `{}`)
			steps := e.waitTask(t, id, backends.StateError)
			charge := steps["charge"]
			require.Equal(t, 1, charge.Attempts, "a permanent failure is not retried")
			se := stepError(t, charge)
			require.Equal(t, "payment_declined", se.Kind)
			require.False(t, se.Retryable)
			require.Contains(t, se.Message, "fail handler failed as configured")
		})
	}
}

const tsTimeoutWF = `workflow "wait" {
  retry {
    limit = 1
  }
  step "wait" {
    handler = "tsp.block"
    timeout = "300ms"
    config  = { marker = "%s", started = "%s" }
  }
}
`

// The step's timeout aborts the handler's signal with a TimeoutError, and
// the step fails with kind timeout; the plugin stays up.
func TestTSStepTimeoutAbortsTheHandler(t *testing.T) {
	t.Parallel()
	for _, sc := range storetest.Backends() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			marker, started := filepath.Join(dir, "why"), filepath.Join(dir, "started")
			e := startTSEngine(t, sc.Open, fmt.Sprintf(tsTimeoutWF, marker, started))
			id := e.create(t, "wait", `{}`)
			steps := e.waitTask(t, id, backends.StateError)
			se := stepError(t, steps["wait"])
			require.Equal(t, backends.ErrorKindTimeout, se.Kind)
			require.True(t, se.Retryable)
			eventually(t, 10*time.Second, func() bool {
				b, err := os.ReadFile(marker)
				return err == nil && string(b) == "TimeoutError"
			}, "the handler's signal was not aborted by the deadline")
			require.Zero(t, e.p.Restarts(), "a timeout is not a crash")
		})
	}
}

// The example plugin examples/plugins/ts-orders runs its own workflow,
// configured as its taskerd.hcl configures it: priced, reserved (a short
// stock asks for a backoff), confirmed with a custom event.
func TestTSExampleOrderWorkflow(t *testing.T) {
	t.Parallel()
	spec := tsPluginSpec(t, "../../examples/plugins/ts-orders/main.js")
	spec.Name = "ts_orders"
	spec.Config = json.RawMessage(`{"currency":"EUR","restock_backoff_ms":30000,
		"catalogue":{"MUG":{"name":"Mug","price_cents":1299,"stock":25},"STICKERS":{"name":"Sticker pack","price_cents":399},
		"POSTER":{"name":"Poster","price_cents":899,"stock":0}}}`)
	h, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
	require.NoError(t, err)
	t.Cleanup(h.Close)
	p, ok := h.Plugin(spec.Name)
	require.True(t, ok)
	reg := builtin.NewRegistry()
	require.NoError(t, h.Register(reg))
	src, err := os.ReadFile("../../examples/plugins/ts-orders/workflows/ts_orders.hcl")
	require.NoError(t, err)
	order, err := os.ReadFile("../../examples/plugins/order.json")
	require.NoError(t, err)

	e := startEngineWith(t, storetest.SQLite, string(src), &bundle{host: h, p: p}, reg)
	id := e.create(t, "ecommerce/ts_order", string(order))
	steps := e.waitTask(t, id, backends.StateComplete)
	var quote struct {
		TotalCents int `json:"total_cents"`
	}
	require.NoError(t, json.Unmarshal(steps["quote"].Results, &quote))
	require.Equal(t, 2*1299+399, quote.TotalCents)
	var confirm struct{ To, Message string }
	require.NoError(t, json.Unmarshal(steps["confirm"].Results, &confirm))
	require.Equal(t, "ann@example.com", confirm.To)
	require.Contains(t, confirm.Message, "Order A-1: 29.97 EUR")
	var custom []string
	for _, ev := range drainEvents(e) {
		if ev.StepName == "confirm" && strings.Contains(string(ev.Type), "order.confirmed") {
			custom = append(custom, string(ev.Type))
		}
	}
	require.Equal(t, []string{"order.confirmed"}, custom)

	// Out of stock: the step waits for the restock backoff the handler asked for.
	poster := e.create(t, "ecommerce/ts_order", `{"order_id":"A-2","customer_email":"b@example.com","items":[{"sku":"POSTER","quantity":1}]}`)
	eventually(t, 30*time.Second, func() bool {
		for _, ev := range drainEvents(e) {
			if ev.TaskID == poster && ev.Type == engine.EventStepBackoff && ev.StepName == "reserve" {
				return ev.BackoffSeconds == 30
			}
		}
		return false
	}, "no 30 s backoff for the out-of-stock reservation")
}
