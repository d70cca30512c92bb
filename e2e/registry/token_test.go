package registry_test

import (
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/e2e/tokenserver"
)

// tokenRegistry starts a token server with users alice (every action) and
// reader (pull only under ro/), and a registry of kind that trusts it.
func tokenRegistry(t *testing.T, kind registry.Kind, tls bool) (*tokenserver.Server, *registry.Registry) {
	readOnly := tokenserver.PullOnlyUnder("ro")
	ts := tokenserver.StartT(t, tokenserver.Options{
		TLS:   tls,
		Users: map[string]string{"alice": "s3cret", "reader": "r3ad"},
		Grant: func(user, repo string, asked []string) []string {
			if user == "reader" {
				return readOnly(user, repo, asked)
			}
			return asked
		},
	})
	return ts, registry.StartT(t, registry.Options{Kind: kind, TLS: tls, Token: ts.RegistryAuth()})
}

func wantStatus(t *testing.T, what string, err error, codes ...int) {
	t.Helper()
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		for _, c := range codes {
			if er.StatusCode == c {
				return
			}
		}
	}
	t.Fatalf("%s: want status %v, got %v", what, codes, err)
}

func TestTokenAuthPushPull(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		for _, tls := range []bool{false, true} {
			ts, r := tokenRegistry(t, kind, tls)
			ctx := ctxT(t)
			// The client trusts the registry's CA and the token server's.
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(r.CAPEM)
			pool.AppendCertsFromPEM(ts.CertPEM)
			alice := imagebuild.Target{PlainHTTP: !tls, RootCAs: pool, Username: "alice", Password: "s3cret"}
			img := imagebuild.SingleArch(imagebuild.OCI, 11, 3000, 5000)
			pushPull(t, ctx, alice, r.Host()+"/team/app:1", img)
			if ts.Issued() == 0 {
				t.Fatal("no token issued")
			}

			bad := alice
			bad.Password = "wrong"
			_, err := imagebuild.PushImage(ctx, bad, r.Host()+"/team/app:2", img)
			wantStatus(t, "push with a wrong password", err, http.StatusUnauthorized)
			if ts.Refused() == 0 {
				t.Fatal("wrong password not counted as refused")
			}

			anon := imagebuild.Target{PlainHTTP: !tls, RootCAs: pool}
			_, err = imagebuild.PushImage(ctx, anon, r.Host()+"/team/app:3", img)
			wantStatus(t, "anonymous push", err, http.StatusUnauthorized)

			resp, _ := do(t, r.Client(), http.MethodGet, r.URL()+"/v2/", nil, nil)
			want := `Bearer realm="` + ts.Realm + `",service="` + ts.Service + `"`
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
				t.Fatalf("GET /v2/ without a token: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
			}
		}
	})
}

func TestTokenPullOnlyScope(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		_, r := tokenRegistry(t, kind, false)
		ctx := ctxT(t)
		alice := imagebuild.Target{PlainHTTP: true, Username: "alice", Password: "s3cret"}
		reader := imagebuild.Target{PlainHTTP: true, Username: "reader", Password: "r3ad"}
		img := imagebuild.SingleArch(imagebuild.Docker, 12, 2000)

		b, err := imagebuild.PushImage(ctx, alice, r.Host()+"/ro/base:1", img)
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := imagebuild.FetchManifest(ctx, reader, r.Host()+"/ro/base:1")
		if err != nil || d.Digest != b.Descriptor.Digest {
			t.Fatalf("pull-only user pulling under ro/: %v %v", d.Digest, err)
		}
		_, err = imagebuild.PushImage(ctx, reader, r.Host()+"/ro/base:2", imagebuild.SingleArch(imagebuild.Docker, 13, 2000))
		wantStatus(t, "pull-only user pushing under ro/", err, http.StatusUnauthorized, http.StatusForbidden)
		pushPull(t, ctx, reader, r.Host()+"/rw/base:1", img)
	})
}

// TestTokenExpires uses one token in raw requests: accepted at once,
// refused once its lifetime has passed (the token server compensates for
// the registry's clock-skew leeway).
func TestTokenExpires(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		ts, r := tokenRegistry(t, kind, false)
		issued := time.Now()
		tok, err := ts.Token("alice", "s3cret", "repository:exp/app:pull")
		if err != nil {
			t.Fatal(err)
		}
		bearer := map[string]string{"Authorization": "Bearer " + tok}
		u := r.URL() + "/v2/exp/app/tags/list"
		resp, body := do(t, r.Client(), http.MethodGet, u, nil, bearer)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("fresh token: %d %s, want 404 (authorized, no such repository)", resp.StatusCode, body)
		}
		time.Sleep(time.Until(issued.Add(ts.Lifetime() + 50*time.Millisecond)))
		resp, _ = do(t, r.Client(), http.MethodGet, u, nil, bearer)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("expired token: %d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
}
