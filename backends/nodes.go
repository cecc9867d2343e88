package backends

import (
	"context"
	"time"
)

// Nodes (issue: node registry, leader election, retention). Several
// `taskerd serve` nodes may share one PostgreSQL database; each registers
// itself and heartbeats, and one of them, the leader, holds a lease row
// that gives it the maintenance no two nodes should do at once: recovering
// the leases of nodes that died, deleting old finished tasks. On SQLite the
// one node is its own leader through the same row.

// NodeStore is the node registry, the leadership lease and retention.
type NodeStore interface {
	// RegisterNode inserts the node or, when its id is known (a restart
	// under the same id), replaces its row: StoppedAt is cleared.
	RegisterNode(ctx context.Context, n *Node) error
	// HeartbeatNode sets the node's LastSeen to now and clears StoppedAt.
	// ErrNotFound when the node is not registered (it was pruned while it
	// was away): the caller registers it again.
	HeartbeatNode(ctx context.Context, id string, now time.Time) error
	// StopNode records that the node left cleanly (StoppedAt = now).
	// ErrNotFound when it is not registered.
	StopNode(ctx context.Context, id string, now time.Time) error
	// ListNodes returns every registered node, ordered by id.
	ListNodes(ctx context.Context) ([]*Node, error)
	// PruneNodes deletes the nodes last seen before lastSeenBefore (dead or
	// stopped for long) and says how many it deleted.
	PruneNodes(ctx context.Context, lastSeenBefore time.Time) (int, error)

	// RecoverNodeLeases is RecoverExpiredLeases for up to p.Limit
	// in_progress steps leased to p.Owner, whatever their expiry: the node
	// is known to be gone. Same outcome, same events: a step whose handler
	// never started is released (pending, attempt not counted), one whose
	// cancel was requested becomes cancelled, the others fail with kind
	// lease_expired and are finalized. The owner's tokens are stale
	// afterwards (ErrLeaseLost).
	RecoverNodeLeases(ctx context.Context, p *RecoverNodeParams) ([]*RecordResult, error)

	// TryLeadership takes or renews the leadership lease for nodeID until
	// now+ttl, in one statement: it succeeds when the lease is free,
	// expired at or before now, or already held by nodeID. Epoch grows by
	// one each time the lease changes hands or is taken again after it
	// expired, so a leader's epoch names its term. The answer describes the
	// lease after the call, whoever holds it.
	TryLeadership(ctx context.Context, nodeID string, ttl time.Duration, now time.Time) (*Leadership, error)
	// Beat is HeartbeatNode then TryLeadership, in one transaction: a
	// node's round costs one commit (on SQLite, one flush of the disk an
	// edge device may count). ErrNotFound when the node is not
	// registered, and then nothing is written.
	Beat(ctx context.Context, id string, ttl time.Duration, now time.Time) (*Leadership, error)
	// CurrentLeader reads the lease without taking it: IsLeader is false,
	// Leader is "" when nobody ever held it. The reader compares ExpiresAt
	// with its own now to know whether the holder still leads.
	CurrentLeader(ctx context.Context) (*Leadership, error)
	// ResignLeadership ends nodeID's lease at now, if it holds it, so that
	// another node may take it at once (a clean shutdown).
	ResignLeadership(ctx context.Context, nodeID string, now time.Time) error

	// DeleteFinishedTasks deletes up to limit tasks whose state is finished
	// (complete, cancelled, resolved_manually) and whose last change
	// (UpdatedAt) is before finishedBefore, oldest first, with their steps,
	// edges, transitions and events, in one transaction. It says how many
	// tasks it deleted. Nothing else is touched: settings, API keys, event
	// cursors and dead letters stay.
	DeleteFinishedTasks(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
}

// Node is a registered node.
type Node struct {
	ID string
	// Address is where its API answers (for operators; no node calls it).
	Address   string
	Version   string
	Workers   int
	StartedAt time.Time
	LastSeen  time.Time
	// StoppedAt is when it left cleanly; nil while it runs (or died).
	StoppedAt *time.Time
}

// NodeState is what a reader concludes of a node at an instant.
type NodeState string

const (
	NodeAlive   NodeState = "alive"
	NodeDead    NodeState = "dead"
	NodeStopped NodeState = "stopped"
)

// StateAt says whether the node is alive at now: stopped if it left
// cleanly, dead if it was last seen deadAfter or more before now.
func (n *Node) StateAt(now time.Time, deadAfter time.Duration) NodeState {
	switch {
	case n.StoppedAt != nil:
		return NodeStopped
	case !n.LastSeen.After(now.Add(-deadAfter)):
		return NodeDead
	default:
		return NodeAlive
	}
}

// RecoverNodeParams selects the leases of one owner.
type RecoverNodeParams struct {
	Owner string
	Limit int
	Now   time.Time
}

// Leadership is the leader lease as TryLeadership left it.
type Leadership struct {
	// Leader holds the lease ("" if nobody ever did). It may have expired:
	// see ExpiresAt.
	Leader    string
	IsLeader  bool // the caller holds it now
	Epoch     int64
	ExpiresAt time.Time
}
