package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/policy"
)

// nodesServer serves the API over a registry of three nodes: node-a
// leading, node-b dead, node-c stopped. With a key, the default policy
// decides and the key's subject has roles.
func nodesServer(t *testing.T, key string, roles ...string) string {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, tempDB(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	now := engine.RealClock{}.Now()
	for _, n := range []*backends.Node{
		{ID: "node-a", Address: "http://10.0.0.1:8080", Version: "1.0.0", Workers: 16, StartedAt: now, LastSeen: now},
		{ID: "node-b", Address: "http://10.0.0.2:8080", Version: "1.0.0", Workers: 8, StartedAt: now, LastSeen: now.Add(-time.Minute)},
		{ID: "node-c", Address: "http://10.0.0.3:8080", Version: "0.9.0", Workers: 4, StartedAt: now, LastSeen: now},
	} {
		require.NoError(t, store.RegisterNode(ctx, n))
	}
	require.NoError(t, store.StopNode(ctx, "node-c", now))
	_, err = store.TryLeadership(ctx, "node-a", time.Hour, now)
	require.NoError(t, err)

	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(nil), Registry: builtin.NewRegistry()})
	require.NoError(t, err)
	cfg := api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}}
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		authn, err := api.NewKeyAuthenticator(hex.EncodeToString(sum[:]), api.Subject{ID: "someone", Roles: roles})
		require.NoError(t, err)
		authz, err := policy.Default(policy.WithDecisionLog(io.Discard))
		require.NoError(t, err)
		t.Cleanup(func() { _ = authz.Close() })
		cfg.Authenticator, cfg.Authorizer = authn, authz
	}
	srv, err := api.New(cfg)
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestNodesCommand(t *testing.T) {
	t.Parallel()
	server := nodesServer(t, "")

	r := runCLI(t, "nodes", "--server", server)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, containsLine(r.stdout, "leader:", "node-a", "(epoch", "1)"), r.stdout)
	require.True(t, containsLine(r.stdout, "ID", "STATE", "ADDRESS", "VERSION", "WORKERS", "STARTED", "LAST", "SEEN"), r.stdout)
	require.True(t, containsLine(r.stdout, "*", "node-a", "alive", "http://10.0.0.1:8080", "1.0.0", "16"), r.stdout)
	require.True(t, containsLine(r.stdout, "node-b", "dead", "http://10.0.0.2:8080"), r.stdout)
	require.True(t, containsLine(r.stdout, "node-c", "stopped", "http://10.0.0.3:8080", "0.9.0", "4"), r.stdout)

	r = runCLI(t, "nodes", "--server", server, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var v apiNodes
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
	require.Equal(t, "node-a", v.Leader)
	require.Len(t, v.Nodes, 3)
	require.Equal(t, []string{"alive", "dead", "stopped"}, []string{v.Nodes[0].State, v.Nodes[1].State, v.Nodes[2].State})
	require.True(t, v.Nodes[0].Leader)

	r = runCLI(t, "nodes", "extra", "--server", server)
	require.Equal(t, 2, r.code, "no arguments")
	r = runCLI(t, "nodes", "--server", "http://127.0.0.1:1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "cannot reach taskerd at http://127.0.0.1:1")
}

func TestNodesCommandPolicy(t *testing.T) {
	t.Parallel()
	viewer := nodesServer(t, "viewer-key", "viewer")
	r := runCLI(t, "nodes", "--server", viewer, "--token", "viewer-key")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "node-a")

	operator := nodesServer(t, "operator-key", "operator")
	r = runCLI(t, "nodes", "--server", operator, "--token", "operator-key")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "403 forbidden")
	require.Contains(t, r.stderr, "node:index is not allowed")
	require.Empty(t, r.stdout)
}

// The retention block's defaults: finished tasks are kept forever,
// schedule firings 90 days; a block sets either alone.
func TestClusterSettingsRetentionDefaults(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for name, tt := range map[string]struct {
		src  string
		want config.Retention
	}{
		"no file":        {"", config.Retention{ScheduleFirings: 90 * day}},
		"no block":       {"listen = \":8080\"\n", config.Retention{ScheduleFirings: 90 * day}},
		"empty block":    {"retention {\n}\n", config.Retention{ScheduleFirings: 90 * day}},
		"tasks only":     {"retention {\n  finished_tasks = \"30d\"\n}\n", config.Retention{FinishedTasks: 30 * day, ScheduleFirings: 90 * day}},
		"firings only":   {"retention {\n  schedule_firings = \"7d\"\n}\n", config.Retention{ScheduleFirings: 7 * day}},
		"firings longer": {"retention {\n  schedule_firings = \"3650d\"\n}\n", config.Retention{ScheduleFirings: 3650 * day}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var cfg *config.Config
			if tt.src != "" {
				var err error
				cfg, err = config.Parse("taskerd.hcl", []byte(tt.src))
				require.NoError(t, err)
			}
			_, r := clusterSettings(cfg)
			require.Equal(t, tt.want, r)
		})
	}
}
