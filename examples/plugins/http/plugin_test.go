package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/plugin/host"
)

// pluginPath is this plugin, built once for the package's tests.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-http-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// A plain build (no -race): the plugin is another process.
		pluginPath = filepath.Join(dir, "http")
		cmd := exec.Command("go", "build", "-o", pluginPath, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the http plugin:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func startPlugin(t *testing.T, config string) (*host.Plugin, error) {
	t.Helper()
	sum, err := host.FileSHA256(pluginPath)
	require.NoError(t, err)
	h, err := host.Start(context.Background(), []host.Spec{{Name: "http", Path: pluginPath, SHA256: sum, Config: json.RawMessage(config)}}, host.Options{})
	if err != nil {
		return nil, err
	}
	t.Cleanup(h.Close)
	p, ok := h.Plugin("http")
	require.True(t, ok)
	return p, nil
}

// TestThroughTheHost runs the built plugin as taskerd does: its handler
// name, its Configure and its failures as the engine sees them.
func TestThroughTheHost(t *testing.T) {
	t.Parallel()
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/orders/A-1":
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"key": %q, "idem": %q}`, r.Header.Get("X-Api-Key"), r.Header.Get("Idempotency-Key"))
		case "/v1/busy":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "no such thing")
		}
	})
	p, err := startPlugin(t, fmt.Sprintf(`{"base_url": %q, "headers": {"X-Api-Key": "k-1"}}`, b.srv.URL+"/v1"))
	require.NoError(t, err)
	require.Len(t, p.Handlers(), 1)
	require.Equal(t, "request", p.Handlers()[0].Name)
	require.NotEmpty(t, p.Handlers()[0].Description)

	execute := func(config string) (json.RawMessage, *engine.StepFailure) {
		res, err := p.Execute(context.Background(), "request", &engine.StepRequest{
			TaskID: 7, StepID: 1, StepName: "call", Handler: "http.request", Attempt: 1,
			Context: json.RawMessage(`{"order_id": "A-1"}`), Config: json.RawMessage(config), IdempotencyKey: "7/call",
		})
		if err == nil {
			return res, nil
		}
		var f *engine.StepFailure
		require.True(t, errors.As(err, &f), "want *engine.StepFailure, got %T: %v", err, err)
		return nil, f
	}

	res, f := execute(`{"url": "orders/{{context.order_id}}", "headers": {"Idempotency-Key": "{{step.idempotency_key}}"}}`)
	require.Nil(t, f)
	require.JSONEq(t, `{"key": "k-1", "idem": "7/call"}`, string(mustField(t, res, "body")))
	require.JSONEq(t, `200`, string(mustField(t, res, "status")))

	_, f = execute(`{"url": "busy"}`)
	require.NotNil(t, f)
	require.True(t, f.Retryable)
	require.Equal(t, "http_429", f.Kind)
	require.NotNil(t, f.BackoffSeconds)
	require.Equal(t, 7, *f.BackoffSeconds)

	_, f = execute(`{"url": "missing"}`)
	require.NotNil(t, f)
	require.False(t, f.Retryable)
	require.Equal(t, "http_404", f.Kind)
	require.Equal(t, "GET "+b.srv.URL+"/v1/missing: 404 Not Found: no such thing", f.Message)

	_, f = execute(`{"url": "orders/{{context.customer_id}}"}`)
	require.NotNil(t, f)
	require.False(t, f.Retryable)
	require.Equal(t, KindTemplate, f.Kind)
	require.Contains(t, f.Message, `{{context.customer_id}}: the task context has no "customer_id"`)
}

func TestABadPluginConfigStopsTheStart(t *testing.T) {
	t.Parallel()
	_, err := startPlugin(t, `{"timeout": "soon"}`)
	require.ErrorContains(t, err, `timeout "soon": want a positive duration`)
}
