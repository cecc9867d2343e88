package engine

import (
	"context"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// leads says whether this node does the cluster's lease recovery
// (Config.Leader).
func (e *Engine) leads() bool { return e.leader == nil || e.leader() }

// RecoverNodeLeases recovers, at once, the leases another node held, when
// the cluster's leader knows that node is gone (it stopped heartbeating):
// its running steps fail as lease_expired and retry under their policy,
// the ones it had claimed ahead go back to pending, as a lease expiry
// would do, without waiting for it. The events are published like this
// node's own. It says how many steps it recovered (at most RecoverBatch:
// call again while it returns that many).
func (e *Engine) RecoverNodeLeases(ctx context.Context, nodeID string) (int, error) {
	return e.recoverWith(ctx, "recovering the leases of a dead node", func(ctx context.Context, now time.Time) ([]*backends.RecordResult, error) {
		return e.store.RecoverNodeLeases(ctx, &backends.RecoverNodeParams{Owner: nodeID, Limit: e.recoverN, Now: now})
	})
}

// RecoverBatch is how many leases one recovery pass handles.
func (e *Engine) RecoverBatch() int { return e.recoverN }
