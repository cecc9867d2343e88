package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// RegisterNode implements backends.Store.
func (s *Store) RegisterNode(ctx context.Context, n *backends.Node) error {
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO nodes (id, address, version, workers, started_at, last_seen, stopped_at)
			VALUES (?, ?, ?, ?, ?, ?, NULL)
			ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
				workers = excluded.workers, started_at = excluded.started_at,
				last_seen = excluded.last_seen, stopped_at = NULL`,
			n.ID, n.Address, n.Version, n.Workers, micros(n.StartedAt), micros(n.LastSeen))
		return err
	})
	if err != nil {
		return fmt.Errorf("registering node %s: %w", n.ID, err)
	}
	return nil
}

// HeartbeatNode implements backends.Store.
func (s *Store) HeartbeatNode(ctx context.Context, id string, now time.Time) error {
	return s.updateNode(ctx, id, "heartbeating", `UPDATE nodes SET last_seen = ?, stopped_at = NULL WHERE id = ?`, micros(now), id)
}

// StopNode implements backends.Store.
func (s *Store) StopNode(ctx context.Context, id string, now time.Time) error {
	return s.updateNode(ctx, id, "stopping", `UPDATE nodes SET stopped_at = ? WHERE id = ?`, micros(now), id)
}

// updateNode runs an UPDATE of one node's row: ErrNotFound if none.
func (s *Store) updateNode(ctx context.Context, id, what, query string, args ...any) error {
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return backends.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s node %s: %w", what, id, err)
	}
	return nil
}

// ListNodes implements backends.Store.
func (s *Store) ListNodes(ctx context.Context) (_ []*backends.Node, rerr error) {
	defer classifyErr(&rerr)
	var out []*backends.Node
	err := s.read(ctx, func(q querier) error {
		out = []*backends.Node{}
		rows, err := q.QueryContext(ctx, `SELECT id, address, version, workers, started_at, last_seen, stopped_at
			FROM nodes ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				n                 backends.Node
				started, lastSeen int64
				stopped           sql.NullInt64
			)
			if err := rows.Scan(&n.ID, &n.Address, &n.Version, &n.Workers, &started, &lastSeen, &stopped); err != nil {
				return err
			}
			n.StartedAt, n.LastSeen, n.StoppedAt = fromMicros(started), fromMicros(lastSeen), nullTime(stopped)
			out = append(out, &n)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return out, nil
}

// PruneNodes implements backends.Store.
func (s *Store) PruneNodes(ctx context.Context, lastSeenBefore time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE last_seen < ?`, micros(lastSeenBefore))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pruning nodes: %w", err)
	}
	return int(n), nil
}

// TryLeadership implements backends.Store: the UPSERT's WHERE is the rule
// (free, expired, or already ours); when it refuses, the row is read back
// in the same transaction.
func (s *Store) TryLeadership(ctx context.Context, nodeID string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	var l *backends.Leadership
	err := s.write(ctx, func(tx querier) (err error) {
		l, err = tryLeadership(ctx, tx, nodeID, ttl, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("trying leadership for node %s: %w", nodeID, err)
	}
	return l, nil
}

// Beat implements backends.Store.
func (s *Store) Beat(ctx context.Context, id string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	var l *backends.Leadership
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen = ?, stopped_at = NULL WHERE id = ?`, micros(now), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
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
func tryLeadership(ctx context.Context, tx querier, nodeID string, ttl time.Duration, now time.Time) (*backends.Leadership, error) {
	var (
		l       backends.Leadership
		expires int64
	)
	err := tx.QueryRowContext(ctx, `INSERT INTO leader_lease (name, holder, epoch, expires_at) VALUES ('leader', ?1, 1, ?2)
		ON CONFLICT (name) DO UPDATE SET
			epoch = CASE WHEN leader_lease.holder = excluded.holder AND leader_lease.expires_at > ?3
				THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END,
			holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leader_lease.holder = excluded.holder OR leader_lease.expires_at <= ?3
		RETURNING holder, epoch, expires_at`, nodeID, micros(now.Add(ttl)), micros(now)).Scan(&l.Leader, &l.Epoch, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.QueryRowContext(ctx, `SELECT holder, epoch, expires_at FROM leader_lease WHERE name = 'leader'`).
			Scan(&l.Leader, &l.Epoch, &expires)
	}
	if err != nil {
		return nil, err
	}
	l.ExpiresAt = fromMicros(expires)
	l.IsLeader = l.Leader == nodeID && l.ExpiresAt.After(now)
	return &l, nil
}

// CurrentLeader implements backends.Store.
func (s *Store) CurrentLeader(ctx context.Context) (_ *backends.Leadership, rerr error) {
	defer classifyErr(&rerr)
	var (
		l       backends.Leadership
		expires int64
	)
	err := s.rq().QueryRowContext(ctx, `SELECT holder, epoch, expires_at FROM leader_lease WHERE name = 'leader'`).
		Scan(&l.Leader, &l.Epoch, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return &l, nil
	case err != nil:
		return nil, fmt.Errorf("reading the leader lease: %w", err)
	}
	l.ExpiresAt = fromMicros(expires)
	return &l, nil
}

// ResignLeadership implements backends.Store.
func (s *Store) ResignLeadership(ctx context.Context, nodeID string, now time.Time) error {
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `UPDATE leader_lease SET expires_at = ? WHERE name = 'leader' AND holder = ? AND expires_at > ?`,
			micros(now), nodeID, micros(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("resigning leadership of node %s: %w", nodeID, err)
	}
	return nil
}

// DeleteFinishedTasks implements backends.Store. The foreign keys cascade
// from a task to its steps, edges, transitions and events. A cancelled
// task whose step is still running (its handler has not reported) is kept
// until the step ends. The task with
// the highest id is never deleted: tasks.id is a plain rowid, which SQLite
// hands out as max(id)+1, so deleting the newest task would give its id
// (and its steps') to the next task created.
func (s *Store) DeleteFinishedTasks(ctx context.Context, finishedBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id IN (
				SELECT id FROM tasks
				WHERE state IN ('complete', 'cancelled', 'resolved_manually') AND updated_at < ?
					AND id < (SELECT max(id) FROM tasks)
					AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = tasks.id AND s.state = 'in_progress')
				ORDER BY updated_at, id LIMIT ?)`, micros(finishedBefore), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting finished tasks: %w", err)
	}
	return int(n), nil
}
