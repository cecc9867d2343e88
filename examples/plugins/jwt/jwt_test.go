package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin"
)

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func configured(t testing.TB, cfg map[string]any) *Authenticator {
	t.Helper()
	a := &Authenticator{now: func() time.Time { return testNow }}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, a.Configure(context.Background(), b))
	return a
}

func rsaConfig() map[string]any {
	return map[string]any{"public_key_file": rsaPEM, "issuer": testIssuer, "audience": testAudience, "leeway": "5s"}
}

type answer struct {
	kind    string // authenticated, not_mine, rejected
	subject string
	roles   []string
	claims  json.RawMessage
	reason  string
}

// decide passes a's result through the SDK's server: what the host sees.
func decide(t *testing.T, a *Authenticator, h http.Header) answer {
	t.Helper()
	res, err := a.Authenticate(context.Background(), &plugin.AuthRequest{Method: "GET", Path: "/v1/tasks", Header: h})
	require.NoError(t, err)
	srv := plugin.NewAuthenticatorServer(plugin.AuthenticatorFunc(func(context.Context, *plugin.AuthRequest) (plugin.AuthResult, error) { return res, nil }))
	resp, err := srv.Authenticate(context.Background(), nil)
	require.NoError(t, err)
	switch {
	case resp.GetAuthenticated() != nil:
		au := resp.GetAuthenticated()
		return answer{kind: "authenticated", subject: au.SubjectId, roles: au.Roles, claims: au.ClaimsJson}
	case resp.GetRejected() != nil:
		return answer{kind: "rejected", reason: resp.GetRejected().Reason}
	default:
		return answer{kind: "not_mine"}
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// badTokens are the tokens every configuration must refuse, with the words
// golang-jwt's reason carries. They are signed for the RSA configuration.
func badTokens(now time.Time) []struct{ name, token, reason string } {
	c := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		cl := claimsAt(now)
		mod(cl)
		return cl
	}
	valid := rs256(claimsAt(now))
	parts := strings.Split(valid, ".")
	tampered := c(func(cl jwt.MapClaims) { cl["sub"] = "mallory"; cl["roles"] = []string{"admin"} })
	tamperedPayload, _ := json.Marshal(tampered)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(now)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		panic(err)
	}
	pemBytes, err := os.ReadFile(rsaPEM)
	if err != nil {
		panic(err)
	}
	return []struct{ name, token, reason string }{
		{"malformed payload", parts[0] + ".!!not-base64!!." + parts[2], "malformed"},
		{"malformed signature", parts[0] + "." + parts[1] + ".", "signature"},
		{"expired", rs256(c(func(cl jwt.MapClaims) { cl["exp"] = now.Add(-time.Minute).Unix() })), "expired"},
		{"not yet valid", rs256(c(func(cl jwt.MapClaims) { cl["nbf"] = now.Add(time.Minute).Unix() })), "not valid yet"},
		{"no exp", rs256(c(func(cl jwt.MapClaims) { delete(cl, "exp") })), "exp claim is required"},
		{"wrong issuer", rs256(c(func(cl jwt.MapClaims) { cl["iss"] = "https://evil.example" })), "issuer"},
		{"wrong audience", rs256(c(func(cl jwt.MapClaims) { cl["aud"] = "someone-else" })), "audience"},
		{"bad signature (other key)", sign(jwt.SigningMethodRS256, otherRSA, claimsAt(now), ""), "verification error"},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2], "verification error"},
		{"alg none", none, "signing method none is invalid"},
		{"alg confusion: HS256 keyed with the RSA public key", sign(jwt.SigningMethodHS256, pemBytes, claimsAt(now), ""), "signing method HS256 is invalid"},
		{"ES256 without an EC key", sign(jwt.SigningMethodES256, ecPriv, claimsAt(now), ""), "signing method ES256 is invalid"},
		{"no subject", rs256(c(func(cl jwt.MapClaims) { delete(cl, "sub") })), `no string claim "sub"`},
		{"roles not strings", rs256(c(func(cl jwt.MapClaims) { cl["roles"] = []any{1} })), "non-string"},
	}
}

func TestRS256(t *testing.T) {
	t.Parallel()
	a := configured(t, rsaConfig())

	got := decide(t, a, bearer(rs256(claimsAt(testNow))))
	require.Equal(t, "authenticated", got.kind, got.reason)
	require.Equal(t, "alice", got.subject)
	require.Equal(t, []string{"operator"}, got.roles)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(got.claims, &claims))
	require.Equal(t, []any{"ecommerce"}, claims["namespaces"], "claims reach the policy whole")

	// Within the leeway.
	near := claimsAt(testNow)
	near["exp"] = testNow.Add(-3 * time.Second).Unix()
	require.Equal(t, "authenticated", decide(t, a, bearer(rs256(near))).kind)

	for _, tt := range badTokens(testNow) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := decide(t, a, bearer(tt.token))
			require.Equal(t, "rejected", got.kind)
			require.Contains(t, got.reason, tt.reason)
			require.NotContains(t, got.reason, tt.token, "the reason never carries the token")
		})
	}
}

func TestNotMine(t *testing.T) {
	t.Parallel()
	a := configured(t, rsaConfig())
	for name, h := range map[string]http.Header{
		"no header":            {},
		"api key as bearer":    bearer("tkd_0123456789abcdef"),
		"api key header":       {"X-Api-Key": {rs256(claimsAt(testNow))}},
		"basic":                {"Authorization": {"Basic YWxpY2U6cHc="}},
		"dotted, not a JWT":    bearer("a.b.c"),
		"header without alg":   bearer(base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT"}`)) + ".e30.x"),
		"two dots only in one": bearer("abc.def"),
		"token in a cookie":    {"Cookie": {"token=" + rs256(claimsAt(testNow))}},
	} {
		require.Equal(t, "not_mine", decide(t, a, h).kind, name)
	}
}

func TestES256AndHS256(t *testing.T) {
	t.Parallel()
	es := configured(t, map[string]any{"public_key_file": ecPEM})
	got := decide(t, es, bearer(sign(jwt.SigningMethodES256, ecPriv, claimsAt(testNow), "")))
	require.Equal(t, "authenticated", got.kind, got.reason)
	require.Equal(t, "rejected", decide(t, es, bearer(rs256(claimsAt(testNow)))).kind)

	hs := configured(t, map[string]any{"secret_file": secretPath, "roles_claim": "realm_access.roles"})
	got = decide(t, hs, bearer(sign(jwt.SigningMethodHS256, hmacSecret, claimsAt(testNow), "")))
	require.Equal(t, "authenticated", got.kind, got.reason)
	require.Equal(t, []string{"admin", "viewer"}, got.roles, "roles from a claim path")
	require.Equal(t, "rejected", decide(t, hs, bearer(sign(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), claimsAt(testNow), ""))).kind)
	require.Equal(t, "rejected", decide(t, hs, bearer(rs256(claimsAt(testNow)))).kind, "an RS256 token against an HS256 secret")

	inline := configured(t, map[string]any{"secret": string(hmacSecret), "subject_claim": "email"})
	cl := claimsAt(testNow)
	cl["email"] = "alice@example.com"
	got = decide(t, inline, bearer(sign(jwt.SigningMethodHS256, hmacSecret, cl, "")))
	require.Equal(t, "alice@example.com", got.subject, "subject from a configured claim")
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	a := configured(t, map[string]any{"jwks_file": jwksPath, "audience": testAudience})
	for _, tok := range []string{
		sign(jwt.SigningMethodRS256, rsaPriv, claimsAt(testNow), "r1"),
		sign(jwt.SigningMethodES256, ecPriv, claimsAt(testNow), "e1"),
		sign(jwt.SigningMethodRS256, rsaPriv, claimsAt(testNow), ""), // no kid: every RS256 key is tried
	} {
		got := decide(t, a, bearer(tok))
		require.Equal(t, "authenticated", got.kind, got.reason)
	}
	got := decide(t, a, bearer(sign(jwt.SigningMethodRS256, rsaPriv, claimsAt(testNow), "unknown")))
	require.Equal(t, "rejected", got.kind)
	require.Contains(t, got.reason, `no RS256 key with kid "unknown"`)
	require.Equal(t, "rejected", decide(t, a, bearer(sign(jwt.SigningMethodRS256, otherRSA, claimsAt(testNow), "r1"))).kind)
	require.Equal(t, "rejected", decide(t, a, bearer(sign(jwt.SigningMethodHS256, hmacSecret, claimsAt(testNow), ""))).kind, "JWKS has no oct key")
}

func TestCacheHonoursExp(t *testing.T) {
	t.Parallel()
	now := testNow
	a := &Authenticator{now: func() time.Time { return now }}
	cfg := rsaConfig()
	cfg["cache_size"] = 2
	cfg["leeway"] = "0s"
	b, _ := json.Marshal(cfg)
	require.NoError(t, a.Configure(context.Background(), b))
	st := a.st.Load()

	cl := claimsAt(testNow)
	cl["exp"] = testNow.Add(time.Minute).Unix()
	tok := rs256(cl)
	require.Equal(t, "authenticated", decide(t, a, bearer(tok)).kind)
	require.Equal(t, 1, st.cache.len())
	got := decide(t, a, bearer(tok))
	require.Equal(t, "authenticated", got.kind, "served from the cache")
	require.Equal(t, []string{"operator"}, got.roles)

	now = testNow.Add(time.Minute) // exp reached: the cache must not answer
	require.Equal(t, "rejected", decide(t, a, bearer(tok)).kind)

	now = testNow
	for i := range 5 {
		c := claimsAt(testNow)
		c["jti"] = fmt.Sprint(i)
		require.Equal(t, "authenticated", decide(t, a, bearer(rs256(c))).kind)
	}
	require.LessOrEqual(t, st.cache.len(), 2, "the cache is bounded")
	// A bad token is never cached, whatever came before.
	require.Equal(t, "rejected", decide(t, a, bearer(sign(jwt.SigningMethodRS256, otherRSA, claimsAt(testNow), ""))).kind)
}

func TestConfigureRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"no keys", map[string]any{}, "no keys"},
		{"short secret", map[string]any{"secret": "short"}, "at least 32 bytes"},
		{"both secrets", map[string]any{"secret": string(hmacSecret), "secret_file": secretPath}, "give one"},
		{"not a key", map[string]any{"public_key_file": jwksPath}, "no RSA or EC public key"},
		{"missing file", map[string]any{"jwks_file": "/nonexistent/jwks.json"}, "no such file"},
		{"bad leeway", map[string]any{"secret": string(hmacSecret), "leeway": "soon"}, "leeway"},
		{"unknown field", map[string]any{"secret": string(hmacSecret), "algorithm": "none"}, "unknown field"},
		{"negative cache", map[string]any{"secret": string(hmacSecret), "cache_size": -1}, "cache_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := json.Marshal(tt.cfg)
			err := (&Authenticator{}).Configure(context.Background(), b)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), string(hmacSecret), "the secret never appears in an error")
		})
	}
}
