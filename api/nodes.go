package api

import (
	"net/http"
	"time"

	"github.com/taskerd/taskerd/internal/cluster"
)

// nodesView is GET /v1/nodes: the registry as this node judges it now.
type nodesView struct {
	// Leader is the node whose leader lease is live, or "" (none: the
	// leader died and no node took over yet).
	Leader string     `json:"leader"`
	Epoch  int64      `json:"epoch"`
	Nodes  []nodeInfo `json:"nodes"`
}

type nodeInfo struct {
	ID        string     `json:"id"`
	Address   string     `json:"address"`
	Version   string     `json:"version"`
	Workers   int        `json:"workers"`
	StartedAt time.Time  `json:"started_at"`
	LastSeen  time.Time  `json:"last_seen"`
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
	// State: alive, dead (not seen for NodeDeadAfter) or stopped (left
	// cleanly).
	State  string `json:"state"`
	Leader bool   `json:"leader"`
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "node:index", Resource{Type: "node"}); err != nil {
		return err
	}
	l, err := cluster.List(r.Context(), s.store, s.now(), s.nodeDeadAfter)
	if err != nil {
		return err
	}
	v := nodesView{Leader: l.Leader, Epoch: l.Epoch, Nodes: make([]nodeInfo, 0, len(l.Nodes))}
	for _, n := range l.Nodes {
		v.Nodes = append(v.Nodes, nodeInfo{ID: n.ID, Address: n.Address, Version: n.Version, Workers: n.Workers,
			StartedAt: n.StartedAt, LastSeen: n.LastSeen, StoppedAt: n.StoppedAt, State: string(n.State), Leader: n.Leader})
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
