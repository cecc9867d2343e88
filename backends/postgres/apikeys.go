package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

const apiKeyColumns = `id, subject, roles, namespaces, key_sha256, created_at, created_by, expires_at, revoked_at, coalesce(revoked_by, '')`

func scanAPIKey(sc pgx.Row) (*backends.APIKey, error) {
	var k backends.APIKey
	if err := sc.Scan(&k.ID, &k.Subject, &k.Roles, &k.Namespaces, &k.Hash, &k.CreatedAt, &k.CreatedBy,
		&k.ExpiresAt, &k.RevokedAt, &k.RevokedBy); err != nil {
		return nil, err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	for _, t := range []*time.Time{k.ExpiresAt, k.RevokedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	if k.Roles == nil {
		k.Roles = []string{}
	}
	if k.Namespaces == nil {
		k.Namespaces = []string{}
	}
	return &k, nil
}

func getAPIKey(ctx context.Context, q querier, where string, arg any) (*backends.APIKey, error) {
	k, err := scanAPIKey(q.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, backends.ErrNotFound
	}
	return k, err
}

// CreateAPIKey implements backends.Store.
func (s *Store) CreateAPIKey(ctx context.Context, p *backends.NewAPIKeyParams) (_ *backends.APIKey, rerr error) {
	defer classifyErr(&rerr)
	var key *backends.APIKey
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO api_keys (id, subject, roles, namespaces, key_sha256, created_at, created_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			p.ID, p.Subject, nonNil(p.Roles), nonNil(p.Namespaces), p.Hash, ts(p.Now), p.Actor, nullTime(p.ExpiresAt)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES ($1, $2, $3, $4, $5)`,
			p.ID, backends.APIKeyCreated, p.Actor, ts(p.Now), p.Detail()); err != nil {
			return err
		}
		var err error
		key, err = getAPIKey(ctx, tx, `id = $1`, p.ID)
		return err
	})
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && pgErr.SQLState() == "23505" {
		err = fmt.Errorf("an API key with this id or hash exists: %w", backends.ErrDuplicate)
	}
	if err != nil {
		return nil, fmt.Errorf("creating API key %s: %w", p.ID, err)
	}
	return key, nil
}

// APIKeyByHash implements backends.Store.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (_ *backends.APIKey, rerr error) {
	defer classifyErr(&rerr)
	k, err := getAPIKey(ctx, s.pool, `key_sha256 = $1`, hash)
	if err != nil {
		return nil, fmt.Errorf("looking up an API key: %w", err)
	}
	return k, nil
}

// ListAPIKeys implements backends.Store.
func (s *Store) ListAPIKeys(ctx context.Context) (_ []*backends.APIKey, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	keys := []*backends.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing API keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey implements backends.Store. The row lock orders concurrent
// revocations: the second sees the first's and writes nothing.
func (s *Store) RevokeAPIKey(ctx context.Context, id, actor string, now time.Time) (_ *backends.APIKey, _ bool, rerr error) {
	defer classifyErr(&rerr)
	var (
		key     *backends.APIKey
		revoked bool
	)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		key, revoked = nil, false
		k, err := getAPIKey(ctx, tx, `id = $1 FOR UPDATE`, id)
		if err != nil {
			return err
		}
		if k.RevokedAt != nil {
			key = k
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $2, revoked_by = $3 WHERE id = $1`, id, ts(now), actor); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES ($1, $2, $3, $4, '')`,
			id, backends.APIKeyRevoked, actor, ts(now)); err != nil {
			return err
		}
		revoked = true
		key, err = getAPIKey(ctx, tx, `id = $1`, id)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("revoking API key %s: %w", id, err)
	}
	return key, revoked, nil
}

// ListAPIKeyEvents implements backends.Store.
func (s *Store) ListAPIKeyEvents(ctx context.Context, id string) (_ []*backends.APIKeyEvent, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT id, key_id, action, actor, at, detail FROM api_key_events
		WHERE $1 = '' OR key_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("listing API key events: %w", err)
	}
	defer rows.Close()
	events := []*backends.APIKeyEvent{}
	for rows.Next() {
		var e backends.APIKeyEvent
		if err := rows.Scan(&e.ID, &e.KeyID, &e.Action, &e.Actor, &e.At, &e.Detail); err != nil {
			return nil, fmt.Errorf("listing API key events: %w", err)
		}
		e.At = e.At.UTC()
		events = append(events, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API key events: %w", err)
	}
	return events, nil
}
