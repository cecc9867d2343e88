package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Listing is the registry as a reader sees it at an instant.
type Listing struct {
	// Leader is the node whose leader lease is live at that instant; ""
	// when none is (the leader died and nobody took over yet).
	Leader string
	Epoch  int64
	Nodes  []NodeView
}

// NodeView is a node with what the reader concludes of it.
type NodeView struct {
	backends.Node
	State  backends.NodeState
	Leader bool
}

// List reads the registry and the leader lease and judges each node at
// now: dead when last seen deadAfter or more before (DeadAfter of the
// reader's own heartbeat).
func List(ctx context.Context, store backends.NodeStore, now time.Time, deadAfter time.Duration) (*Listing, error) {
	nodes, err := store.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	l, err := store.CurrentLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the leader: %w", err)
	}
	out := &Listing{Epoch: l.Epoch, Nodes: make([]NodeView, 0, len(nodes))}
	if l.Leader != "" && l.ExpiresAt.After(now) {
		out.Leader = l.Leader
	}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, NodeView{Node: *n, State: n.StateAt(now, deadAfter), Leader: n.ID == out.Leader})
	}
	return out, nil
}
