// Package cluster is what makes several `taskerd serve` nodes on one
// database a cluster: each node registers itself in the store's node
// registry and heartbeats; one node, the leader, holds the store's leader
// lease and does the maintenance no two nodes should do at once: it finds
// the nodes that stopped heartbeating and recovers their leases at once
// (not at their expiry), it recovers expired leases (through the engine's
// Config.Leader), it deletes old finished tasks and old schedule firings
// (retention), and it reports the cluster's gauges. On SQLite the one node
// is its own leader.
//
// It lives apart from engine because it is the daemon's policy, not the
// orchestrator's: `taskerd run` and the engine's tests run one engine with
// no registry, and the engine only needs to be told whether it leads. It
// is internal because its only user is cmd/taskerd (and the API's listing,
// through List).
//
// Every instant comes from Config.Clock, and Tick does one round, so that
// tests drive heartbeats, deaths and takeovers with a fake clock instead
// of sleeping.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// Defaults for Config.
const (
	DefaultHeartbeat = 2 * time.Second
	// DeadHeartbeats: a node last seen this many heartbeats ago is dead,
	// and the leader lease lives this many heartbeats without renewal.
	DeadHeartbeats        = 3
	DefaultRetentionBatch = 500
	// DefaultForgetAfter is how long a dead or stopped node stays listed.
	DefaultForgetAfter = 24 * time.Hour
)

// Store is what a node's membership needs of the database: the node
// registry, the leader lease and the retention of tasks, and the deletion
// of old schedule firings.
type Store interface {
	backends.NodeStore
	DeleteScheduleFirings(ctx context.Context, createdBefore time.Time, limit int) (int, error)
}

// Config configures a node's membership.
type Config struct {
	Store Store
	// Node describes this node; ID is the engine's NodeID (its leases'
	// owner). StartedAt and LastSeen are set by Start.
	Node backends.Node
	// Heartbeat is the interval of heartbeats and leadership renewals
	// (default DefaultHeartbeat).
	Heartbeat time.Duration
	// Retention: finished tasks whose last change is older than this are
	// deleted by the leader; 0 keeps them forever.
	Retention time.Duration
	// FiringRetention: schedule firings recorded longer ago than this are
	// deleted by the leader (Store.DeleteScheduleFirings, which keeps each
	// schedule's last firing and those whose task is unfinished); 0 keeps
	// them forever.
	FiringRetention time.Duration
	// RetentionBatch is how many tasks, or firings, one retention
	// transaction deletes (default DefaultRetentionBatch). One round
	// deletes batches for at most half a heartbeat, so that retention
	// never delays a heartbeat.
	RetentionBatch int
	// ForgetAfter: the leader deletes the rows of nodes not seen for this
	// long (default DefaultForgetAfter).
	ForgetAfter time.Duration
	// RecoverNode recovers the leases of a dead node, at most one batch
	// per call, and says how many steps it recovered: the engine's
	// RecoverNodeLeases (which publishes the events). Nil: the store's
	// RecoverNodeLeases, batches of 100.
	RecoverNode func(ctx context.Context, nodeID string) (int, error)
	// RecoverBatch is RecoverNode's batch (a full batch calls it again).
	RecoverBatch int
	// Clock defaults to engine.RealClock.
	Clock  engine.Clock
	Logger *slog.Logger
}

// Cluster is one node's membership. Start it, then Run it.
type Cluster struct {
	cfg       Config
	clock     engine.Clock
	log       *slog.Logger
	heartbeat time.Duration

	mu         sync.Mutex
	registered bool
	leading    bool      // the last TryLeadership answered yes
	leaseUntil time.Time // and until when
	epoch      int64
	leader     string

	// cleared: the nodes, gone, whose leases the leader found none left
	// of, by the last_seen it saw then: they are not asked again each
	// round unless they come back and go again. The leader's goroutine
	// alone uses it.
	cleared map[string]time.Time

	isLeader prometheus.Gauge
	nodes    *prometheus.GaugeVec
	deleted  prometheus.Counter
	recov    prometheus.Counter
	firings  prometheus.Counter
}

// New returns a node's membership; it does nothing until Start.
func New(cfg Config) (*Cluster, error) {
	if cfg.Store == nil {
		return nil, errors.New("cluster: Config.Store is required")
	}
	if cfg.Node.ID == "" {
		return nil, errors.New("cluster: Config.Node.ID is required")
	}
	c := &Cluster{cfg: cfg, clock: cfg.Clock, log: cfg.Logger, heartbeat: cfg.Heartbeat, cleared: map[string]time.Time{}}
	if c.clock == nil {
		c.clock = engine.RealClock{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.heartbeat <= 0 {
		c.heartbeat = DefaultHeartbeat
	}
	if c.cfg.RetentionBatch <= 0 {
		c.cfg.RetentionBatch = DefaultRetentionBatch
	}
	if c.cfg.ForgetAfter <= 0 {
		c.cfg.ForgetAfter = DefaultForgetAfter
	}
	if c.cfg.RecoverBatch <= 0 {
		c.cfg.RecoverBatch = engine.DefaultRecoverBatch
	}
	if c.cfg.RecoverNode == nil {
		c.cfg.RecoverNode = func(ctx context.Context, nodeID string) (int, error) {
			rrs, err := c.cfg.Store.RecoverNodeLeases(ctx, &backends.RecoverNodeParams{Owner: nodeID, Limit: c.cfg.RecoverBatch, Now: c.clock.Now()})
			return len(rrs), err
		}
	}
	c.isLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "taskerd_cluster_is_leader", Help: "1 while this node holds the cluster's leader lease, else 0 (as of its last round).",
	})
	c.nodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "taskerd_cluster_nodes", Help: "Registered nodes by state (alive, dead, stopped), as the leader last saw them; reported by the leader only.",
	}, []string{"state"})
	c.deleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskerd_retention_deleted_tasks_total", Help: "Finished tasks this node deleted under the retention policy.",
	})
	c.recov = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskerd_cluster_recovered_steps_total", Help: "Steps of dead nodes whose leases this node recovered as leader.",
	})
	c.firings = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskerd_retention_deleted_schedule_firings_total", Help: "Schedule firings this node deleted under the retention policy.",
	})
	c.isLeader.Set(0)
	return c, nil
}

// Collectors are the cluster's metrics, for the node's registry.
func (c *Cluster) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.isLeader, c.nodes, c.deleted, c.recov, c.firings}
}

// DeadAfter is how long a node may go without a heartbeat before it is
// dead: DeadHeartbeats heartbeats. It is also the leader lease's ttl.
func (c *Cluster) DeadAfter() time.Duration { return DeadHeartbeats * c.heartbeat }

// IsLeader says whether this node leads now: its last renewal succeeded
// and has not expired by its own clock. It is the engine's Config.Leader.
func (c *Cluster) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading && c.clock.Now().Before(c.leaseUntil)
}

// Start registers the node and does its first round, so that a leader is
// known (on SQLite: this node) before the engine starts. A database that
// does not answer fails it.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.register(ctx, c.clock.Now()); err != nil {
		return err
	}
	c.Tick(ctx)
	return nil
}

func (c *Cluster) register(ctx context.Context, now time.Time) error {
	n := c.cfg.Node
	if n.StartedAt.IsZero() {
		n.StartedAt = now
		c.cfg.Node.StartedAt = now
	}
	n.LastSeen, n.StoppedAt = now, nil
	if err := c.cfg.Store.RegisterNode(ctx, &n); err != nil {
		return fmt.Errorf("registering node %s: %w", n.ID, err)
	}
	c.mu.Lock()
	c.registered = true
	c.mu.Unlock()
	return nil
}

// Run does a round every heartbeat until ctx is done. Call it after Start,
// and Stop once the engine stopped.
func (c *Cluster) Run(ctx context.Context) {
	t := time.NewTicker(c.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Tick(ctx)
		}
	}
}

// Stop leaves the cluster: it gives up the leadership at once (another
// node takes it on its next round) and records the node as stopped. Call
// it after the engine stopped, so that no handler of this node still runs.
func (c *Cluster) Stop(ctx context.Context) error {
	now := c.clock.Now()
	c.mu.Lock()
	c.leading = false
	c.mu.Unlock()
	c.isLeader.Set(0)
	err := c.cfg.Store.ResignLeadership(ctx, c.cfg.Node.ID, now)
	if serr := c.cfg.Store.StopNode(ctx, c.cfg.Node.ID, now); serr != nil && !errors.Is(serr, backends.ErrNotFound) {
		err = errors.Join(err, serr)
	}
	return err
}

// Tick is one round: heartbeat, leadership, and the leader's maintenance.
// Failures are logged; the next round tries again.
func (c *Cluster) Tick(ctx context.Context) {
	now := c.clock.Now()
	id := c.cfg.Node.ID
	// The heartbeat and the leadership lease in one transaction: an idle
	// node's round is one commit.
	l, err := c.cfg.Store.Beat(ctx, id, c.DeadAfter(), now)
	if errors.Is(err, backends.ErrNotFound) {
		// Pruned while it was away (or never registered): again.
		if err = c.register(ctx, now); err == nil {
			l, err = c.cfg.Store.TryLeadership(ctx, id, c.DeadAfter(), now)
		}
	}
	if err != nil {
		// The lease this node may hold keeps its expiry: IsLeader turns
		// false by itself when it passes.
		if ctx.Err() == nil {
			c.log.Error("heartbeating this node and renewing leadership", "node", id, "err", err)
		}
	} else {
		c.mu.Lock()
		was := c.leading && now.Before(c.leaseUntil)
		c.leading, c.leaseUntil, c.epoch, c.leader = l.IsLeader, l.ExpiresAt, l.Epoch, l.Leader
		c.mu.Unlock()
		switch {
		case l.IsLeader && !was:
			// A new term looks at every gone node afresh.
			c.cleared = map[string]time.Time{}
			c.log.Info("this node leads the cluster", "node", id, "epoch", l.Epoch)
		case !l.IsLeader && was:
			c.log.Warn("this node no longer leads the cluster", "node", id, "leader", l.Leader, "epoch", l.Epoch)
		}
	}
	if !c.IsLeader() {
		c.isLeader.Set(0)
		c.nodes.Reset()
		return
	}
	c.isLeader.Set(1)
	c.lead(ctx, now)
}

// lead is the leader's maintenance of one round.
func (c *Cluster) lead(ctx context.Context, now time.Time) {
	nodes, err := c.cfg.Store.ListNodes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("listing nodes", "err", err)
		}
		return
	}
	counts := map[backends.NodeState]int{backends.NodeAlive: 0, backends.NodeDead: 0, backends.NodeStopped: 0}
	listed := map[string]bool{}
	for _, n := range nodes {
		listed[n.ID] = true
		state := n.StateAt(now, c.DeadAfter())
		counts[state]++
		if n.ID == c.cfg.Node.ID || state == backends.NodeAlive {
			delete(c.cleared, n.ID)
			continue
		}
		if seen, ok := c.cleared[n.ID]; ok && seen.Equal(n.LastSeen) {
			continue
		}
		// A dead node's steps are recovered at once; a stopped one gave
		// its leases back itself, unless that failed: recovering them is
		// then what its lease expiry would do, earlier.
		c.recoverNode(ctx, n, state)
	}
	for id := range c.cleared {
		if !listed[id] {
			delete(c.cleared, id)
		}
	}
	for state, n := range counts {
		c.nodes.WithLabelValues(string(state)).Set(float64(n))
	}
	if pruned, err := c.cfg.Store.PruneNodes(ctx, now.Add(-c.cfg.ForgetAfter)); err != nil {
		if ctx.Err() == nil {
			c.log.Error("pruning nodes", "err", err)
		}
	} else if pruned > 0 {
		c.log.Info("forgot nodes not seen for long", "nodes", pruned, "after", c.cfg.ForgetAfter)
	}
	c.retain(ctx, now)
}

func (c *Cluster) recoverNode(ctx context.Context, n *backends.Node, state backends.NodeState) {
	for ctx.Err() == nil && c.IsLeader() {
		got, err := c.cfg.RecoverNode(ctx, n.ID)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Error("recovering the leases of a dead node", "dead_node", n.ID, "err", err)
			}
			return
		}
		if got > 0 {
			c.recov.Add(float64(got))
			c.log.Warn("recovered the leases of a node that is gone", "dead_node", n.ID, "state", state,
				"last_seen", n.LastSeen, "steps", got)
		}
		if got == 0 {
			c.cleared[n.ID] = n.LastSeen
		}
		if got < c.cfg.RecoverBatch {
			return
		}
	}
}

// retain deletes finished tasks older than their retention, then schedule
// firings older than theirs, a batch per transaction, for at most half a
// heartbeat in all (the next rounds go on). Each gets one batch per round
// at least, so that a backlog of tasks does not hold up the firings.
func (c *Cluster) retain(ctx context.Context, now time.Time) {
	budget := time.Now().Add(c.heartbeat / 2)
	if c.cfg.Retention > 0 {
		cutoff := now.Add(-c.cfg.Retention)
		c.deleteBatches(ctx, budget, func() (int, error) {
			return c.cfg.Store.DeleteFinishedTasks(ctx, cutoff, c.cfg.RetentionBatch)
		}, c.deleted, "finished tasks", "tasks", "finished_before", cutoff)
	}
	if c.cfg.FiringRetention > 0 {
		cutoff := now.Add(-c.cfg.FiringRetention)
		c.deleteBatches(ctx, budget, func() (int, error) {
			return c.cfg.Store.DeleteScheduleFirings(ctx, cutoff, c.cfg.RetentionBatch)
		}, c.firings, "schedule firings", "firings", "recorded_before", cutoff)
	}
}

// deleteBatches calls del until it deletes less than a batch, the budget
// is spent, or this node no longer leads, and counts and logs what went.
func (c *Cluster) deleteBatches(ctx context.Context, budget time.Time, del func() (int, error), counter prometheus.Counter,
	what, countKey, cutoffKey string, cutoff time.Time) {
	for ctx.Err() == nil && c.IsLeader() {
		n, err := del()
		if err != nil {
			if ctx.Err() == nil {
				c.log.Error("deleting "+what+" (retention)", "err", err)
			}
			return
		}
		if n > 0 {
			counter.Add(float64(n))
			c.log.Info("deleted "+what+" (retention)", countKey, n, cutoffKey, cutoff)
		}
		if n < c.cfg.RetentionBatch || time.Now().After(budget) {
			return
		}
	}
}
