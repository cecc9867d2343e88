package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine"
)

// roleAuthn authenticates every request as one subject.
type roleAuthn struct{ subject api.Subject }

func (a roleAuthn) Authenticate(*http.Request) (*api.Subject, error) {
	s := a.subject
	return &s, nil
}

// registerNodes fills the registry: node-a alive and leading, node-b
// dead (unseen for a minute), node-c stopped.
func registerNodes(t *testing.T, store backends.Store) time.Time {
	t.Helper()
	ctx := context.Background()
	now := engine.RealClock{}.Now()
	started := now.Add(-time.Hour)
	for _, n := range []*backends.Node{
		{ID: "node-a", Address: "http://10.0.0.1:8080", Version: "1.0.0", Workers: 16, StartedAt: started, LastSeen: now},
		{ID: "node-b", Address: "http://10.0.0.2:8080", Version: "1.0.0", Workers: 8, StartedAt: started, LastSeen: now.Add(-time.Minute)},
		{ID: "node-c", Address: "http://10.0.0.3:8080", Version: "0.9.0", Workers: 4, StartedAt: started, LastSeen: now},
	} {
		require.NoError(t, store.RegisterNode(ctx, n))
	}
	require.NoError(t, store.StopNode(ctx, "node-c", now))
	l, err := store.TryLeadership(ctx, "node-a", time.Hour, now)
	require.NoError(t, err)
	require.True(t, l.IsLeader)
	return now
}

func TestListNodes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{noRun: true})
		r := c.do("GET", "/v1/nodes", nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `{"leader": "", "epoch": 0, "nodes": []}`, string(r.body), "an empty registry")

		now := registerNodes(t, store)
		r = c.do("GET", "/v1/nodes", nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		body := r.json(t)
		require.Equal(t, "node-a", body["leader"])
		require.EqualValues(t, 1, body["epoch"])
		nodes := body["nodes"].([]any)
		require.Len(t, nodes, 3)
		a := nodes[0].(map[string]any)
		require.Equal(t, map[string]any{
			"id": "node-a", "address": "http://10.0.0.1:8080", "version": "1.0.0", "workers": float64(16),
			"started_at": now.Add(-time.Hour).Format(time.RFC3339Nano), "last_seen": now.Format(time.RFC3339Nano),
			"state": "alive", "leader": true,
		}, a)
		b, cc := nodes[1].(map[string]any), nodes[2].(map[string]any)
		require.Equal(t, "node-b", b["id"])
		require.Equal(t, "dead", b["state"], "unseen for longer than three heartbeats")
		require.Equal(t, false, b["leader"])
		require.Equal(t, "node-c", cc["id"])
		require.Equal(t, "stopped", cc["state"])
		require.Equal(t, now.Format(time.RFC3339Nano), cc["stopped_at"])
	})
}

func TestListNodesPolicy(t *testing.T) {
	t.Parallel()
	store := storetest.SQLite(t)
	registerNodes(t, store)
	as := func(roles ...string) *client {
		return newClient(t, store, options{noRun: true, authz: defaultPolicy(t),
			authn: roleAuthn{api.Subject{ID: "someone", Roles: roles, Claims: json.RawMessage(`{"namespaces": ["default"]}`)}}})
	}
	for _, role := range []string{"admin", "viewer"} {
		r := as(role).do("GET", "/v1/nodes", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", role, r.body)
		require.Equal(t, "node-a", r.json(t)["leader"])
	}
	for _, roles := range [][]string{{"operator"}, {"metrics"}, {}} {
		r := as(roles...).do("GET", "/v1/nodes", nil)
		require.Equal(t, http.StatusForbidden, r.status, "%v: %s", roles, r.body)
		require.Equal(t, "forbidden", r.errorCode(t))
		require.Contains(t, string(r.body), "node:index is not allowed")
	}
	// A policy that fails is a deny, even one that said allow.
	seen := make(chan *api.AuthzRequest, 1)
	r := newClient(t, store, options{noRun: true, authz: fixedAuthz{allow: true, err: errors.New("rego eval error"), seen: seen}}).
		do("GET", "/v1/nodes", nil)
	require.Equal(t, http.StatusForbidden, r.status)
	req := <-seen
	require.Equal(t, "node:index", req.Action)
	require.Equal(t, api.Resource{Type: "node"}, req.Resource)
}
