package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

type servedNodes struct {
	Leader string `json:"leader"`
	Nodes  []struct {
		ID      string `json:"id"`
		Address string `json:"address"`
		State   string `json:"state"`
		Leader  bool   `json:"leader"`
	} `json:"nodes"`
}

func (s *served) nodes(t *testing.T) servedNodes {
	t.Helper()
	var v servedNodes
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/nodes", &v))
	return v
}

func (v servedNodes) states() map[string]string {
	out := map[string]string{}
	for _, n := range v.Nodes {
		out[n.ID] = n.State
	}
	return out
}

// Two serve nodes on one PostgreSQL database register themselves and
// agree on one leader; the leader's clean stop hands the leadership over
// at once and lists it as stopped.
func TestServeNodesShareOneLeader(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	conf := filepath.Join(t.TempDir(), "taskerd.hcl")
	require.NoError(t, os.WriteFile(conf, []byte("cluster {\n  heartbeat = \"200ms\"\n}\nretention {\n  finished_tasks = \"30d\"\n}\n"), 0o644))
	start := func(id string) *served {
		return startServe(t, bin, "--config", conf, "--db", dsn, "--workflows", dir, "--node-id", id)
	}
	a := start("node-a")
	b := start("node-b")

	var v servedNodes
	require.Eventually(t, func() bool {
		v = b.nodes(t)
		return len(v.Nodes) == 2 && v.Leader != ""
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, map[string]string{"node-a": "alive", "node-b": "alive"}, v.states())
	require.Equal(t, "node-a", v.Leader, "the first node up takes the free lease")
	for _, n := range v.Nodes {
		require.Equal(t, n.ID == "node-a", n.Leader)
	}
	require.Equal(t, a.url, v.Nodes[0].Address, "the address defaults to the listen address")

	require.NoError(t, a.stop(t, syscall.SIGTERM))
	require.Eventually(t, func() bool {
		v = b.nodes(t)
		return v.Leader == "node-b" && v.states()["node-a"] == "stopped"
	}, 30*time.Second, 20*time.Millisecond, "node-b leads once node-a left: %+v", v)
	require.NoError(t, b.stop(t, syscall.SIGTERM))
}

// On SQLite the one node is its own leader.
func TestServeSQLiteNodeLeadsItself(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s := startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "taskerd.db"), "--workflows", dir, "--node-id", "solo")
	v := s.nodes(t)
	require.Equal(t, "solo", v.Leader)
	require.Equal(t, map[string]string{"solo": "alive"}, v.states())
	res, err := http.Get(s.url + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), "taskerd_cluster_is_leader 1")
	require.Contains(t, string(body), `taskerd_cluster_nodes{state="alive"} 1`)
	require.Contains(t, string(body), "taskerd_retention_deleted_schedule_firings_total 0")
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
