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

// KeySaver keeps a new bootstrap key for whoever must use it (serve: a
// file). EnsureBootstrapKey stages the key before its hash is stored, so
// that a key that cannot be kept is never stored either, then commits it
// if this call stored the hash, or aborts it if storing failed or another
// node's key won.
type KeySaver interface {
	Stage(key string) error
	Commit() error
	Abort()
}

// EnsureBootstrapKey makes sure the database has a bootstrap admin key. On
// the first call for a database it generates one, stages it with saver
// (nil: the caller keeps the returned key), stores its hash, commits the
// saver and returns the key with created = true: the only moment the key
// exists in clear. Later calls return created = false and no key. Nodes
// starting together agree on one key (the store's PutSettingIfAbsent); the
// savers of the others are aborted.
func EnsureBootstrapKey(ctx context.Context, store backends.Store, now time.Time, saver KeySaver) (key, hash string, created bool, err error) {
	stored, err := store.Setting(ctx, BootstrapKeySetting)
	if err == nil {
		return "", stored, false, nil
	}
	if !errors.Is(err, backends.ErrNotFound) {
		return "", "", false, fmt.Errorf("reading the bootstrap admin key's hash: %w", err)
	}
	key, hash, err = NewKey()
	if err != nil {
		return "", "", false, err
	}
	if saver != nil {
		if err := saver.Stage(key); err != nil {
			return "", "", false, err
		}
	}
	stored, created, err = store.PutSettingIfAbsent(ctx, BootstrapKeySetting, hash, now)
	if err != nil {
		if saver != nil {
			saver.Abort()
		}
		return "", "", false, fmt.Errorf("storing the bootstrap admin key's hash: %w", err)
	}
	if !created {
		if saver != nil {
			saver.Abort()
		}
		return "", stored, false, nil
	}
	if saver != nil {
		if err := saver.Commit(); err != nil {
			return "", "", false, err
		}
	}
	return key, stored, true, nil
}

// KeyPrefix begins every API key taskerd makes (the bootstrap key and
// those of taskerd keys create). Only credentials with it are looked up in
// the database.
const KeyPrefix = "tkd_"

// NewKey returns a new random API key (KeyPrefix and 32 random bytes,
// base64url) and its hash (HashKey).
func NewKey() (key, hash string, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return key, HashKey(key), nil
}

// NewKeyID returns a new public key id: "k" and 10 random hex digits. It
// names a key in listings, revocations and the audit; it is not secret.
func NewKeyID() (string, error) {
	var raw [5]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return "k" + hex.EncodeToString(raw[:]), nil
}

// HashKey is what the database stores of a key: its SHA-256, hex.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// presentedKey is the API key a request carries: X-API-Key, else an
// Authorization: Bearer token; "" when neither.
func presentedKey(r *http.Request) string {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			key = strings.TrimSpace(token)
		}
	}
	return key
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
	key := presentedKey(r)
	if key == "" {
		return nil, ErrNoCredentials
	}
	if !a.matches(key) {
		return nil, errors.New("invalid API key")
	}
	return a.subjectCopy(), nil
}

func (a *KeyAuthenticator) matches(key string) bool {
	sum := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(sum[:], a.hash) == 1
}

func (a *KeyAuthenticator) subjectCopy() *Subject {
	s := a.subject
	s.Roles = slices.Clone(a.subject.Roles)
	return &s
}
