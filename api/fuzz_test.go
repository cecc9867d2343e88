package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"

	"github.com/taskerd/taskerd/api"
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
	key, hash, _, err := api.EnsureBootstrapKey(context.Background(), store, time.Now())
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
