package tokenserver

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// RegistryLeeway is the clock skew distribution allows on a token's exp and
// nbf claims: v3 and 2.8 alike accept a token until exp plus this and from
// nbf minus this (token.Leeway in registry/auth/token of both).
const RegistryLeeway = 60 * time.Second

// claims is the claim set of a registry token.
type claims struct {
	Issuer     string   `json:"iss"`
	Subject    string   `json:"sub"`
	Audience   string   `json:"aud"`
	Expiration int64    `json:"exp"`
	NotBefore  int64    `json:"nbf"`
	IssuedAt   int64    `json:"iat"`
	JWTID      string   `json:"jti"`
	Access     []access `json:"access"`
}

// access is one resource and the actions granted on it.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// header is the JOSE header of a token: ES256, with the signing
// certificate in x5c (standard base64 of its DER, as RFC 7515 says), which
// the registry verifies against its root certificate bundle.
type header struct {
	Type      string   `json:"typ"`
	Algorithm string   `json:"alg"`
	X5c       []string `json:"x5c"`
}

// window returns the iat, nbf and exp claims for a token issued at now
// that the registry must accept for lifetime, and that deadline. The
// registry adds RegistryLeeway to exp, so exp is set that much earlier,
// and iat and nbf with it to keep the claims in order: without that, every
// token would live a minute longer than asked, and no test could see one
// expire inside a transfer. Claims are whole seconds and exp is rounded
// down, so the registry accepts a token for at least lifetime - 1s and
// never after now + lifetime.
func window(now time.Time, lifetime time.Duration) (iat, nbf, exp int64, deadline time.Time) {
	iat = now.Add(-RegistryLeeway).Unix()
	exp = now.Add(lifetime - RegistryLeeway).Unix()
	return iat, iat, exp, time.Unix(exp, 0).Add(RegistryLeeway)
}

// sign returns c as a JWS compact serialization signed with key (ES256:
// the raw 32-byte r and s, as RFC 7518 says), certDER in its header.
func sign(key *ecdsa.PrivateKey, certDER []byte, c claims) (string, error) {
	h, err := json.Marshal(header{Type: "JWT", Algorithm: "ES256", X5c: []string{base64.StdEncoding.EncodeToString(certDER)}})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}
