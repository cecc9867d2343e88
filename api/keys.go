package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// KeyChain is the API's authenticator outside auth mode none. A request's
// API key (X-API-Key, or an Authorization: Bearer token) is tried, in
// order, as:
//
//  1. the bootstrap admin key (Bootstrap; nil when auth { bootstrap =
//     false }), compared in memory;
//  2. a key of the database (Store; only keys beginning with KeyPrefix are
//     looked up): found and usable, it authenticates; found but revoked or
//     expired, the request is refused there (401), not passed on;
//  3. the authenticator plugins (Next), which also get every request that
//     carries no API key at all (a Basic credential, ...).
//
// A credential none of them takes is refused (401). A database that does
// not answer the lookup fails the request with an error matching
// backends.ErrUnavailable (the server answers 503), never letting it
// through. Nothing is cached: a revocation holds from the next request, on
// every node.
type KeyChain struct {
	Bootstrap *KeyAuthenticator
	Store     backends.KeyStore
	Next      Authenticator
	// Timeout bounds the database lookup (default DefaultStoreTimeout).
	Timeout time.Duration
	// Now is the clock expiry is checked against (default time.Now).
	Now func() time.Time
}

var _ Authenticator = (*KeyChain)(nil)

// ErrKeyRevoked and ErrKeyExpired are the errors of a known database key
// that no longer authenticates.
var (
	ErrKeyRevoked = errors.New("the API key is revoked")
	ErrKeyExpired = errors.New("the API key has expired")
)

// Authenticate implements Authenticator.
func (c *KeyChain) Authenticate(r *http.Request) (*Subject, error) {
	key := presentedKey(r)
	if key == "" {
		if c.Next != nil {
			return c.Next.Authenticate(r)
		}
		return nil, ErrNoCredentials
	}
	if c.Bootstrap != nil && c.Bootstrap.matches(key) {
		return c.Bootstrap.subjectCopy(), nil
	}
	if c.Store != nil && strings.HasPrefix(key, KeyPrefix) {
		sub, err := c.lookup(r.Context(), key)
		if err == nil || !errors.Is(err, backends.ErrNotFound) {
			return sub, err
		}
	}
	if c.Next != nil {
		return c.Next.Authenticate(r)
	}
	return nil, errors.New("unknown API key")
}

// lookup authenticates a database key. The error never holds the key.
func (c *KeyChain) lookup(ctx context.Context, key string) (*Subject, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultStoreTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k, err := c.Store.APIKeyByHash(ctx, HashKey(key))
	if errors.Is(err, backends.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		// Still matching backends.ErrUnavailable (503) when it is that;
		// any other failure is refused (401).
		return nil, fmt.Errorf("looking up the API key: %w", err)
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if err := k.Usable(now); err != nil {
		which := ErrKeyExpired
		if k.RevokedAt != nil {
			which = ErrKeyRevoked
		}
		return nil, fmt.Errorf("%w: %s", which, err)
	}
	return KeySubject(k), nil
}

// KeySubject is the subject a database key authenticates: its subject and
// roles, and claims {"namespaces": [...], "key_id": ID} (the default
// policy scopes an operator to claims.namespaces).
func KeySubject(k *backends.APIKey) *Subject {
	namespaces := k.Namespaces
	if namespaces == nil {
		namespaces = []string{}
	}
	claims, _ := json.Marshal(map[string]any{"namespaces": namespaces, "key_id": k.ID})
	return &Subject{ID: k.Subject, Roles: slices.Clone(k.Roles), Claims: claims}
}
