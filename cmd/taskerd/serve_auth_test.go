package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The daemon with the apikey authenticator plugin and the default policy:
// who may do what, end to end through the real binary and plugin.
func TestServeWithAuthenticatorPluginAndDefaultPolicy(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	plugin := filepath.Join(dir, "apikey")
	out, err := exec.Command("go", "build", "-o", plugin, "../../examples/plugins/apikey").CombinedOutput()
	require.NoError(t, err, string(out))
	raw, err := os.ReadFile(plugin)
	require.NoError(t, err)
	sum := sha256.Sum256(raw)

	keyHash := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	const viewerKey, operatorKey = "tkd_viewer_key_for_tests", "tkd_operator_key_for_tests"
	keys := fmt.Sprintf(`{"keys": [
  {"sha256": %q, "subject": "dashboard", "roles": ["viewer"]},
  {"sha256": %q, "subject": "ci-bot", "roles": ["operator"], "namespaces": ["shop"]}
]}`, keyHash(viewerKey), keyHash(operatorKey))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys.json"), []byte(keys), 0o600))

	wf := filepath.Join(dir, "workflows")
	require.NoError(t, os.Mkdir(wf, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(wf, "w.hcl"), []byte(`
workflow "orders" {
  namespace = "shop"
  step "a" { handler = "builtin.noop" }
}
workflow "other" {
  namespace = "billing"
  step "a" { handler = "builtin.noop" }
}
`), 0o644))
	cfg := filepath.Join(dir, "taskerd.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
workflows = %q
plugin "apikey" {
  path   = %q
  sha256 = %q
  kind   = "authenticator"
  config = { keys_file = %q }
}
auth {
  authenticators = ["apikey"]
}
policy {
  decision_log = %q
}
`, wf, plugin, hex.EncodeToString(sum[:]), filepath.Join(dir, "keys.json"), filepath.Join(dir, "decisions.log"))), 0o644))

	s := startServeAuth(t, bin, "--config", cfg, "--db", "sqlite:"+filepath.Join(dir, "t.db"))
	call := func(method, path, key, body string) int {
		req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	shop := `{"workflow": "shop/orders"}`
	billing := `{"workflow": "billing/other"}`

	require.Equal(t, http.StatusUnauthorized, call("GET", "/v1/tasks", "", ""), "no credential")
	require.Equal(t, http.StatusUnauthorized, call("GET", "/v1/tasks", "tkd_unknown", ""), "unknown key")
	require.Equal(t, http.StatusOK, call("GET", "/health/ready", "", ""), "readiness needs nothing")

	require.Equal(t, http.StatusCreated, call("POST", "/v1/tasks", operatorKey, shop), "operator in its namespace")
	require.Equal(t, http.StatusForbidden, call("POST", "/v1/tasks", operatorKey, billing), "operator outside it")
	require.Equal(t, http.StatusForbidden, call("POST", "/v1/tasks", viewerKey, shop), "viewer may not create")
	require.Equal(t, http.StatusOK, call("GET", "/v1/tasks", viewerKey, ""))
	require.Equal(t, http.StatusOK, call("GET", "/v1/tasks/1", viewerKey, ""))
	require.Equal(t, http.StatusForbidden, call("POST", "/v1/tasks/1/cancel", viewerKey, ""))
	require.Equal(t, http.StatusForbidden, call("PATCH", "/v1/tasks/1", viewerKey, `{"reason": "x"}`))
	require.Equal(t, http.StatusOK, call("GET", "/v1/tasks?namespace=shop", operatorKey, ""))
	require.Equal(t, http.StatusForbidden, call("GET", "/v1/tasks?namespace=billing", operatorKey, ""))
	require.Equal(t, http.StatusOK, call("GET", "/v1/tasks", operatorKey, ""), "an unscoped listing is narrowed, not refused")

	// Several credentials must all be right, and name one subject.
	several := func(header ...string) int {
		req, err := http.NewRequest("GET", s.url+"/v1/tasks", nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, several("Authorization", "Bearer tkd_wrong", "X-API-Key", operatorKey))
	require.Equal(t, http.StatusUnauthorized, several("Authorization", "Bearer "+viewerKey, "X-API-Key", operatorKey), "two subjects")
	require.Equal(t, http.StatusOK, several("Authorization", "Bearer "+operatorKey, "X-API-Key", operatorKey))
	require.Equal(t, http.StatusOK, several("Authorization", "Bearer "+viewerKey, "Authorization", "Bearer "+viewerKey))

	require.NoError(t, s.stop(t, syscall.SIGTERM))
	log, err := os.ReadFile(filepath.Join(dir, "decisions.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), `"subject_id":"ci-bot"`)
	// The file has the decisions, as JSON lines in the envelope of every
	// log line; stderr has none of them.
	decisions := jsonLines(t, strings.Split(strings.TrimSpace(string(log)), "\n"))
	require.Len(t, decisions, len(withMsg(decisions, "policy decision", 0)), "only decisions in the file")
	for _, d := range decisions {
		_, err := time.ParseDuration(d["took"].(string))
		require.NoError(t, err)
	}
	require.Empty(t, s.logged(t, "policy decision"), "the decision log has its own sink")
	info, err := os.Stat(filepath.Join(dir, "decisions.log"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	for _, k := range []string{viewerKey, operatorKey} {
		require.NotContains(t, string(log), k, "no key in the decision log")
		s.mu.Lock()
		for _, l := range s.log {
			require.NotContains(t, l, k, "no key in the server log")
		}
		s.mu.Unlock()
	}
}
