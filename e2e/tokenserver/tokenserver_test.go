package tokenserver

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/e2e/registry"
)

// get sends a token request and decodes a 200 answer.
func get(t *testing.T, s *Server, method, user, pass string, scopes ...string) (*http.Response, tokenResponse) {
	t.Helper()
	q := url.Values{"service": {s.Service}, "scope": scopes}
	req, err := http.NewRequest(method, s.Realm+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
	}
	return resp, tr
}

// decode checks tok's form and signature and returns its header and claims.
func decode(t *testing.T, s *Server, tok string) (header, claims) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q: %d parts", tok, len(parts))
	}
	var h header
	var c claims
	for i, v := range []any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %d bytes, %v", len(sig), err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	pub := s.signer.Cert.PublicKey.(*ecdsa.PublicKey)
	if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature does not verify with the signing certificate")
	}
	return h, c
}

func TestTokenFormat(t *testing.T) {
	s := StartT(t, Options{Users: map[string]string{"alice": "pw"}, Lifetime: 3 * time.Second})
	before := time.Now()
	resp, tr := get(t, s, http.MethodGet, "alice", "pw", "repository:a/b:pull,push", "repository:a/b:delete registry:catalog:*")
	after := time.Now()
	if resp.StatusCode != http.StatusOK || tr.Token == "" || tr.AccessToken != tr.Token {
		t.Fatalf("answer %d %+v", resp.StatusCode, tr)
	}
	if tr.ExpiresIn < 2 || tr.ExpiresIn > 3 {
		t.Fatalf("expires_in %d, want 2 or 3", tr.ExpiresIn)
	}
	if at, err := time.Parse(time.RFC3339, tr.IssuedAt); err != nil || at.Before(before.Truncate(time.Second)) || at.After(after) {
		t.Fatalf("issued_at %q: %v", tr.IssuedAt, err)
	}

	h, c := decode(t, s, tr.Token)
	wantX5c := base64.StdEncoding.EncodeToString(s.signer.Cert.Raw)
	if h.Type != "JWT" || h.Algorithm != "ES256" || len(h.X5c) != 1 || h.X5c[0] != wantX5c {
		t.Fatalf("header %+v", h)
	}
	if c.Issuer != DefaultIssuer || c.Subject != "alice" || c.Audience != DefaultService || c.JWTID == "" {
		t.Fatalf("claims %+v", c)
	}
	wantAccess := []access{
		{Type: "repository", Name: "a/b", Actions: []string{"pull", "push", "delete"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}
	if !reflect.DeepEqual(c.Access, wantAccess) {
		t.Fatalf("access %+v, want %+v", c.Access, wantAccess)
	}
	// The registry accepts until exp + RegistryLeeway: never after the
	// lifetime, and for at least the lifetime less a second.
	deadline := time.Unix(c.Expiration, 0).Add(RegistryLeeway)
	if deadline.After(after.Add(3*time.Second)) || !deadline.After(before.Add(2*time.Second)) {
		t.Fatalf("registry deadline %v, issued between %v and %v", deadline, before, after)
	}
	if c.IssuedAt != c.NotBefore || c.NotBefore >= c.Expiration {
		t.Fatalf("iat %d nbf %d exp %d", c.IssuedAt, c.NotBefore, c.Expiration)
	}
}

func TestCredentialsAndCounters(t *testing.T) {
	s := StartT(t, Options{Users: map[string]string{"alice": "pw"}})
	for _, tc := range []struct{ user, pass string }{{"alice", "nope"}, {"bob", "pw"}} {
		resp, _ := get(t, s, http.MethodGet, tc.user, tc.pass, "repository:a/b:pull")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("%s/%s: %d %q", tc.user, tc.pass, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if _, err := s.Token("alice", "nope"); err == nil {
		t.Fatal("Token with a wrong password succeeded")
	}
	// Anonymous: a token that grants nothing.
	resp, tr := get(t, s, http.MethodGet, "", "", "repository:a/b:pull,push")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous: %d", resp.StatusCode)
	}
	if _, c := decode(t, s, tr.Token); c.Subject != "" || c.Access == nil || len(c.Access) != 0 {
		t.Fatalf("anonymous claims %+v", c)
	}
	for _, tc := range []struct {
		method, scope string
		want          int
	}{{http.MethodGet, "repository-without-actions", 400}, {http.MethodGet, "repository:a/b", 400}, {http.MethodPost, "repository:a/b:pull", 405}} {
		if resp, _ := get(t, s, tc.method, "alice", "pw", tc.scope); resp.StatusCode != tc.want {
			t.Fatalf("%s %q: %d, want %d", tc.method, tc.scope, resp.StatusCode, tc.want)
		}
	}
	if s.Issued() != 1 || s.Refused() != 6 {
		t.Fatalf("issued %d refused %d, want 1 and 6", s.Issued(), s.Refused())
	}
}

func TestGrant(t *testing.T) {
	g := PullOnlyUnder("ro/")
	for _, tc := range []struct {
		repo  string
		asked []string
		want  []string
	}{
		{"ro", []string{"pull", "push"}, []string{"pull"}},
		{"ro/x/y", []string{"push", "pull"}, []string{"pull"}},
		{"ro/x", []string{"push"}, nil},
		{"rox", []string{"pull", "push"}, []string{"pull", "push"}},
		{"rw/ro", []string{"push"}, []string{"push"}},
	} {
		if got := g("u", tc.repo, tc.asked); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v: %v, want %v", tc.repo, tc.asked, got, tc.want)
		}
	}

	s := StartT(t, Options{Users: map[string]string{"alice": "pw"}, Grant: g})
	tok, err := s.Token("alice", "pw", "repository:ro/x:push", "repository:ro/y:pull,push", "repository:rw/z:pull,push")
	if err != nil {
		t.Fatal(err)
	}
	_, c := decode(t, s, tok)
	want := []access{
		{Type: "repository", Name: "ro/y", Actions: []string{"pull"}},
		{Type: "repository", Name: "rw/z", Actions: []string{"pull", "push"}},
	}
	if !reflect.DeepEqual(c.Access, want) {
		t.Fatalf("access %+v, want %+v", c.Access, want)
	}
}

func TestTLS(t *testing.T) {
	s := StartT(t, Options{TLS: true, Users: map[string]string{"alice": "pw"}})
	if !strings.HasPrefix(s.Realm, "https://127.0.0.1:") || s.RegistryAuth().Realm != s.Realm {
		t.Fatalf("realm %q", s.Realm)
	}
	if _, err := s.Token("alice", "pw", "repository:a:pull"); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryLeeway pins what the token lifetime compensation relies on:
// both registry kinds accept a token up to RegistryLeeway after its exp and
// from RegistryLeeway before its nbf, and not beyond. Each probe has two
// seconds of margin.
func TestRegistryLeeway(t *testing.T) {
	for _, kind := range registry.Kinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			s := StartT(t, Options{})
			r := registry.StartT(t, registry.Options{Kind: kind, Token: s.RegistryAuth()})
			leeway := int64(RegistryLeeway / time.Second)
			for _, tc := range []struct {
				name     string
				nbf, exp int64 // relative to now, in seconds
				accepted bool
			}{
				{"exp passed by less than the leeway", -100, 2 - leeway, true},
				{"exp passed by more than the leeway", -100, -1 - leeway, false},
				{"nbf ahead by less than the leeway", leeway - 2, leeway + 10, true},
				{"nbf ahead by more than the leeway", leeway + 2, leeway + 10, false},
			} {
				now := time.Now().Unix()
				tok, err := sign(s.signer.Key, s.signer.Cert.Raw, claims{
					Issuer: s.Issuer, Subject: "alice", Audience: s.Service,
					NotBefore: now + tc.nbf, IssuedAt: now + tc.nbf, Expiration: now + tc.exp, JWTID: tc.name,
					Access: []access{{Type: "repository", Name: "lee/way", Actions: []string{"pull"}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				req, err := http.NewRequest(http.MethodGet, r.URL()+"/v2/lee/way/tags/list", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if accepted := resp.StatusCode != http.StatusUnauthorized; accepted != tc.accepted {
					t.Errorf("%s: status %d, want accepted=%v", tc.name, resp.StatusCode, tc.accepted)
				}
			}
		})
	}
}
