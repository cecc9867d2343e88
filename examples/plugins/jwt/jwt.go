package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/taskerd/taskerd/plugin"
)

// Config is the plugin's config block in taskerd.hcl. At least one of
// Secret, SecretFile, PublicKeyFile and JWKSFile gives the keys.
type Config struct {
	// Secret is an HS256 shared secret (at least 32 bytes). Prefer
	// SecretFile: taskerd.hcl is often readable by more people than the
	// secret should be.
	Secret string `json:"secret"`
	// SecretFile holds the HS256 secret (trailing newlines are trimmed).
	SecretFile string `json:"secret_file"`
	// PublicKeyFile is a PEM RSA (RS256) or P-256 EC (ES256) public key.
	PublicKeyFile string `json:"public_key_file"`
	// JWKSFile is a JSON Web Key Set; a token's kid picks the key.
	JWKSFile string `json:"jwks_file"`

	// Issuer, when set, must equal the token's iss.
	Issuer string `json:"issuer"`
	// Audience, when set, must be in the token's aud.
	Audience string `json:"audience"`
	// Leeway is the clock skew allowed on exp and nbf (default "30s").
	Leeway string `json:"leeway"`
	// RequireExp refuses tokens without exp (default true).
	RequireExp *bool `json:"require_exp"`

	// SubjectClaim names the claim that is the subject id (default "sub").
	SubjectClaim string `json:"subject_claim"`
	// RolesClaim is a dot path to the roles, a list of strings or one
	// string (default "roles"; e.g. "realm_access.roles" for Keycloak).
	// A token without it has no roles.
	RolesClaim string `json:"roles_claim"`

	// CacheSize bounds a cache of verified tokens, keyed by the token's
	// SHA-256 and kept until the token's exp; 0 (the default) turns it off.
	CacheSize int `json:"cache_size"`
}

type settings struct {
	keys         []verificationKey
	parser       *jwt.Parser
	subjectClaim string
	rolesPath    []string
	cache        *tokenCache // nil when off
}

// Authenticator is the plugin.
type Authenticator struct {
	st  atomic.Pointer[settings]
	now func() time.Time // tests move the clock
}

// Configure reads the config and the keys; any problem refuses the plugin
// (taskerd does not start).
func (a *Authenticator) Configure(_ context.Context, raw json.RawMessage) error {
	st, err := a.settings(raw)
	if err != nil {
		return fmt.Errorf("jwt config: %w", err)
	}
	a.st.Store(st)
	algs := map[string]bool{}
	for _, k := range st.keys {
		algs[k.alg] = true
	}
	plugin.Logger().Info("jwt configured", "keys", len(st.keys), "algorithms", slices.Sorted(maps.Keys(algs)))
	return nil
}

func (a *Authenticator) settings(raw json.RawMessage) (*settings, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, err
	}
	st := &settings{subjectClaim: cfg.SubjectClaim}
	if cfg.Secret != "" && cfg.SecretFile != "" {
		return nil, errors.New("secret and secret_file: give one")
	}
	secret := []byte(cfg.Secret)
	if cfg.SecretFile != "" {
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, err
		}
		secret = bytes.TrimRight(b, "\r\n")
	}
	if len(secret) > 0 {
		k, err := secretKey(secret)
		if err != nil {
			return nil, err
		}
		st.keys = append(st.keys, k)
	}
	if cfg.PublicKeyFile != "" {
		k, err := pemKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		st.keys = append(st.keys, k)
	}
	if cfg.JWKSFile != "" {
		ks, err := jwksKeys(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		st.keys = append(st.keys, ks...)
	}
	if len(st.keys) == 0 {
		return nil, errors.New("no keys: set secret, secret_file, public_key_file or jwks_file")
	}

	var algs []string
	for _, k := range st.keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	leeway := 30 * time.Second
	if cfg.Leeway != "" {
		d, err := time.ParseDuration(cfg.Leeway)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("leeway %q: want a duration such as \"30s\"", cfg.Leeway)
		}
		leeway = d
	}
	// Only the algorithms of the configured keys: "none" and every other
	// algorithm fail before any key is looked at.
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithLeeway(leeway), jwt.WithTimeFunc(a.clock)}
	if cfg.RequireExp == nil || *cfg.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	st.parser = jwt.NewParser(opts...)
	if st.subjectClaim == "" {
		st.subjectClaim = "sub"
	}
	roles := cfg.RolesClaim
	if roles == "" {
		roles = "roles"
	}
	st.rolesPath = strings.Split(roles, ".")
	if cfg.CacheSize < 0 {
		return nil, errors.New("cache_size must not be negative")
	}
	if cfg.CacheSize > 0 {
		st.cache = newTokenCache(cfg.CacheSize)
	}
	return st, nil
}

func (a *Authenticator) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// Authenticate implements plugin.Authenticator.
func (a *Authenticator) Authenticate(_ context.Context, req *plugin.AuthRequest) (plugin.AuthResult, error) {
	st := a.st.Load()
	if st == nil {
		return plugin.AuthResult{}, errors.New("jwt: not configured")
	}
	tok, ok := req.BearerToken()
	if !ok || !looksLikeJWT(tok) {
		return plugin.NotMine(), nil // an API key, or no bearer at all
	}
	var cacheKey [sha256.Size]byte
	if st.cache != nil {
		cacheKey = sha256.Sum256([]byte(tok))
		if r, ok := st.cache.get(cacheKey, a.clock()); ok {
			return plugin.Authenticated(r.subject, slices.Clone(r.roles), r.claims), nil
		}
	}
	claims := jwt.MapClaims{}
	_, err := st.parser.ParseWithClaims(tok, claims, st.keyFunc)
	if err != nil {
		// golang-jwt's errors name what failed (expired, signature
		// invalid, issuer...), never the token.
		return plugin.Rejected(err.Error()), nil
	}
	sub, ok := claims[st.subjectClaim].(string)
	if !ok || sub == "" {
		return plugin.Rejected(fmt.Sprintf("token has no string claim %q for the subject", st.subjectClaim)), nil
	}
	roles, err := rolesAt(claims, st.rolesPath)
	if err != nil {
		return plugin.Rejected(err.Error()), nil
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return plugin.AuthResult{}, fmt.Errorf("encoding claims: %w", err)
	}
	if st.cache != nil {
		if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
			st.cache.put(cacheKey, cached{subject: sub, roles: roles, claims: raw, until: exp.Time}, a.clock())
		}
	}
	return plugin.Authenticated(sub, roles, json.RawMessage(raw)), nil
}

// keyFunc offers the keys of the token's algorithm (and kid, when both
// have one). The parser has already refused algorithms no key has.
func (st *settings) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range st.keys {
		if k.alg != alg {
			continue
		}
		if kid != "" && k.kid != "" && k.kid != kid {
			continue
		}
		set.Keys = append(set.Keys, k.key)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with kid %q", alg, kid)
	}
	return set, nil
}

// looksLikeJWT tells a compact JWS (three base64url parts whose first is a
// JSON header with "alg") from any other bearer token, such as an API key,
// which belongs to another authenticator.
func looksLikeJWT(tok string) bool {
	if strings.Count(tok, ".") != 2 {
		return false
	}
	head, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	return json.Unmarshal(b, &h) == nil && h.Alg != nil
}

// rolesAt reads the roles at path: a list of strings, one string, or
// nothing (no roles).
func rolesAt(claims jwt.MapClaims, path []string) ([]string, error) {
	var v any = map[string]any(claims)
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return []string{}, nil
		}
		if v, ok = m[p]; !ok {
			return []string{}, nil
		}
	}
	switch r := v.(type) {
	case nil:
		return []string{}, nil
	case string:
		return []string{r}, nil
	case []any:
		roles := make([]string, 0, len(r))
		for _, e := range r {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("roles claim %q holds a non-string", strings.Join(path, "."))
			}
			roles = append(roles, s)
		}
		return roles, nil
	default:
		return nil, fmt.Errorf("roles claim %q is neither a string nor a list of strings", strings.Join(path, "."))
	}
}

type cached struct {
	subject string
	roles   []string
	claims  json.RawMessage
	until   time.Time
}

// tokenCache is a bounded map of verified tokens by SHA-256 (the token
// itself is never kept). An entry is used only before its token's exp;
// when full, expired entries go first, then an arbitrary one.
type tokenCache struct {
	mu      sync.Mutex
	size    int
	entries map[[sha256.Size]byte]cached
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, entries: make(map[[sha256.Size]byte]cached, size)}
}

func (c *tokenCache) get(k [sha256.Size]byte, now time.Time) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return cached{}, false
	}
	if !now.Before(e.until) {
		delete(c.entries, k)
		return cached{}, false
	}
	return e, true
}

func (c *tokenCache) put(k [sha256.Size]byte, e cached, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		for key, old := range c.entries {
			if !now.Before(old.until) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = e
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
