package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/plugin/host"
)

// TestAuthenticatorPluginsThroughTheAPI runs the example jwt and apikey
// plugins, built here, as the API's authenticator chain: the pieces
// `taskerd serve` wires together, with the shipped default policy.
func TestAuthenticatorPluginsThroughTheAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	build := func(name string) host.Spec {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, "../examples/plugins/"+name)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		require.NoError(t, cmd.Run())
		sum, err := host.FileSHA256(out)
		require.NoError(t, err)
		return host.Spec{Name: name, Path: out, SHA256: sum}
	}
	jwtSpec, keySpec := build("jwt"), build("apikey")

	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	pemPath := filepath.Join(dir, "idp.pem")
	require.NoError(t, os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	jwtSpec.Config, _ = json.Marshal(map[string]any{"public_key_file": pemPath, "issuer": "https://idp.test", "audience": "taskerd"})

	const apiKey, apiKey2, otherKey = "tkd_api-test-key-0001", "tkd_api-test-key-0002", "tkd_api-test-key-other"
	hash := func(k string) string { sum := sha256.Sum256([]byte(k)); return hex.EncodeToString(sum[:]) }
	keys, _ := json.Marshal(map[string]any{"keys": []map[string]any{
		{"sha256": hash(apiKey), "subject": "ci", "roles": []string{"admin"}},
		{"sha256": hash(apiKey2), "subject": "ci", "roles": []string{"admin"}, "name": "rotated"},
		{"sha256": hash(otherKey), "subject": "dashboard", "roles": []string{"admin"}},
	}})
	keysPath := filepath.Join(dir, "keys.json")
	require.NoError(t, os.WriteFile(keysPath, keys, 0o600))
	keySpec.Config, _ = json.Marshal(map[string]any{"keys_file": keysPath})

	chain, err := host.StartAuthenticators(context.Background(), []host.Spec{keySpec, jwtSpec}, []string{"jwt", "apikey"}, host.AuthOptions{})
	require.NoError(t, err)
	t.Cleanup(chain.Close)

	token := func(mod func(jwt.MapClaims)) string {
		now := time.Now()
		c := jwt.MapClaims{"sub": "alice", "iss": "https://idp.test", "aud": "taskerd", "exp": now.Add(time.Hour).Unix(), "roles": []string{"admin"}}
		if mod != nil {
			mod(c)
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(priv)
		require.NoError(t, err)
		return s
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "roles": []string{"admin"}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{authn: chain, authz: defaultPolicy(t), noRun: true})
		get := func(header ...string) response { return c.do("GET", "/v1/workflows", nil, header...) }

		require.Equal(t, http.StatusOK, c.do("GET", "/health/live", nil).status, "liveness needs nothing")
		require.Equal(t, http.StatusOK, c.do("GET", "/health/ready", nil).status, "readiness needs nothing")

		r := get()
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Equal(t, "unauthorized", r.errorCode(t))
		require.Equal(t, http.StatusOK, get("Authorization", "Bearer "+token(nil)).status)
		require.Equal(t, http.StatusOK, get("X-API-Key", apiKey).status, "jwt says not_mine, apikey decides")
		require.Equal(t, http.StatusOK, get("Authorization", "Bearer "+apiKey).status)

		for name, tok := range map[string]string{
			"expired":        token(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
			"not yet valid":  token(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }),
			"wrong issuer":   token(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }),
			"wrong audience": token(func(c jwt.MapClaims) { c["aud"] = "other" }),
			"alg none":       none,
			"malformed":      "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.c2ln",
			"unknown key":    "tkd_unknown",
		} {
			r := get("Authorization", "Bearer "+tok)
			require.Equal(t, http.StatusUnauthorized, r.status, name)
			require.NotContains(t, string(r.body), "expired", "%s: the reason stays in the log", name)
		}

		// Several credentials (issue 14, item 6): each must authenticate,
		// all to one subject. Before, the first plugin to recognise one
		// decided, so a valid JWT let any X-API-Key through.
		alice := "Bearer " + token(nil)
		ci := "Bearer " + token(func(c jwt.MapClaims) { c["sub"] = "ci" })
		several := func(header ...string) response { return c.doMulti("GET", "/v1/workflows", "", header...) }
		for _, tc := range []struct {
			name   string
			header []string
			status int
		}{
			{"right JWT, wrong key", []string{"Authorization", alice, "X-API-Key", "tkd_wrong"}, 401},
			{"wrong JWT, right key", []string{"Authorization", "Bearer " + none, "X-API-Key", apiKey}, 401},
			{"wrong bearer key, right key", []string{"Authorization", "Bearer tkd_wrong", "X-API-Key", apiKey}, 401},
			{"right JWT and right key of another subject", []string{"Authorization", alice, "X-API-Key", apiKey}, 401},
			{"right keys of two subjects", []string{"Authorization", "Bearer " + otherKey, "X-API-Key", apiKey}, 401},
			{"a credential no authenticator knows, and a right key", []string{"Authorization", "Basic YWxpY2U6cHc=", "X-API-Key", apiKey}, 401},
			{"two right keys given as X-API-Key twice", []string{"X-API-Key", apiKey, "X-API-Key", apiKey2}, 200},
			{"right JWT and right key of one subject", []string{"Authorization", ci, "X-API-Key", apiKey}, 200},
			{"right bearer key and right key of one subject", []string{"Authorization", "Bearer " + apiKey2, "X-API-Key", apiKey}, 200},
			{"two Authorization headers that agree", []string{"Authorization", alice, "Authorization", alice}, 200},
			{"two Authorization headers of one subject", []string{"Authorization", ci, "Authorization", "Bearer " + apiKey}, 200},
			{"two Authorization headers, one wrong", []string{"Authorization", alice, "Authorization", "Bearer tkd_wrong"}, 401},
			{"two Authorization headers of two subjects", []string{"Authorization", alice, "Authorization", ci}, 401},
		} {
			r := several(tc.header...)
			require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
			if tc.status == http.StatusUnauthorized {
				require.Equal(t, "unauthorized", r.errorCode(t), tc.name)
				require.NotContains(t, string(r.body), "dashboard", "%s: which subject stays in the log", tc.name)
			}
		}
	})
}
