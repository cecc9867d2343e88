package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/plugin/host"
)

// pluginPath is this plugin, built once for the package's tests.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-orders-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// A plain build (no -race): the plugin is another process.
		pluginPath = filepath.Join(dir, "orders")
		cmd := exec.Command("go", "build", "-o", pluginPath, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the orders plugin:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// runOrder runs workflows/order_fulfillment.hcl for one order through the
// real plugin, configured as examples/plugins/taskerd.hcl configures it, on
// SQLite, and returns the task's state and its steps by name once the task
// is over (complete, or in error waiting for an operator).
func runOrder(t *testing.T, orderCtx json.RawMessage) (backends.State, map[string]*backends.Step) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg, err := config.Load("../taskerd.hcl")
	require.NoError(t, err)
	var spec host.Spec
	for _, p := range cfg.Plugins {
		if p.Name == "orders" {
			spec = host.Spec{Name: p.Name, Path: pluginPath, Config: p.Config}
		}
	}
	require.NotEmpty(t, spec.Name, "taskerd.hcl configures the orders plugin")
	spec.SHA256, err = host.FileSHA256(pluginPath)
	require.NoError(t, err)
	plugins, err := host.Start(ctx, []host.Spec{spec}, host.Options{})
	require.NoError(t, err)
	t.Cleanup(plugins.Close)

	ws, _, diags := definition.Load("../../../workflows/order_fulfillment.hcl")
	require.Empty(t, diags)
	catalog := definition.NewCatalog(ws)
	registry := builtin.NewRegistry()
	require.NoError(t, plugins.Register(registry))
	require.NoError(t, host.CheckWorkflows(catalog, registry), "every handler of the workflow exists in the plugin")

	store, err := sqlite.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "taskerd.db")+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	eng, err := engine.New(engine.Config{Store: store, Catalog: catalog, Registry: registry, Workers: 4})
	require.NoError(t, err)
	task, _, err := eng.CreateTask(ctx, engine.CreateRequest{Workflow: "ecommerce/order_fulfillment", Context: orderCtx})
	require.NoError(t, err)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	defer func() { stop(); <-done }()

	var state backends.State
	require.Eventually(t, func() bool {
		got, err := store.GetTask(ctx, task.ID)
		require.NoError(t, err)
		state = got.State
		return state.Finished() || state == backends.StateError
	}, 30*time.Second, 10*time.Millisecond, "the task ends")

	steps, err := store.ListSteps(ctx, task.ID)
	require.NoError(t, err)
	byName := map[string]*backends.Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	return state, byName
}

func TestOrderFulfillmentWorkflow(t *testing.T) {
	t.Parallel()
	orderCtx, err := os.ReadFile("../order.json")
	require.NoError(t, err)

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		state, steps := runOrder(t, orderCtx)
		require.Equal(t, backends.StateComplete, state)
		for name, s := range steps {
			require.Equal(t, backends.StateComplete, s.State, name)
			require.Equal(t, 1, s.Attempts, name)
		}
		require.JSONEq(t, `{
			"order_id": "A-1", "currency": "EUR",
			"lines": [
				{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price_cents": 1299, "line_total_cents": 2598},
				{"sku": "STICKERS", "name": "Sticker pack", "quantity": 1, "unit_price_cents": 399, "line_total_cents": 399}
			],
			"item_count": 3, "subtotal_cents": 2997, "shipping_cents": 495, "total_cents": 3492
		}`, string(steps["validate_order"].Results))
		var charge Charge
		require.NoError(t, json.Unmarshal(steps["process_payment"].Results, &charge))
		require.Equal(t, "EUR 34.92", charge.Amount)
		var sh Shipment
		require.NoError(t, json.Unmarshal(steps["ship_order"].Results, &sh))
		require.Equal(t, charge.PaymentID, sh.PaymentID)
		require.Equal(t, "dhl", sh.Carrier)
	})

	t.Run("declined", func(t *testing.T) {
		t.Parallel()
		var o map[string]any
		require.NoError(t, json.Unmarshal(orderCtx, &o))
		o["payment"] = map[string]any{"token": TokenDeclined}
		declined, err := json.Marshal(o)
		require.NoError(t, err)

		state, steps := runOrder(t, declined)
		require.Equal(t, backends.StateError, state)
		pay := steps["process_payment"]
		require.Equal(t, backends.StateError, pay.State)
		require.Equal(t, 1, pay.Attempts, "a decline is not retried, though the step allows 5 attempts")
		require.JSONEq(t, `{"message": "payment of EUR 34.92 for order A-1: declined: card_declined", "retryable": false, "kind": "payment_declined"}`,
			string(pay.Error))
		require.Equal(t, backends.StateComplete, steps["reserve_inventory"].State)
		require.Equal(t, backends.StatePending, steps["ship_order"].State, "nothing ships unpaid")
		require.Equal(t, backends.StatePending, steps["send_confirmation"].State)
	})
}
