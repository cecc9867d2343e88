package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/internal/logsink"
	"github.com/taskerd/taskerd/plugin/host"
)

// Tokens the test plugins accept. They must never reach a log line.
const (
	firstToken  = "first-secret-credential-7f3a"
	secondToken = "second-secret-credential-91bc"
)

type authBundle struct {
	chain *host.AuthChain
	logs  *logsink.Buffer
}

func authSpec(name, token string) host.Spec {
	cfg, _ := json.Marshal(map[string]string{"name": name, "token": token})
	return host.Spec{Name: name, Path: authTestPath, SHA256: authTestSum, Config: cfg}
}

// startChain starts authtest twice, as "first" and "second", in that order.
func startChain(t testing.TB, timeout time.Duration) *authBundle {
	t.Helper()
	logs := &logsink.Buffer{}
	specs := []host.Spec{authSpec("second", secondToken), authSpec("first", firstToken)}
	chain, err := host.StartAuthenticators(context.Background(), specs, []string{"first", "second"}, host.AuthOptions{
		Options: host.Options{
			Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			RestartMin: 20 * time.Millisecond,
		},
		Timeout: timeout,
	})
	require.NoError(t, err)
	t.Cleanup(chain.Close)
	return &authBundle{chain: chain, logs: logs}
}

func authRequest(header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/tasks?limit=1", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func authError(t *testing.T, err error, plugin, kind string) *host.AuthError {
	t.Helper()
	var ae *host.AuthError
	require.True(t, errors.As(err, &ae), "want *host.AuthError, got %T: %v", err, err)
	require.Equal(t, plugin, ae.Plugin)
	require.Equal(t, kind, ae.Kind, "%v", ae)
	return ae
}

func counter(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.(*prometheus.CounterVec).WithLabelValues(labels...).Write(&m))
	return m.GetCounter().GetValue()
}

func TestAuthChainOrderAndFallThrough(t *testing.T) {
	t.Parallel()
	b := startChain(t, 0)
	errs, answers := b.chain.Collectors()[0], b.chain.Collectors()[1]
	names := []string{}
	for _, p := range b.chain.Plugins() {
		names = append(names, p.Name())
	}
	require.Equal(t, []string{"first", "second"}, names, "chain order is the authenticators list, not the specs'")

	// Nothing for anyone: every plugin says not_mine.
	_, err := b.chain.Authenticate(authRequest())
	require.ErrorIs(t, err, api.ErrNoCredentials)
	_, err = b.chain.Authenticate(authRequest("Authorization", "Basic dXNlcjpwdw=="))
	require.ErrorIs(t, err, api.ErrNoCredentials)

	// The first plugin decides.
	sub, err := b.chain.Authenticate(authRequest("Authorization", "Bearer "+firstToken))
	require.NoError(t, err)
	require.Equal(t, "first-user", sub.ID)
	require.Equal(t, []string{"viewer"}, sub.Roles)
	require.JSONEq(t, `{"via":"first"}`, string(sub.Claims))

	// not_mine from first falls through to second.
	sub, err = b.chain.Authenticate(authRequest("Authorization", "Bearer "+secondToken))
	require.NoError(t, err)
	require.Equal(t, "second-user", sub.ID)
	require.Equal(t, 1.0, counter(t, answers, "first", "not_mine")-2, "first said not_mine to the two empty requests and to second's token")

	// Rejected by the first that claims the credential: no fall-through.
	_, err = b.chain.Authenticate(authRequest("Authorization", "Bearer first:"+secondToken))
	ae := authError(t, err, "first", "rejected")
	require.Equal(t, "unknown token", ae.Reason)
	require.NotErrorIs(t, err, api.ErrNoCredentials)
	_, err = b.chain.Authenticate(authRequest("Authorization", "Bearer second:"+firstToken))
	authError(t, err, "second", "rejected")

	// A plugin error decides too (fail closed), counted and logged.
	_, err = b.chain.Authenticate(authRequest("X-Test", "error-first", "Authorization", "Bearer "+secondToken))
	ae = authError(t, err, "first", "error")
	require.Contains(t, ae.Reason, "backend unavailable")
	require.Equal(t, 1.0, counter(t, errs, "first"))
	require.Equal(t, 0.0, counter(t, errs, "second"))

	// The plugins' own lines reach the host log; the credentials never do.
	eventually(t, 5*time.Second, func() bool { return strings.Contains(b.logs.String(), `msg="authenticate called"`) },
		"plugin log lines missing:\n%s", b.logs.String())
	logs := b.logs.String()
	require.Contains(t, logs, "credential rejected")
	require.Contains(t, logs, "authenticator failed")
	for _, secret := range []string{firstToken, secondToken} {
		require.NotContains(t, logs, secret)
	}
}

func TestAuthChainCrashIsAnErrorAndRecovers(t *testing.T) {
	t.Parallel()
	b := startChain(t, 0)
	first := b.chain.Plugins()[0]
	pid := first.Pid()

	start := time.Now()
	_, err := b.chain.Authenticate(authRequest("X-Test", "crash-first", "Authorization", "Bearer "+secondToken))
	authError(t, err, "first", "crashed")
	require.Less(t, time.Since(start), host.DefaultAuthTimeout+time.Second)
	require.Equal(t, 1.0, counter(t, b.chain.Collectors()[0], "first"))

	// The supervisor relaunches it; the chain works again without a fixed wait.
	eventually(t, 20*time.Second, func() bool {
		sub, err := b.chain.Authenticate(authRequest("Authorization", "Bearer "+firstToken))
		return err == nil && sub.ID == "first-user"
	}, "the chain did not recover after the crash")
	require.Equal(t, 1, first.Restarts())
	require.NotEqual(t, pid, first.Pid())
	require.NotContains(t, b.logs.String(), secondToken)
}

func TestAuthChainHangTimesOut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	b := startChain(t, timeout)

	start := time.Now()
	_, err := b.chain.Authenticate(authRequest("X-Test", "hang-second", "Authorization", "Bearer "+secondToken))
	took := time.Since(start)
	authError(t, err, "second", "timeout")
	require.GreaterOrEqual(t, took, timeout)
	require.Less(t, took, timeout+2*time.Second, "the timeout bounds the call")
	require.Equal(t, 1.0, counter(t, b.chain.Collectors()[0], "second"))

	// A hung call does not poison the plugin for the next request.
	sub, err := b.chain.Authenticate(authRequest("Authorization", "Bearer "+secondToken))
	require.NoError(t, err)
	require.Equal(t, "second-user", sub.ID)

	// The caller's own cancellation ends the wait too, as an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = b.chain.Authenticate(authRequest("Authorization", "Bearer "+firstToken).WithContext(ctx))
	require.Error(t, err)
}

func TestStartAuthenticatorsFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := authSpec("first", firstToken)
	tests := []struct {
		name  string
		specs []host.Spec
		names []string
		want  string
	}{
		{"no names", []host.Spec{good}, nil, "no authenticators listed"},
		{"unknown name", []host.Spec{good}, []string{"first", "ldap"}, `"ldap" is not a configured plugin`},
		{"listed twice", []host.Spec{good}, []string{"first", "first"}, "listed twice"},
		{"wrong checksum", []host.Spec{{Name: "first", Path: authTestPath, SHA256: testPluginSum}}, []string{"first"}, "refusing to start"},
		{"no checksum", []host.Spec{{Name: "first", Path: authTestPath}}, []string{"first"}, "no sha256"},
		{"step handler as authenticator", []host.Spec{{Name: "testp", Path: testPluginPath, SHA256: testPluginSum}}, []string{"testp"}, "does not serve the authenticator protocol"},
		{"config refused", []host.Spec{{Name: "first", Path: authTestPath, SHA256: authTestSum}}, []string{"first"}, "Configure refused its config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			chain, err := host.StartAuthenticators(ctx, tt.specs, tt.names, host.AuthOptions{})
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, chain)
		})
	}

	// The other way round: an authenticator is not a step handler.
	_, err := host.Start(ctx, []host.Spec{{Name: "authp", Path: authTestPath, SHA256: authTestSum}}, host.Options{})
	require.ErrorContains(t, err, "does not serve the step-handler protocol")
}

func TestAuthChainAfterClose(t *testing.T) {
	t.Parallel()
	b := startChain(t, 0)
	b.chain.Close()
	_, err := b.chain.Authenticate(authRequest("Authorization", "Bearer "+firstToken))
	require.ErrorIs(t, err, host.ErrStopped)
}
