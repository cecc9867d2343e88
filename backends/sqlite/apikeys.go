package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

const apiKeyColumns = `id, subject, roles, namespaces, key_sha256, created_at, created_by, expires_at, revoked_at, revoked_by`

func scanAPIKey(sc scanner) (*backends.APIKey, error) {
	var (
		k                 backends.APIKey
		roles, namespaces string
		created           int64
		expires, revoked  sql.NullInt64
		revokedBy         sql.NullString
	)
	if err := sc.Scan(&k.ID, &k.Subject, &roles, &namespaces, &k.Hash, &created, &k.CreatedBy, &expires, &revoked, &revokedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(roles), &k.Roles); err != nil {
		return nil, fmt.Errorf("API key %s: roles: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(namespaces), &k.Namespaces); err != nil {
		return nil, fmt.Errorf("API key %s: namespaces: %w", k.ID, err)
	}
	k.CreatedAt = fromMicros(created)
	k.ExpiresAt = nullTime(expires)
	k.RevokedAt = nullTime(revoked)
	k.RevokedBy = revokedBy.String
	return &k, nil
}

func stringsJSON(v []string) (string, error) {
	if v == nil {
		v = []string{}
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func getAPIKey(ctx context.Context, q querier, where string, arg any) (*backends.APIKey, error) {
	k, err := scanAPIKey(q.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, backends.ErrNotFound
	}
	return k, err
}

// CreateAPIKey implements backends.Store.
func (s *Store) CreateAPIKey(ctx context.Context, p *backends.NewAPIKeyParams) (*backends.APIKey, error) {
	roles, err := stringsJSON(p.Roles)
	if err != nil {
		return nil, err
	}
	namespaces, err := stringsJSON(p.Namespaces)
	if err != nil {
		return nil, err
	}
	var expires any
	if p.ExpiresAt != nil {
		expires = micros(*p.ExpiresAt)
	}
	var key *backends.APIKey
	err = s.write(ctx, func(tx querier) error {
		// One writer: checking first cannot race.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE id = ? OR key_sha256 = ?`, p.ID, p.Hash).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("an API key with this id or hash exists: %w", backends.ErrDuplicate)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
			p.ID, p.Subject, roles, namespaces, p.Hash, micros(p.Now), p.Actor, expires); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES (?, ?, ?, ?, ?)`,
			p.ID, backends.APIKeyCreated, p.Actor, micros(p.Now), p.Detail()); err != nil {
			return err
		}
		key, err = getAPIKey(ctx, tx, `id = ?`, p.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating API key %s: %w", p.ID, err)
	}
	return key, nil
}

// APIKeyByHash implements backends.Store.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (_ *backends.APIKey, rerr error) {
	defer classifyErr(&rerr)
	k, err := getAPIKey(ctx, s.rq(), `key_sha256 = ?`, hash)
	if err != nil {
		return nil, fmt.Errorf("looking up an API key: %w", err)
	}
	return k, nil
}

// ListAPIKeys implements backends.Store.
func (s *Store) ListAPIKeys(ctx context.Context) (_ []*backends.APIKey, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.rq().QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, id`)
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

// RevokeAPIKey implements backends.Store.
func (s *Store) RevokeAPIKey(ctx context.Context, id, actor string, now time.Time) (*backends.APIKey, bool, error) {
	var (
		key     *backends.APIKey
		revoked bool
	)
	err := s.write(ctx, func(tx querier) error {
		k, err := getAPIKey(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		if k.RevokedAt != nil {
			key = k
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?`, micros(now), actor, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES (?, ?, ?, ?, '')`,
			id, backends.APIKeyRevoked, actor, micros(now)); err != nil {
			return err
		}
		revoked = true
		key, err = getAPIKey(ctx, tx, `id = ?`, id)
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
	rows, err := s.rq().QueryContext(ctx, `SELECT id, key_id, action, actor, at, detail FROM api_key_events
		WHERE ? = '' OR key_id = ? ORDER BY id`, id, id)
	if err != nil {
		return nil, fmt.Errorf("listing API key events: %w", err)
	}
	defer rows.Close()
	events := []*backends.APIKeyEvent{}
	for rows.Next() {
		var (
			e  backends.APIKeyEvent
			at int64
		)
		if err := rows.Scan(&e.ID, &e.KeyID, &e.Action, &e.Actor, &at, &e.Detail); err != nil {
			return nil, fmt.Errorf("listing API key events: %w", err)
		}
		e.At = fromMicros(at)
		events = append(events, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API key events: %w", err)
	}
	return events, nil
}
