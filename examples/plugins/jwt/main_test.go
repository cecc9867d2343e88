package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fixtures made once in TestMain: keys, key files and the built plugins.
var (
	rsaPriv, otherRSA *rsa.PrivateKey
	ecPriv            *ecdsa.PrivateKey
	hmacSecret        = []byte("a-shared-secret-of-at-least-32-bytes!")

	rsaPEM, ecPEM, jwksPath, secretPath string

	jwtPluginPath, apikeyPluginPath string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-jwt-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := fixtures(dir); err != nil {
			fmt.Fprintln(os.Stderr, "fixtures:", err)
			return 1
		}
		// Plain builds (no -race): the plugins are other processes.
		for _, b := range []struct {
			out       *string
			name, pkg string
		}{{&jwtPluginPath, "jwt", "."}, {&apikeyPluginPath, "apikey", "../apikey"}} {
			*b.out = filepath.Join(dir, b.name)
			cmd := exec.Command("go", "build", "-o", *b.out, b.pkg)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building", b.pkg, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func fixtures(dir string) error {
	var err error
	if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return err
	}
	if otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return err
	}
	if ecPriv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return err
	}
	writePEM := func(name string, pub any) (string, error) {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	}
	if rsaPEM, err = writePEM("rsa.pem", &rsaPriv.PublicKey); err != nil {
		return err
	}
	if ecPEM, err = writePEM("ec.pem", &ecPriv.PublicKey); err != nil {
		return err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	ecPub, err := ecPriv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return err
	}
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": b64(rsaPriv.N.Bytes()), "e": b64(big.NewInt(int64(rsaPriv.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecPub[1:33]), "y": b64(ecPub[33:])},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}, // skipped: not for signatures
	}}
	b, err := json.Marshal(jwks)
	if err != nil {
		return err
	}
	jwksPath = filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, b, 0o600); err != nil {
		return err
	}
	secretPath = filepath.Join(dir, "secret")
	return os.WriteFile(secretPath, append(hmacSecret, '\n'), 0o600)
}

const (
	testIssuer   = "https://idp.example"
	testAudience = "taskerd"
)

// claimsAt returns valid claims for subject alice at now.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice", "iss": testIssuer, "aud": testAudience,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"roles":        []string{"operator"},
		"namespaces":   []string{"ecommerce"},
		"realm_access": map[string]any{"roles": []string{"admin", "viewer"}},
	}
}

func sign(method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

func rs256(claims jwt.MapClaims) string { return sign(jwt.SigningMethodRS256, rsaPriv, claims, "") }
