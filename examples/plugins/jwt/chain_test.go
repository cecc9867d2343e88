package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

// chainAPIKey is the one key the apikey plugin knows in these tests.
const chainAPIKey = "tkd_chain-test-key-0001"

// startChain runs the built plugins as taskerd would: names in chain
// order, from "jwt", "jwt_cached" and "apikey".
func startChain(t testing.TB, names ...string) (*host.AuthChain, *logsink.Buffer) {
	t.Helper()
	jwtSum, err := host.FileSHA256(jwtPluginPath)
	require.NoError(t, err)
	keySum, err := host.FileSHA256(apikeyPluginPath)
	require.NoError(t, err)

	sum := sha256.Sum256([]byte(chainAPIKey))
	keys, _ := json.Marshal(map[string]any{"keys": []map[string]any{
		{"sha256": hex.EncodeToString(sum[:]), "subject": "ci-bot", "roles": []string{"operator"}, "namespaces": []string{"ecommerce"}},
	}})
	keysPath := filepath.Join(t.TempDir(), "keys.json")
	require.NoError(t, os.WriteFile(keysPath, keys, 0o600))

	jwtCfg, _ := json.Marshal(rsaConfig())
	cached := rsaConfig()
	cached["cache_size"] = 1024
	cachedCfg, _ := json.Marshal(cached)
	keyCfg, _ := json.Marshal(map[string]any{"keys_file": keysPath})
	specs := []host.Spec{
		{Name: "jwt", Path: jwtPluginPath, SHA256: jwtSum, Config: jwtCfg},
		{Name: "jwt_cached", Path: jwtPluginPath, SHA256: jwtSum, Config: cachedCfg},
		{Name: "apikey", Path: apikeyPluginPath, SHA256: keySum, Config: keyCfg},
	}
	logs := &logsink.Buffer{}
	chain, err := host.StartAuthenticators(context.Background(), specs, names, host.AuthOptions{
		Options: host.Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
	})
	require.NoError(t, err)
	t.Cleanup(chain.Close)
	return chain, logs
}

func request(h ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/tasks", nil)
	for i := 0; i+1 < len(h); i += 2 {
		r.Header.Add(h[i], h[i+1])
	}
	return r
}

// TestChainThroughPlugins: jwt then apikey, both real subprocesses.
func TestChainThroughPlugins(t *testing.T) {
	t.Parallel()
	chain, logs := startChain(t, "jwt", "apikey")
	now := time.Now()
	valid := rs256(claimsAt(now))

	sub, err := chain.Authenticate(request("Authorization", "Bearer "+valid))
	require.NoError(t, err)
	require.Equal(t, "alice", sub.ID)
	require.Equal(t, []string{"operator"}, sub.Roles)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(sub.Claims, &claims))
	require.Equal(t, []any{"ecommerce"}, claims["namespaces"])

	// An API key is not a JWT: jwt says not_mine and apikey decides.
	for _, h := range [][]string{{"Authorization", "Bearer " + chainAPIKey}, {"X-API-Key", chainAPIKey}} {
		sub, err = chain.Authenticate(request(h...))
		require.NoError(t, err)
		require.Equal(t, "ci-bot", sub.ID)
		require.JSONEq(t, `{"auth":"apikey","namespaces":["ecommerce"]}`, string(sub.Claims))
	}

	_, err = chain.Authenticate(request())
	require.ErrorIs(t, err, api.ErrNoCredentials, "no credential at all: every plugin says not_mine")
	_, err = chain.Authenticate(request("Authorization", "Basic YWxpY2U6cHc="))
	require.ErrorIs(t, err, api.ErrNoCredentials)

	var secrets []string
	secrets = append(secrets, valid, chainAPIKey)
	for _, tt := range badTokens(now) {
		_, err := chain.Authenticate(request("Authorization", "Bearer "+tt.token))
		var ae *host.AuthError
		require.True(t, errors.As(err, &ae), "%s: %v", tt.name, err)
		require.Equal(t, "jwt", ae.Plugin, tt.name)
		require.Equal(t, "rejected", ae.Kind, tt.name)
		require.Contains(t, ae.Reason, tt.reason, tt.name)
		secrets = append(secrets, tt.token)
	}
	_, err = chain.Authenticate(request("X-API-Key", "tkd_guessed"))
	require.Error(t, err)
	secrets = append(secrets, "tkd_guessed")

	// Every rejection was logged with its reason; no credential, nor any
	// signature or payload segment of one, was.
	l := logs.String()
	require.Contains(t, l, "credential rejected")
	require.Contains(t, l, "token is expired")
	for _, s := range secrets {
		for _, part := range strings.Split(s, ".") {
			if len(part) >= 16 {
				require.NotContains(t, l, part)
			}
		}
	}
}

// FuzzChain sends random headers through jwt then apikey: a subject may
// only come out when the request carries one of the two valid credentials.
func FuzzChain(f *testing.F) {
	chain, _ := startChain(f, "jwt", "apikey")
	now := time.Now()
	valid := rs256(claimsAt(now))
	f.Add("Bearer "+valid, "", "X-Other", "x")
	f.Add("bearer  "+valid+" ", "", "", "")
	f.Add("Bearer "+chainAPIKey, "", "", "")
	f.Add("", chainAPIKey, "", "")
	f.Add("", " "+chainAPIKey+" ", "Authorization", "Bearer "+valid)
	f.Add("Bearer "+valid[:len(valid)-2], "", "", "")
	f.Add("Bearer "+valid+"x", "", "", "")
	f.Add("Bearer "+strings.ToUpper(chainAPIKey), "", "", "")
	f.Add("Bearer tkd_", "tkd_", "X-Api-Key", chainAPIKey)
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.", "", "", "")
	f.Add("Bearer a.b.c", "", "Cookie", "token="+valid)
	f.Add("Basic "+chainAPIKey, "", "X-Api-Key", "")
	f.Add("\xff\xfe", "\x00", "X-\xff", "\xff")
	for _, tt := range badTokens(now) {
		f.Add("Bearer "+tt.token, "", "", "")
	}
	f.Fuzz(func(t *testing.T, authz, apiKey, name, value string) {
		r := request()
		if authz != "" {
			r.Header["Authorization"] = []string{authz}
		}
		if apiKey != "" {
			r.Header["X-Api-Key"] = []string{apiKey}
		}
		if name != "" {
			r.Header[name] = append(r.Header[name], value)
		}
		sub, err := chain.Authenticate(r)
		if err != nil {
			require.Nil(t, sub)
			return
		}
		require.NotNil(t, sub)
		all := strings.Join(slices.Concat(r.Header["Authorization"], r.Header["X-Api-Key"]), "\n")
		require.True(t, strings.Contains(all, valid) || strings.Contains(all, chainAPIKey),
			"subject %q from headers without a valid credential: %q", sub.ID, r.Header)
	})
}

// BenchmarkAuthenticate measures, in one run and interleaved so both see
// the same machine load, the latency of an RS256 JWT authentication
// through the jwt plugin and of a bare plugin round trip (the apikey
// plugin: a SHA-256 and a compare). It reports each p50 and their ratio;
// the target is jwt_p50 <= 1.5 x roundtrip_p50. The cached variant is
// the jwt plugin with cache_size set, on a repeated token.
func BenchmarkAuthenticate(b *testing.B) {
	jwtChain, _ := startChain(b, "jwt")
	cachedChain, _ := startChain(b, "jwt_cached")
	keyChain, _ := startChain(b, "apikey")
	tok := rs256(claimsAt(time.Now()))
	jwtReq := request("Authorization", "Bearer "+tok)
	keyReq := request("X-API-Key", chainAPIKey)

	var rt, jw, ca []time.Duration
	call := func(c *host.AuthChain, r *http.Request, into *[]time.Duration) {
		start := time.Now()
		sub, err := c.Authenticate(r)
		*into = append(*into, time.Since(start))
		if err != nil || sub == nil {
			b.Fatalf("authenticate: %v", err)
		}
	}
	for range 50 { // warm up connections and caches
		call(keyChain, keyReq, new([]time.Duration))
		call(jwtChain, jwtReq, new([]time.Duration))
		call(cachedChain, jwtReq, new([]time.Duration))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call(keyChain, keyReq, &rt)
		call(jwtChain, jwtReq, &jw)
		call(cachedChain, jwtReq, &ca)
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Nanoseconds()) / 1e3
	}
	r, j, c := p50(rt), p50(jw), p50(ca)
	b.ReportMetric(r, "roundtrip_p50_µs")
	b.ReportMetric(j, "jwt_rs256_p50_µs")
	b.ReportMetric(c, "jwt_cached_p50_µs")
	b.ReportMetric(j/r, "jwt/roundtrip")
	b.ReportMetric(c/r, "cached/roundtrip")
}
