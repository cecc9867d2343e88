package backends

import (
	"context"
	"fmt"
	"time"
)

// API keys (issue 15): credentials people create, list and revoke with
// `taskerd keys`. They live in the database, so that every node of a
// PostgreSQL cluster accepts the same keys and a revocation reaches all of
// them on their next request. A store keeps only the key's SHA-256, never
// the key.

// APIKey is a stored API key. Revoked and expired keys stay (the audit
// needs them); Usable says whether one still authenticates.
type APIKey struct {
	// ID is the key's public name: printed by create and list, given to
	// revoke. It is not secret and does not authenticate.
	ID      string
	Subject string
	// Roles are the subject's roles (the default policy knows admin,
	// operator, viewer and metrics).
	Roles []string
	// Namespaces scope an operator (claims.namespaces); may be empty.
	Namespaces []string
	// Hash is the hex SHA-256 of the key (lower case).
	Hash      string
	CreatedAt time.Time
	CreatedBy string
	ExpiresAt *time.Time
	RevokedAt *time.Time
	RevokedBy string
}

// Usable reports why the key does not authenticate at now (revoked, or
// expired: now at or past ExpiresAt), or nil.
func (k *APIKey) Usable(now time.Time) error {
	switch {
	case k.RevokedAt != nil:
		return fmt.Errorf("API key %s was revoked at %s", k.ID, k.RevokedAt.Format(time.RFC3339))
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return fmt.Errorf("API key %s expired at %s", k.ID, k.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// NewAPIKeyParams creates a key.
type NewAPIKeyParams struct {
	ID         string
	Subject    string
	Roles      []string
	Namespaces []string
	Hash       string
	ExpiresAt  *time.Time
	// Actor is who creates it ("cli:alice"), for CreatedBy and the audit.
	Actor string
	Now   time.Time
}

// API key audit actions.
const (
	APIKeyCreated = "created"
	APIKeyRevoked = "revoked"
)

// APIKeyEvent is one row of the API keys' audit trail.
type APIKeyEvent struct {
	ID     int64
	KeyID  string
	Action string // APIKeyCreated or APIKeyRevoked
	Actor  string
	At     time.Time
	// Detail describes the key as it was created (subject, roles,
	// namespaces, expiry) or is empty. Never the key or its hash.
	Detail string
}

// KeyStore is the API key part of Store. Every method is one transaction.
type KeyStore interface {
	// CreateAPIKey stores a key and its "created" audit row. ErrDuplicate
	// when the id or the hash is taken (nothing stored).
	CreateAPIKey(ctx context.Context, p *NewAPIKeyParams) (*APIKey, error)
	// APIKeyByHash returns the key whose hash is hash, revoked or expired
	// ones included (the caller must check Usable), or ErrNotFound.
	APIKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// ListAPIKeys returns every key, oldest first (created_at, then id).
	ListAPIKeys(ctx context.Context) ([]*APIKey, error)
	// RevokeAPIKey revokes the key id at now and writes a "revoked" audit
	// row, returning the key and revoked = true. A key already revoked is
	// returned as it is with revoked = false and nothing written (the first
	// revocation's time and actor stay). ErrNotFound for an unknown id.
	RevokeAPIKey(ctx context.Context, id, actor string, now time.Time) (key *APIKey, revoked bool, err error)
	// ListAPIKeyEvents returns the audit rows of key id (every key's when
	// id is ""), in the order written.
	ListAPIKeyEvents(ctx context.Context, id string) ([]*APIKeyEvent, error)
}

// Detail is the audit detail of the key's creation: what it was created
// as. Both backends write this text.
func (p *NewAPIKeyParams) Detail() string {
	d := fmt.Sprintf("subject=%q roles=%q namespaces=%q", p.Subject, p.Roles, p.Namespaces)
	if p.ExpiresAt != nil {
		d += " expires=" + p.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return d
}
