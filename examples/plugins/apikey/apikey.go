package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/taskerd/taskerd/plugin"
)

// Config is the plugin's config block in taskerd.hcl.
type Config struct {
	// KeysFile is the path of the keys file (JSON, see KeysFile).
	KeysFile string `json:"keys_file"`
	// BearerPrefix is the prefix that makes an Authorization: Bearer token
	// an API key (default "tkd_", the form NewKey and taskerd's bootstrap
	// key use). Other bearer tokens, JWTs say, are not_mine, so apikey can
	// sit anywhere in a chain. "*" takes every bearer token. X-API-Key is
	// always an API key.
	BearerPrefix *string `json:"bearer_prefix"`
}

// KeysFile is the keys file: hashes only, never a key in clear.
type KeysFile struct {
	Keys []KeyEntry `json:"keys"`
}

// KeyEntry is one API key, known by the hex SHA-256 of the key.
type KeyEntry struct {
	SHA256     string   `json:"sha256"`
	Subject    string   `json:"subject"`
	Roles      []string `json:"roles"`
	Namespaces []string `json:"namespaces,omitempty"`
	// Name tells keys of one subject apart (rotation); it is in the claims.
	Name string `json:"name,omitempty"`
}

type key struct {
	hash  [sha256.Size]byte
	entry KeyEntry
}

type state struct {
	keys   []key
	prefix string
}

// Authenticator is the plugin.
type Authenticator struct {
	st atomic.Pointer[state]
}

// Configure reads the config and the keys file; any problem refuses the
// plugin (taskerd does not start).
func (a *Authenticator) Configure(_ context.Context, raw json.RawMessage) error {
	var cfg Config
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("apikey config: %w", err)
	}
	if cfg.KeysFile == "" {
		return errors.New("apikey config: keys_file is required")
	}
	b, err := os.ReadFile(cfg.KeysFile)
	if err != nil {
		return fmt.Errorf("apikey config: %w", err)
	}
	st, err := parseKeys(b)
	if err != nil {
		return fmt.Errorf("apikey keys file %s: %w", cfg.KeysFile, err)
	}
	st.prefix = "tkd_"
	if cfg.BearerPrefix != nil {
		st.prefix = *cfg.BearerPrefix
	}
	if st.prefix == "" {
		return errors.New(`apikey config: bearer_prefix must not be empty (use "*" to take every bearer token)`)
	}
	a.st.Store(st)
	plugin.Logger().Info("apikey configured", "keys", len(st.keys))
	return nil
}

func parseKeys(b []byte) (*state, error) {
	var f KeysFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	st := &state{}
	for i, e := range f.Keys {
		h, err := hex.DecodeString(strings.ToLower(e.SHA256))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("keys[%d]: sha256 must be 64 hex digits (the hash of the key, never the key)", i)
		}
		if e.Subject == "" {
			return nil, fmt.Errorf("keys[%d]: subject is required", i)
		}
		k := key{entry: e}
		copy(k.hash[:], h)
		for _, other := range st.keys {
			if other.hash == k.hash {
				return nil, fmt.Errorf("keys[%d]: the same key hash is listed twice", i)
			}
		}
		if k.entry.Roles == nil {
			k.entry.Roles = []string{}
		}
		st.keys = append(st.keys, k)
	}
	return st, nil
}

// Authenticate implements plugin.Authenticator.
func (a *Authenticator) Authenticate(_ context.Context, req *plugin.AuthRequest) (plugin.AuthResult, error) {
	st := a.st.Load()
	if st == nil {
		return plugin.AuthResult{}, errors.New("apikey: not configured")
	}
	presented, ok := st.presentedKey(req)
	if !ok {
		return plugin.NotMine(), nil
	}
	if presented == "" {
		return plugin.Rejected("empty or ambiguous API key"), nil
	}
	sum := sha256.Sum256([]byte(presented))
	// Compare against every key, in constant time, without stopping at a
	// match: the time taken tells nothing about which key (if any) matched.
	match := -1
	for i := range st.keys {
		if subtle.ConstantTimeCompare(sum[:], st.keys[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return plugin.Rejected("unknown API key"), nil
	}
	e := st.keys[match].entry
	claims := map[string]any{"auth": "apikey"}
	if e.Namespaces != nil {
		claims["namespaces"] = e.Namespaces
	}
	if e.Name != "" {
		claims["key_name"] = e.Name
	}
	return plugin.Authenticated(e.Subject, slices.Clone(e.Roles), claims), nil
}

// presentedKey finds the request's API key: ok false when it has none of
// apikey's kind (not_mine), key "" when it has one that cannot be used
// (several values: ambiguous).
func (st *state) presentedKey(req *plugin.AuthRequest) (key string, ok bool) {
	if vs := req.Header.Values("X-Api-Key"); len(vs) > 0 {
		if len(vs) != 1 || req.Header.Get("Authorization") != "" {
			return "", true // two credentials: refuse rather than pick one
		}
		return strings.TrimSpace(vs[0]), true
	}
	tok, ok := req.BearerToken()
	if !ok {
		return "", false
	}
	if st.prefix != "*" && !strings.HasPrefix(tok, st.prefix) {
		return "", false
	}
	return tok, true
}

// NewKey returns a random API key (tkd_ and 32 random bytes, base64url)
// and its hex SHA-256, the form the keys file holds.
func NewKey() (key, hash string, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	key = "tkd_" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(key))
	return key, hex.EncodeToString(sum[:]), nil
}
