package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// RegisterNode implements backends.Store.
func (s *Store) RegisterNode(ctx context.Context, n *backends.Node) (rerr error) {
	defer classifyErr(&rerr)
	_, err := s.pool.Exec(ctx, `INSERT INTO nodes (id, address, version, workers, started_at, last_seen, stopped_at)
		VALUES ($1, $2, $3, $4, $5, $6, NULL)
		ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
			workers = excluded.workers, started_at = excluded.started_at,
			last_seen = excluded.last_seen, stopped_at = NULL`,
		n.ID, n.Address, n.Version, n.Workers, ts(n.StartedAt), ts(n.LastSeen))
	if err != nil {
		return fmt.Errorf("registering node %s: %w", n.ID, err)
	}
	return nil
}

// HeartbeatNode implements backends.Store.
func (s *Store) HeartbeatNode(ctx context.Context, id string, now time.Time) error {
	return s.updateNode(ctx, id, "heartbeating", `UPDATE nodes SET last_seen = $1, stopped_at = NULL WHERE id = $2`, ts(now), id)
}

// StopNode implements backends.Store.
func (s *Store) StopNode(ctx context.Context, id string, now time.Time) error {
	return s.updateNode(ctx, id, "stopping", `UPDATE nodes SET stopped_at = $1 WHERE id = $2`, ts(now), id)
}

// updateNode runs an UPDATE of one node's row: ErrNotFound if none.
func (s *Store) updateNode(ctx context.Context, id, what, query string, args ...any) (rerr error) {
	defer classifyErr(&rerr)
	tag, err := s.pool.Exec(ctx, query, args...)
	if err == nil && tag.RowsAffected() == 0 {
		err = backends.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s node %s: %w", what, id, err)
	}
	return nil
}

// ListNodes implements backends.Store.
func (s *Store) ListNodes(ctx context.Context) (_ []*backends.Node, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT id, address, version, workers, started_at, last_seen, stopped_at
		FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*backends.Node, error) {
		var (
			n       backends.Node
			stopped *time.Time
		)
		if err := row.Scan(&n.ID, &n.Address, &n.Version, &n.Workers, &n.StartedAt, &n.LastSeen, &stopped); err != nil {
			return nil, err
		}
		n.StartedAt, n.LastSeen = n.StartedAt.UTC(), n.LastSeen.UTC()
		if stopped != nil {
			t := stopped.UTC()
			n.StoppedAt = &t
		}
		return &n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return out, nil
}

// PruneNodes implements backends.Store.
func (s *Store) PruneNodes(ctx context.Context, lastSeenBefore time.Time) (_ int, rerr error) {
	defer classifyErr(&rerr)
	tag, err := s.pool.Exec(ctx, `DELETE FROM nodes WHERE last_seen < $1`, ts(lastSeenBefore))
	if err != nil {
		return 0, fmt.Errorf("pruning nodes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// TryLeadership implements backends.Store: the UPSERT's WHERE is the rule
// (free, expired, or already ours). ON CONFLICT locks the row, so callers
// racing for it take turns; when the WHERE refuses, nothing is returned
// and the row, locked by this transaction, is read back.
func (s *Store) TryLeadership(ctx context.Context, nodeID string, ttl time.Duration, now time.Time) (_ *backends.Leadership, rerr error) {
	defer classifyErr(&rerr)
	var l *backends.Leadership
	err := s.tx(ctx, func(tx pgx.Tx) (err error) {
		l, err = tryLeadership(ctx, tx, nodeID, ttl, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("trying leadership for node %s: %w", nodeID, err)
	}
	return l, nil
}

// Beat implements backends.Store.
func (s *Store) Beat(ctx context.Context, id string, ttl time.Duration, now time.Time) (_ *backends.Leadership, rerr error) {
	defer classifyErr(&rerr)
	var l *backends.Leadership
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE nodes SET last_seen = $1, stopped_at = NULL WHERE id = $2`, ts(now), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return backends.ErrNotFound
		}
		l, err = tryLeadership(ctx, tx, id, ttl, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat of node %s: %w", id, err)
	}
	return l, nil
}

// tryLeadership is TryLeadership in tx: one statement takes or renews the
// lease, or, when another holds it, the lease is read as it is.
func tryLeadership(ctx context.Context, tx pgx.Tx, nodeID string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	var l backends.Leadership
	err := tx.QueryRow(ctx, `INSERT INTO leader_lease (name, holder, epoch, expires_at) VALUES ('leader', $1, 1, $2)
		ON CONFLICT (name) DO UPDATE SET
			epoch = CASE WHEN leader_lease.holder = excluded.holder AND leader_lease.expires_at > $3
				THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END,
			holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leader_lease.holder = excluded.holder OR leader_lease.expires_at <= $3
		RETURNING holder, epoch, expires_at`, nodeID, ts(now.Add(ttl)), ts(now)).Scan(&l.Leader, &l.Epoch, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, `SELECT holder, epoch, expires_at FROM leader_lease WHERE name = 'leader'`).
			Scan(&l.Leader, &l.Epoch, &l.ExpiresAt)
	}
	if err != nil {
		return nil, err
	}
	l.ExpiresAt = l.ExpiresAt.UTC()
	l.IsLeader = l.Leader == nodeID && l.ExpiresAt.After(now)
	return &l, nil
}

// CurrentLeader implements backends.Store.
func (s *Store) CurrentLeader(ctx context.Context) (_ *backends.Leadership, rerr error) {
	defer classifyErr(&rerr)
	var l backends.Leadership
	err := s.pool.QueryRow(ctx, `SELECT holder, epoch, expires_at FROM leader_lease WHERE name = 'leader'`).
		Scan(&l.Leader, &l.Epoch, &l.ExpiresAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return &l, nil
	case err != nil:
		return nil, fmt.Errorf("reading the leader lease: %w", err)
	}
	l.ExpiresAt = l.ExpiresAt.UTC()
	return &l, nil
}

// ResignLeadership implements backends.Store.
func (s *Store) ResignLeadership(ctx context.Context, nodeID string, now time.Time) (rerr error) {
	defer classifyErr(&rerr)
	_, err := s.pool.Exec(ctx, `UPDATE leader_lease SET expires_at = $1 WHERE name = 'leader' AND holder = $2 AND expires_at > $1`,
		ts(now), nodeID)
	if err != nil {
		return fmt.Errorf("resigning leadership of node %s: %w", nodeID, err)
	}
	return nil
}

// DeleteFinishedTasks implements backends.Store. The foreign keys cascade
// from a task to its steps, edges, transitions and events. A cancelled
// task whose step is still running (its handler has not reported) is kept
// until the step ends. SKIP LOCKED: a task being written right now is left
// for the next batch.
func (s *Store) DeleteFinishedTasks(ctx context.Context, finishedBefore time.Time, limit int) (_ int, rerr error) {
	defer classifyErr(&rerr)
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM tasks WHERE id IN (
			SELECT id FROM tasks
			WHERE state IN ('complete', 'cancelled', 'resolved_manually') AND updated_at < $1
				AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = tasks.id AND s.state = 'in_progress')
			ORDER BY updated_at, id LIMIT $2
			FOR UPDATE SKIP LOCKED)`, ts(finishedBefore), limit)
	if err != nil {
		return 0, fmt.Errorf("deleting finished tasks: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
