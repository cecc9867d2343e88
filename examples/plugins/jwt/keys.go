package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// verificationKey is one key and the one algorithm it verifies. Binding the
// algorithm to the key, not to the token's header, is what stops algorithm
// confusion: an HS256 token is only ever checked against an HS256 secret.
type verificationKey struct {
	alg string // HS256, RS256 or ES256
	kid string // "" when the key has none
	key jwt.VerificationKey
}

// minSecretLen is the shortest HS256 secret accepted: RFC 7518 §3.2 asks
// for a key at least as long as the hash output.
const minSecretLen = 32

func secretKey(secret []byte) (verificationKey, error) {
	if len(secret) < minSecretLen {
		return verificationKey{}, fmt.Errorf("the HS256 secret must be at least %d bytes", minSecretLen)
	}
	return verificationKey{alg: "HS256", key: secret}, nil
}

// pemKey reads an RSA (RS256) or P-256 EC (ES256) public key, or a
// certificate holding one, from a PEM file.
func pemKey(path string) (verificationKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return verificationKey{}, err
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return rsaKey(k, "")
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
		return ecKey(k, "")
	}
	return verificationKey{}, fmt.Errorf("%s: no RSA or EC public key (PEM PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", path)
}

func rsaKey(k *rsa.PublicKey, kid string) (verificationKey, error) {
	if k.N.BitLen() < 2048 {
		return verificationKey{}, fmt.Errorf("RSA key %q has %d bits; at least 2048 are required", kid, k.N.BitLen())
	}
	return verificationKey{alg: "RS256", kid: kid, key: k}, nil
}

func ecKey(k *ecdsa.PublicKey, kid string) (verificationKey, error) {
	if k.Curve != elliptic.P256() {
		return verificationKey{}, fmt.Errorf("EC key %q is not on P-256 (ES256 is the only EC algorithm accepted)", kid)
	}
	return verificationKey{alg: "ES256", kid: kid, key: k}, nil
}

// jwk is the subset of RFC 7517 this plugin reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// EC
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// oct: a shared secret
	K string `json:"k"`
}

// jwksKeys reads a JWKS file ({"keys": [...]}). Keys for encryption
// (use "enc") and keys of other algorithms are skipped; a key that claims
// to be usable but cannot be parsed is an error, so a broken file is
// noticed at start rather than as mysterious 401s.
func jwksKeys(path string) ([]verificationKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var keys []verificationKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var (
			vk  verificationKey
			err error
		)
		switch k.Kty {
		case "RSA":
			if k.Alg != "" && k.Alg != "RS256" {
				continue
			}
			vk, err = jwkRSA(k)
		case "EC":
			if k.Alg != "" && k.Alg != "ES256" {
				continue
			}
			vk, err = jwkEC(k)
		case "oct":
			if k.Alg != "" && k.Alg != "HS256" {
				continue
			}
			var secret []byte
			if secret, err = b64(k.K); err == nil {
				vk, err = secretKey(secret)
				vk.kid = k.Kid
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: keys[%d] (kid %q): %w", path, i, k.Kid, err)
		}
		keys = append(keys, vk)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no RS256, ES256 or HS256 signing key", path)
	}
	return keys, nil
}

func b64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing key material")
	}
	return base64.RawURLEncoding.DecodeString(s)
}

func jwkRSA(k jwk) (verificationKey, error) {
	n, err := b64(k.N)
	if err != nil {
		return verificationKey{}, fmt.Errorf("n: %w", err)
	}
	e, err := b64(k.E)
	if err != nil {
		return verificationKey{}, fmt.Errorf("e: %w", err)
	}
	if len(e) > 4 {
		return verificationKey{}, errors.New("e is too large")
	}
	exp := int(new(big.Int).SetBytes(e).Int64())
	if exp < 3 || exp%2 == 0 {
		return verificationKey{}, errors.New("e is not a valid RSA public exponent")
	}
	return rsaKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, k.Kid)
}

func jwkEC(k jwk) (verificationKey, error) {
	if k.Crv != "P-256" {
		return verificationKey{}, fmt.Errorf("curve %q: only P-256 (ES256) is accepted", k.Crv)
	}
	x, err := b64(k.X)
	if err != nil {
		return verificationKey{}, fmt.Errorf("x: %w", err)
	}
	y, err := b64(k.Y)
	if err != nil {
		return verificationKey{}, fmt.Errorf("y: %w", err)
	}
	if len(x) != 32 || len(y) != 32 {
		return verificationKey{}, errors.New("x and y must be 32 bytes each")
	}
	// ParseUncompressedPublicKey checks that the point is on the curve.
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return verificationKey{}, err
	}
	return ecKey(pub, k.Kid)
}
