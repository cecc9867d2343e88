package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// BootstrapKeySetting is the store setting holding the SHA-256 (hex) of the
// bootstrap admin API key. The key itself is never stored.
const BootstrapKeySetting = "bootstrap_admin_key_sha256"

// BootstrapSubject is who the bootstrap key authenticates.
const BootstrapSubject = "bootstrap-admin"

// EnsureBootstrapKey makes sure the database has a bootstrap admin key. On
// the first call for a database it generates one, stores its hash and
// returns the key with created = true: the only moment the key exists in
// clear. Later calls return created = false and no key. Nodes starting
// together agree on one key (the store's PutSettingIfAbsent).
func EnsureBootstrapKey(ctx context.Context, store backends.Store, now time.Time) (key, hash string, created bool, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", false, err
	}
	key = "tkd_" + base64.RawURLEncoding.EncodeToString(raw[:])
	stored, created, err := store.PutSettingIfAbsent(ctx, BootstrapKeySetting, hashKey(key), now)
	if err != nil {
		return "", "", false, fmt.Errorf("storing the bootstrap admin key's hash: %w", err)
	}
	if !created {
		key = ""
	}
	return key, stored, created, nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyAuthenticator accepts one API key, known by its SHA-256, from
// X-API-Key or Authorization: Bearer, and authenticates it as Subject.
type KeyAuthenticator struct {
	hash    []byte
	subject Subject
}

// NewKeyAuthenticator returns an authenticator for the key whose hex
// SHA-256 is hashHex.
func NewKeyAuthenticator(hashHex string, subject Subject) (*KeyAuthenticator, error) {
	h, err := hex.DecodeString(hashHex)
	if err != nil || len(h) != sha256.Size {
		return nil, errors.New("the stored API key hash is not a hex SHA-256")
	}
	return &KeyAuthenticator{hash: h, subject: subject}, nil
}

// Authenticate implements Authenticator. The comparison is constant-time.
func (a *KeyAuthenticator) Authenticate(r *http.Request) (*Subject, error) {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			key = strings.TrimSpace(token)
		}
	}
	if key == "" {
		return nil, ErrNoCredentials
	}
	sum := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare(sum[:], a.hash) != 1 {
		return nil, errors.New("invalid API key")
	}
	s := a.subject
	s.Roles = slices.Clone(a.subject.Roles)
	return &s, nil
}
