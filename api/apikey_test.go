package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

func TestBootstrapKey(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		ctx := context.Background()
		key, hash, created, err := api.EnsureBootstrapKey(ctx, store, time.Now(), nil)
		require.NoError(t, err)
		require.True(t, created)
		require.True(t, strings.HasPrefix(key, "tkd_"))
		stored, err := store.Setting(ctx, api.BootstrapKeySetting)
		require.NoError(t, err)
		require.Equal(t, hash, stored)
		require.NotContains(t, stored, key[4:], "only the hash is stored")
		require.Len(t, stored, 64)

		// A second start: no new key, the same hash.
		again, hash2, created, err := api.EnsureBootstrapKey(ctx, store, time.Now(), nil)
		require.NoError(t, err)
		require.False(t, created)
		require.Empty(t, again)
		require.Equal(t, hash, hash2)

		authn, err := api.NewKeyAuthenticator(hash, api.Subject{ID: api.BootstrapSubject, Roles: []string{"admin"}})
		require.NoError(t, err)
		c := newClient(t, store, options{authn: authn, authz: defaultPolicy(t), noRun: true})
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/workflows", nil).status, "no key")
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/workflows", nil, "X-API-Key", key+"x").status, "wrong key")
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/workflows", nil, "Authorization", "Basic "+key).status, "not a bearer")
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/workflows", nil, "X-API-Key", key).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/workflows", nil, "Authorization", "Bearer "+key).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/health/ready", nil).status, "readiness needs no key")
	})
}
