package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

// fakeJWT stands for an authenticator plugin chain: it takes bearer tokens
// beginning "jwt." and answers not-mine to anything else.
type fakeJWT struct {
	mu   sync.Mutex
	seen []string
}

func (f *fakeJWT) Authenticate(r *http.Request) (*api.Subject, error) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	f.seen = append(f.seen, token)
	f.mu.Unlock()
	if strings.HasPrefix(token, "jwt.") {
		return &api.Subject{ID: "alice", Roles: []string{"admin"}}, nil
	}
	return nil, api.ErrNoCredentials
}

func (f *fakeJWT) saw(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.seen {
		if s == token {
			return true
		}
	}
	return false
}

// createKey stores a new database key and returns it.
func createKey(t *testing.T, store backends.Store, subject string, roles, namespaces []string, expires *time.Time) (string, *backends.APIKey) {
	t.Helper()
	key, hash, err := api.NewKey()
	require.NoError(t, err)
	id, err := api.NewKeyID()
	require.NoError(t, err)
	k, err := store.CreateAPIKey(context.Background(), &backends.NewAPIKeyParams{ID: id, Subject: subject, Roles: roles,
		Namespaces: namespaces, Hash: hash, ExpiresAt: expires, Actor: "test", Now: time.Now().UTC().Truncate(time.Microsecond)})
	require.NoError(t, err)
	return key, k
}

// The keys of the database, with the default policy, through the API.
func TestDatabaseKeys(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		ctx := context.Background()
		bootKey, bootHash, _, err := api.EnsureBootstrapKey(ctx, store, time.Now(), nil)
		require.NoError(t, err)
		boot, err := api.NewKeyAuthenticator(bootHash, api.Subject{ID: api.BootstrapSubject, Roles: []string{"admin"}})
		require.NoError(t, err)
		var (
			clockMu sync.Mutex
			clock   = time.Now()
		)
		jwt := &fakeJWT{}
		chain := &api.KeyChain{Bootstrap: boot, Store: store, Next: jwt, Now: func() time.Time {
			clockMu.Lock()
			defer clockMu.Unlock()
			return clock
		}}
		c := newClient(t, store, options{authn: chain, authz: defaultPolicy(t), noRun: true})
		bearer := func(key string) []string { return []string{"Authorization", "Bearer " + key} }

		operator, opKey := createKey(t, store, "ci-bot", []string{"operator"}, []string{"shop"}, nil)
		viewer, _ := createKey(t, store, "dashboard", []string{"viewer"}, nil, nil)
		scraper, _ := createKey(t, store, "prometheus", []string{"metrics"}, nil, nil)
		in := time.Now().Add(time.Hour)
		shortLived, _ := createKey(t, store, "temp", []string{"viewer"}, nil, &in)

		// An operator key acts in its namespace only.
		r := c.do("POST", "/v1/tasks", goodOrder, bearer(operator)...)
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		r = c.do("POST", "/v1/tasks", map[string]any{"workflow": "default/broken"}, bearer(operator)...)
		require.Equal(t, http.StatusForbidden, r.status, "another namespace")
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks?namespace=shop", nil, "X-API-Key", operator).status, "X-API-Key too")
		require.Equal(t, http.StatusForbidden, c.do("GET", "/v1/tasks?namespace=default", nil, bearer(operator)...).status)
		require.Equal(t, http.StatusForbidden, c.do("GET", "/metrics", nil, bearer(operator)...).status)

		// A viewer reads; a metrics key scrapes and does nothing else.
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks", nil, bearer(viewer)...).status)
		require.Equal(t, http.StatusForbidden, c.do("GET", "/metrics", nil, bearer(viewer)...).status)
		r = c.do("GET", "/metrics", nil, bearer(scraper)...)
		require.Equal(t, http.StatusOK, r.status)
		require.Contains(t, string(r.body), "taskerd_")
		for _, p := range []string{"/v1/tasks", "/v1/tasks/1", "/v1/workflows"} {
			require.Equal(t, http.StatusForbidden, c.do("GET", p, nil, bearer(scraper)...).status, p)
		}
		require.Equal(t, http.StatusForbidden, c.do("POST", "/v1/tasks", goodOrder, bearer(scraper)...).status)

		// The OpenAPI document is public; /metrics is not.
		r = c.do("GET", "/v1/openapi.json", nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "3.1.0", r.json(t)["openapi"])
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/metrics", nil).status)

		// Bootstrap key, database keys and the plugin chain side by side.
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/workflows", nil, bearer(bootKey)...).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/workflows", nil, bearer("jwt.a-token")...).status, "a JWT reaches the plugins")
		require.True(t, jwt.saw("jwt.a-token"))
		require.False(t, jwt.saw(operator), "a database key is not passed on")
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/workflows", nil, bearer("tkd_unknown")...).status)
		require.True(t, jwt.saw("tkd_unknown"), "an unknown key falls through to the plugins")
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/workflows", nil).status)

		// Expiry, against the chain's clock.
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks", nil, bearer(shortLived)...).status)
		clockMu.Lock()
		clock = in
		clockMu.Unlock()
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil, bearer(shortLived)...).status, "expired")
		require.False(t, jwt.saw(shortLived), "an expired key is refused, not passed on")

		// Revocation holds from the next request.
		_, revoked, err := store.RevokeAPIKey(ctx, opKey.ID, "test", time.Now().UTC())
		require.NoError(t, err)
		require.True(t, revoked)
		r = c.do("GET", "/v1/tasks?namespace=shop", nil, bearer(operator)...)
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Equal(t, "unauthorized", r.errorCode(t))
		require.False(t, jwt.saw(operator), "a revoked key is refused, not passed on")
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks", nil, bearer(viewer)...).status, "other keys keep working")
	})
}

func TestKeySubject(t *testing.T) {
	t.Parallel()
	s := api.KeySubject(&backends.APIKey{ID: "k1", Subject: "ci-bot", Roles: []string{"operator"}, Namespaces: []string{"shop"}})
	require.Equal(t, "ci-bot", s.ID)
	require.Equal(t, []string{"operator"}, s.Roles)
	require.JSONEq(t, `{"namespaces": ["shop"], "key_id": "k1"}`, string(s.Claims))
	s = api.KeySubject(&backends.APIKey{ID: "k2", Subject: "x", Roles: []string{"viewer"}})
	var claims map[string]any
	require.NoError(t, json.Unmarshal(s.Claims, &claims))
	require.Equal(t, []any{}, claims["namespaces"], "an array, never null")
}

// brokenKeys is a key store that fails.
type brokenKeys struct {
	backends.KeyStore
	err error
}

func (b brokenKeys) APIKeyByHash(context.Context, string) (*backends.APIKey, error) {
	return nil, b.err
}

// A lookup the database cannot answer never lets a request through: 503
// when the database is unavailable, 401 for any other failure.
func TestDatabaseKeysFailClosed(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		for _, tt := range []struct {
			err    error
			status int
			code   string
		}{
			{backends.Unavailable(errors.New("connection refused")), http.StatusServiceUnavailable, "unavailable"},
			{backends.Unavailable(context.DeadlineExceeded), http.StatusServiceUnavailable, "unavailable"},
			{errors.New("corrupt row"), http.StatusUnauthorized, "unauthorized"},
		} {
			accepting := &api.KeyChain{Store: brokenKeys{err: tt.err}, Next: acceptAll{}}
			c := newClient(t, store, options{authn: accepting, authz: defaultPolicy(t), noRun: true})
			r := c.do("GET", "/v1/tasks", nil, "Authorization", "Bearer tkd_some-key")
			require.Equal(t, tt.status, r.status, tt.err.Error())
			require.Equal(t, tt.code, r.errorCode(t))
			if tt.status == http.StatusServiceUnavailable {
				require.NotEmpty(t, r.header.Get("Retry-After"))
			}
			require.NotContains(t, string(r.body), "tkd_some-key")
			// A credential that is not one of our keys is not looked up.
			require.Equal(t, http.StatusOK, c.do("GET", "/v1/workflows", nil, "Authorization", "Bearer jwt.x").status)
		}
	})
}

// acceptAll is a plugin chain that takes anything.
type acceptAll struct{}

func (acceptAll) Authenticate(*http.Request) (*api.Subject, error) {
	return &api.Subject{ID: "anyone", Roles: []string{"admin"}}, nil
}

// Without plugins, an unknown key is refused; with the bootstrap key off,
// so is the bootstrap key.
func TestKeyChainWithoutPluginsOrBootstrap(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		bootKey, _, _, err := api.EnsureBootstrapKey(context.Background(), store, time.Now(), nil)
		require.NoError(t, err)
		viewer, _ := createKey(t, store, "dashboard", []string{"viewer"}, nil, nil)
		c := newClient(t, store, options{authn: &api.KeyChain{Store: store}, authz: defaultPolicy(t), noRun: true})
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil, "X-API-Key", bootKey).status, "bootstrap = false")
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil, "X-API-Key", "tkd_unknown").status)
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil, "Authorization", "Bearer jwt.x").status)
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks", nil, "X-API-Key", viewer).status)
		// Two credentials of one key agree; a database key and another
		// subject's do not.
		require.Equal(t, http.StatusOK, c.do("GET", "/v1/tasks", nil, "X-API-Key", viewer, "Authorization", "Bearer "+viewer).status)
		other, _ := createKey(t, store, "someone-else", []string{"viewer"}, nil, nil)
		require.Equal(t, http.StatusUnauthorized, c.do("GET", "/v1/tasks", nil, "X-API-Key", viewer, "Authorization", "Bearer "+other).status)
	})
}

// A KeySaver that cannot stage the key leaves no hash stored; a saver of a
// node whose key lost is aborted.
func TestBootstrapKeySaver(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		ctx := context.Background()
		failing := &recordingSaver{stageErr: errors.New("disk full")}
		_, _, created, err := api.EnsureBootstrapKey(ctx, store, time.Now(), failing)
		require.ErrorContains(t, err, "disk full")
		require.False(t, created)
		_, err = store.Setting(ctx, api.BootstrapKeySetting)
		require.ErrorIs(t, err, backends.ErrNotFound, "no hash of a key nobody has")

		first := &recordingSaver{}
		key, hash, created, err := api.EnsureBootstrapKey(ctx, store, time.Now(), first)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, key, first.staged)
		require.True(t, first.committed)
		require.Equal(t, api.HashKey(key), hash)

		again := &recordingSaver{}
		_, _, created, err = api.EnsureBootstrapKey(ctx, store, time.Now(), again)
		require.NoError(t, err)
		require.False(t, created)
		require.Empty(t, again.staged, "an existing key stages nothing")
	})
}

type recordingSaver struct {
	stageErr           error
	staged             string
	committed, aborted bool
}

func (s *recordingSaver) Stage(key string) error {
	if s.stageErr != nil {
		return s.stageErr
	}
	s.staged = key
	return nil
}
func (s *recordingSaver) Commit() error { s.committed = true; return nil }
func (s *recordingSaver) Abort()        { s.aborted = true }
