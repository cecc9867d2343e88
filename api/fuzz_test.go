package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/policy"
)

// FuzzAuthenticateAuthorize sends requests with arbitrary methods, paths
// and credential headers through the whole chain the daemon uses with no
// auth setting (the bootstrap key, then the shipped OPA policy): without
// the valid key no request but the public health checks may succeed.
func FuzzAuthenticateAuthorize(f *testing.F) {
	store := storetest.SQLite(f)
	ws, diags := definition.NewParser().ParseSource("t.hcl", []byte(testWorkflows))
	require.False(f, diags.HasErrors())
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry()})
	require.NoError(f, err)
	key, hash, _, err := api.EnsureBootstrapKey(context.Background(), store, time.Now(), nil)
	require.NoError(f, err)
	authn, err := api.NewKeyAuthenticator(hash, api.Subject{ID: api.BootstrapSubject, Roles: []string{"admin"}})
	require.NoError(f, err)
	authz, err := policy.Default(policy.WithDecisionLog(io.Discard))
	require.NoError(f, err)
	f.Cleanup(func() { _ = authz.Close() })
	srv, err := api.New(api.Config{Engine: eng, Authenticator: authn, Authorizer: authz})
	require.NoError(f, err)
	h := srv.Handler()

	for _, seed := range [][4]string{
		{"GET", "/v1/tasks", "X-API-Key", "tkd_wrong"},
		{"POST", "/v1/tasks", "Authorization", "Bearer " + key[:len(key)-1]},
		{"GET", "/metrics", "Authorization", "Basic " + key},
		{"GET", "/v1/workflows", "X-Api-Key", ""},
		{"DELETE", "/v1/tasks/1", "Authorization", "Bearer"},
		{"GET", "/health/status", "Authorization", "bearer  " + strings.ToUpper(key)},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, method, path, header, value string) {
		if strings.Contains(value, key) {
			t.Skip("holds the valid key")
		}
		req, err := http.NewRequest(method, "http://taskerd"+path, strings.NewReader(`{"workflow": "shop/orders", "context": {"order_id": "x"}}`))
		if err != nil || req.URL.Path != path || !httpguts.ValidHeaderFieldName(header) || !httpguts.ValidHeaderFieldValue(value) {
			t.Skip("not a request a client could send")
		}
		req.Header.Set(header, value)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if req.URL.Path == "/health/live" || req.URL.Path == "/health/ready" {
			return
		}
		require.False(t, rec.Code >= 200 && rec.Code < 300, "%s %s with %s: %q answered %d", method, path, header, value, rec.Code)
	})
}

// rawJSONString quotes s as a JSON string, escaping only what JSON
// requires (", \ and control characters) and leaving every other byte as
// it is: bytes that are not UTF-8 reach the server raw, as a client could
// send them (json.Marshal would replace them).
func rawJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzCreateTaskText sends arbitrary text as the reason, a tag, the
// Idempotency-Key and a context value: the API either stores each byte
// for byte (201, or 200/409 for a key seen before) or refuses with 400
// naming a field that engine's rules refuse (422 for the context), never
// "fixing" a value and never failing with a 5xx.
func FuzzCreateTaskText(f *testing.F) {
	store := storetest.SQLite(f)
	ws, diags := definition.NewParser().ParseSource("t.hcl", []byte(testWorkflows))
	require.False(f, diags.HasErrors())
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry()})
	require.NoError(f, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}})
	require.NoError(f, err)
	h := srv.Handler()

	for _, seed := range [][4]string{
		{"ok", "t", "k-1", "x"},
		{"nul \x00 here", "t", "", "x"},
		{"caf\xc3", "t", "", "x"},
		{"ok", "\xed\xa0\x80", "", "x"},
		{"ok", "", "", "x"},
		{"ok", "t", "k-\xff", "x"},
		{"ok", "t", "a\x7fb", "x"},
		{"ok", "t", strings.Repeat("k", 256), "x"},
		{strings.Repeat("r", 4097), "t", "", "x"},
		{"ok", "t", "", "\xff"},
		{"ok", "t", "", "\x00"},
		{"\U0001F600\t\u2028", "\u00e9", "~", "\U0001F600"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, reason, tag, key, value string) {
		body := `{"workflow": "shop/orders", "version": "2.0.0", "context": {"v": ` + rawJSONString(value) +
			`}, "reason": ` + rawJSONString(reason) + `, "tags": [` + rawJSONString(tag) + `]}`
		if len(body) > api.DefaultMaxBody {
			t.Skip("over max_body")
		}
		req := httptest.NewRequest("POST", "/v1/tasks", strings.NewReader(body))
		if key != "" {
			if !httpguts.ValidHeaderFieldValue(key) || strings.TrimSpace(key) != key {
				t.Skip("not a header value a server would pass on as it is")
			}
			req.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		refused := map[string]bool{}
		if engine.CheckReason(reason) != nil {
			refused["reason"] = true
		}
		if engine.CheckTags([]string{tag}) != nil {
			refused["tags[0]"] = true
		}
		if engine.CheckIdempotencyKey(key) != nil {
			refused["Idempotency-Key"] = true
		}
		var answer struct {
			ID    int64 `json:"id"`
			Error struct {
				Code    string `json:"code"`
				Details any    `json:"details"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer), rec.Body.String())
		switch {
		case len(refused) > 0:
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			details, ok := answer.Error.Details.(map[string]any)
			require.True(t, ok, rec.Body.String())
			require.True(t, refused[details["field"].(string)], "%s is not one of the refused fields %v", details["field"], refused)
		case backends.CheckText(value) != nil:
			require.Equal(t, http.StatusUnprocessableEntity, rec.Code, rec.Body.String())
		default:
			if key != "" && (rec.Code == http.StatusOK || rec.Code == http.StatusConflict) {
				return // the key was used by an earlier input
			}
			require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
			task, err := store.GetTask(context.Background(), answer.ID)
			require.NoError(t, err)
			require.Equal(t, reason, task.Reason)
			require.Equal(t, []string{tag}, task.Tags)
			require.Equal(t, key, task.IdempotencyKey)
			var stored struct{ V string }
			require.NoError(t, json.Unmarshal(task.Context, &stored))
			require.Equal(t, value, stored.V)
		}
	})
}
