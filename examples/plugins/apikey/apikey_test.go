package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin"
	"github.com/taskerd/taskerd/plugin/host"
)

// pluginPath is this plugin, built once for the package's tests.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-apikey-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// A plain build (no -race): the plugin is another process.
		pluginPath = filepath.Join(dir, "apikey")
		cmd := exec.Command("go", "build", "-o", pluginPath, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the apikey plugin:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

const (
	opsKey    = "tkd_ops-key-for-tests-0001"
	viewerKey = "tkd_viewer-key-for-tests-0002"
)

func hashOf(k string) string {
	s := sha256.Sum256([]byte(k))
	return hex.EncodeToString(s[:])
}

// keysFile writes a keys file for opsKey and viewerKey and returns its path.
func keysFile(t testing.TB) string {
	t.Helper()
	f := KeysFile{Keys: []KeyEntry{
		{SHA256: hashOf(opsKey), Subject: "ops-bot", Roles: []string{"operator"}, Namespaces: []string{"ecommerce"}, Name: "ops-2026"},
		{SHA256: strings.ToUpper(hashOf(viewerKey)), Subject: "dashboard", Roles: []string{"viewer"}},
	}}
	b, err := json.Marshal(f)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keys.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

func configured(t *testing.T, extra string) *Authenticator {
	t.Helper()
	a := &Authenticator{}
	cfg := fmt.Sprintf(`{"keys_file": %q%s}`, keysFile(t), extra)
	require.NoError(t, a.Configure(context.Background(), json.RawMessage(cfg)))
	return a
}

type outcome struct {
	Kind    string // authenticated, not_mine, rejected
	Subject string
}

// decide runs a through the SDK's server so the result is what the host sees.
func decide(t *testing.T, a *Authenticator, h http.Header) (outcome, json.RawMessage, []string) {
	t.Helper()
	res, err := a.Authenticate(context.Background(), &plugin.AuthRequest{Method: "GET", Path: "/v1/tasks", Header: h})
	require.NoError(t, err)
	srv := plugin.NewAuthenticatorServer(plugin.AuthenticatorFunc(func(context.Context, *plugin.AuthRequest) (plugin.AuthResult, error) { return res, nil }))
	resp, err := srv.Authenticate(context.Background(), nil)
	require.NoError(t, err)
	switch {
	case resp.GetAuthenticated() != nil:
		return outcome{"authenticated", resp.GetAuthenticated().SubjectId}, resp.GetAuthenticated().ClaimsJson, resp.GetAuthenticated().Roles
	case resp.GetRejected() != nil:
		return outcome{Kind: "rejected"}, nil, nil
	default:
		return outcome{Kind: "not_mine"}, nil, nil
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	a := configured(t, "")
	tests := []struct {
		name   string
		header http.Header
		want   outcome
	}{
		{"no key", http.Header{}, outcome{Kind: "not_mine"}},
		{"x-api-key", http.Header{"X-Api-Key": {opsKey}}, outcome{"authenticated", "ops-bot"}},
		{"bearer", http.Header{"Authorization": {"Bearer " + viewerKey}}, outcome{"authenticated", "dashboard"}},
		{"unknown x-api-key", http.Header{"X-Api-Key": {"tkd_nope"}}, outcome{Kind: "rejected"}},
		{"unknown bearer with the prefix", http.Header{"Authorization": {"Bearer tkd_nope"}}, outcome{Kind: "rejected"}},
		{"a JWT bearer is not mine", http.Header{"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}}, outcome{Kind: "not_mine"}},
		{"basic auth is not mine", http.Header{"Authorization": {"Basic " + opsKey}}, outcome{Kind: "not_mine"}},
		{"empty x-api-key", http.Header{"X-Api-Key": {""}}, outcome{Kind: "rejected"}},
		{"two x-api-keys", http.Header{"X-Api-Key": {opsKey, viewerKey}}, outcome{Kind: "rejected"}},
		{"x-api-key and bearer", http.Header{"X-Api-Key": {opsKey}, "Authorization": {"Bearer " + viewerKey}}, outcome{Kind: "rejected"}},
		{"the hash is not the key", http.Header{"X-Api-Key": {hashOf(opsKey)}}, outcome{Kind: "rejected"}},
		{"a prefix of the key", http.Header{"X-Api-Key": {opsKey[:len(opsKey)-1]}}, outcome{Kind: "rejected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, _, _ := decide(t, a, tt.header)
			require.Equal(t, tt.want, got)
		})
	}

	_, claims, roles := decide(t, a, http.Header{"X-Api-Key": {opsKey}})
	require.Equal(t, []string{"operator"}, roles)
	require.JSONEq(t, `{"auth":"apikey","namespaces":["ecommerce"],"key_name":"ops-2026"}`, string(claims))
	_, claims, _ = decide(t, a, http.Header{"X-Api-Key": {viewerKey}})
	require.JSONEq(t, `{"auth":"apikey"}`, string(claims))
}

func TestBearerPrefix(t *testing.T) {
	t.Parallel()
	a := configured(t, `, "bearer_prefix": "*"`)
	got, _, _ := decide(t, a, http.Header{"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}})
	require.Equal(t, "rejected", got.Kind, `"*" takes every bearer token`)
}

func TestConfigureRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	tests := []struct{ name, cfg, want string }{
		{"no keys file", `{}`, "keys_file is required"},
		{"missing file", fmt.Sprintf(`{"keys_file": %q}`, filepath.Join(dir, "nope")), "no such file"},
		{"unknown field", `{"keys_file": "x", "keys": []}`, "unknown field"},
		{"plaintext key", fmt.Sprintf(`{"keys_file": %q}`, write("plain.json", `{"keys":[{"sha256":"tkd_secret","subject":"a"}]}`)), "64 hex digits"},
		{"no subject", fmt.Sprintf(`{"keys_file": %q}`, write("nosub.json", `{"keys":[{"sha256":"`+hashOf("k")+`"}]}`)), "subject is required"},
		{"duplicate", fmt.Sprintf(`{"keys_file": %q}`, write("dup.json", `{"keys":[{"sha256":"`+hashOf("k")+`","subject":"a"},{"sha256":"`+hashOf("k")+`","subject":"b"}]}`)), "listed twice"},
		{"empty prefix", fmt.Sprintf(`{"keys_file": %q, "bearer_prefix": ""}`, write("ok.json", `{"keys":[]}`)), "bearer_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := (&Authenticator{}).Configure(context.Background(), json.RawMessage(tt.cfg))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestNewKey(t *testing.T) {
	t.Parallel()
	k, h, err := NewKey()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(k, "tkd_"))
	require.Equal(t, hashOf(k), h)
}

// TestThroughTheChain runs the built plugin as taskerd does, as an
// authenticator chain of one.
func TestThroughTheChain(t *testing.T) {
	t.Parallel()
	sum, err := host.FileSHA256(pluginPath)
	require.NoError(t, err)
	logs := &logsink.Buffer{}
	cfg, _ := json.Marshal(map[string]string{"keys_file": keysFile(t)})
	chain, err := host.StartAuthenticators(context.Background(),
		[]host.Spec{{Name: "apikey", Path: pluginPath, SHA256: sum, Config: cfg}}, []string{"apikey"},
		host.AuthOptions{Options: host.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}})
	require.NoError(t, err)
	t.Cleanup(chain.Close)

	req := func(h ...string) *http.Request {
		r := httptest.NewRequest("POST", "/v1/tasks", nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Add(h[i], h[i+1])
		}
		return r
	}
	sub, err := chain.Authenticate(req("X-API-Key", opsKey))
	require.NoError(t, err)
	require.Equal(t, "ops-bot", sub.ID)
	require.Equal(t, []string{"operator"}, sub.Roles)
	require.JSONEq(t, `{"auth":"apikey","namespaces":["ecommerce"],"key_name":"ops-2026"}`, string(sub.Claims))

	_, err = chain.Authenticate(req())
	require.ErrorIs(t, err, api.ErrNoCredentials)

	_, err = chain.Authenticate(req("Authorization", "Bearer tkd_stolen-or-guessed"))
	var ae *host.AuthError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, "rejected", ae.Kind)
	require.Contains(t, logs.String(), "unknown API key")
	for _, secret := range []string{opsKey, "tkd_stolen-or-guessed"} {
		require.NotContains(t, logs.String(), secret)
	}
}
