package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

// With no auth setting, serve authenticates with the bootstrap key alone,
// which reads X-API-Key before Authorization. A request carrying several
// credentials passes only if each one authenticates, all to one subject
// (issue 14, item 6): before, a wrong Authorization: Bearer beside the
// right X-API-Key passed, and so did a second, wrong Authorization header.
func TestSeveralCredentialsMustAgreeWithTheBootstrapKey(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		key, hash, created, err := api.EnsureBootstrapKey(context.Background(), store, time.Now(), nil)
		require.NoError(t, err)
		require.True(t, created)
		authn, err := api.NewKeyAuthenticator(hash, api.Subject{ID: api.BootstrapSubject, Roles: []string{"admin"}})
		require.NoError(t, err)
		c := newClient(t, store, options{authn: authn, authz: defaultPolicy(t), noRun: true})

		for _, tc := range []struct {
			name   string
			header []string
			status int
		}{
			{"the key as X-API-Key", []string{"X-API-Key", key}, 200},
			{"the key as a bearer token", []string{"Authorization", "Bearer " + key}, 200},
			{"an empty X-API-Key carries nothing", []string{"X-API-Key", " ", "Authorization", "Bearer " + key}, 200},
			{"wrong bearer, right X-API-Key", []string{"Authorization", "Bearer tkd_wrong", "X-API-Key", key}, 401},
			{"right bearer, wrong X-API-Key", []string{"Authorization", "Bearer " + key, "X-API-Key", "tkd_wrong"}, 401},
			{"another scheme beside the right X-API-Key", []string{"Authorization", "Basic YWxpY2U6cHc=", "X-API-Key", key}, 401},
			{"right bearer and right X-API-Key", []string{"Authorization", "Bearer " + key, "X-API-Key", key}, 200},
			{"two Authorization headers that agree", []string{"Authorization", "Bearer " + key, "Authorization", "Bearer " + key}, 200},
			{"right Authorization, then a wrong one", []string{"Authorization", "Bearer " + key, "Authorization", "Bearer tkd_wrong"}, 401},
			{"wrong Authorization, then the right one", []string{"Authorization", "Bearer tkd_wrong", "Authorization", "Bearer " + key}, 401},
			{"X-API-Key twice, one wrong", []string{"X-API-Key", key, "X-API-Key", "tkd_wrong"}, 401},
		} {
			r := c.doMulti("GET", "/v1/workflows", "", tc.header...)
			require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
			if tc.status == http.StatusUnauthorized {
				require.Equal(t, "unauthorized", r.errorCode(t), tc.name)
				require.Equal(t, `Bearer realm="taskerd"`, r.header.Get("WWW-Authenticate"), tc.name)
			}
		}
	})
}
