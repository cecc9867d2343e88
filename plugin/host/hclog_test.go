package host

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// go-plugin's own lines carry the executable as "plugin"; the host's
// logger names the plugin under that key already. The record keeps the
// name and moves the path to plugin_path, so the JSON line has each key
// once.
func TestHCLogLinesKeepOnePluginKey(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil)).With("plugin", "orders")
	slogSink{l: l}.Accept("plugin", hclog.Info, "plugin process exited", "plugin", "/bin/orders", "id", "42", "timestamp", "x")

	line := strings.TrimSpace(buf.String())
	require.Equal(t, 1, strings.Count(line, `"plugin":`), line)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &rec))
	require.Equal(t, "orders", rec["plugin"])
	require.Equal(t, "/bin/orders", rec["plugin_path"])
	require.Equal(t, "42", rec["id"])
	require.NotContains(t, rec, "timestamp")
}
