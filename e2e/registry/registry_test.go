package registry_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

func TestPlainRegistryPushAndPull(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind})
		if !strings.HasPrefix(r.Addr, "127.0.0.1:") || r.URL() != "http://"+r.Addr || !r.PlainHTTP() || r.Kind() != kind {
			t.Fatalf("addr %q url %q kind %v", r.Addr, r.URL(), r.Kind())
		}
		resp, err := http.Get(r.URL() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Fatalf("GET /v2/: %d %v", resp.StatusCode, resp.Header)
		}

		ctx := ctxT(t)
		tgt := imagebuild.Target{PlainHTTP: true}
		b := pushPull(t, ctx, tgt, r.Host()+"/library/busybox:1.37", imagebuild.SingleArch(imagebuild.OCI, 1, 1000, 2000))
		got, err := imagebuild.ManifestDigests(ctx, tgt, r.Host(), "library/busybox:1.37", "library/busybox:missing", "nothere/x:1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got["library/busybox:1.37"] != b.Descriptor.Digest {
			t.Fatalf("digests %v, want only %s", got, b.Descriptor.Digest)
		}
	})
}

func TestTLSRegistry(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind, TLS: true})
		if r.Scheme() != "https" || r.CAFile == "" || len(r.CAPEM) == 0 || r.CertPool == nil || r.PlainHTTP() {
			t.Fatalf("TLS registry fields: scheme %q CAFile %q", r.Scheme(), r.CAFile)
		}
		ctx := ctxT(t)
		img := imagebuild.SingleArch(imagebuild.OCI, 2, 4096)

		pushPull(t, ctx, imagebuild.Target{RootCAs: r.CertPool}, r.Host()+"/tls/a:v1", img)
		pushPull(t, ctx, imagebuild.Target{CAFile: r.CAFile}, r.Host()+"/tls/b:v1", img)
		// localhost is in the certificate too.
		port := r.Addr[strings.LastIndex(r.Addr, ":")+1:]
		if _, err := imagebuild.PushImage(ctx, imagebuild.Target{RootCAs: r.CertPool}, "localhost:"+port+"/tls/c:v1", img); err != nil {
			t.Fatalf("push to localhost with CA: %v", err)
		}

		_, err := imagebuild.PushImage(ctx, imagebuild.Target{}, r.Host()+"/tls/d:v1", img)
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Fatalf("push without CA: want x509.UnknownAuthorityError, got %v", err)
		}
		resp, err := r.Client().Get(r.URL() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Both kinds serve HTTP/1.1 only, though the client offers HTTP/2.
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.ProtoMajor != 1 {
			t.Fatalf("GET /v2/ over TLS: %d %s", resp.StatusCode, resp.Proto)
		}
	})
}

func TestHtpasswdRegistry(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind, Users: map[string]string{"alice": "s3cret", "bob": "hunter2"}})
		ctx := ctxT(t)
		img := imagebuild.SingleArch(imagebuild.Docker, 3, 512)

		pushPull(t, ctx, imagebuild.Target{PlainHTTP: true, Username: "alice", Password: "s3cret"}, r.Host()+"/auth/img:1", img)
		for _, tc := range []struct{ user, pass string }{{"alice", "wrong"}, {"mallory", "s3cret"}} {
			_, err := imagebuild.PushImage(ctx, imagebuild.Target{PlainHTTP: true, Username: tc.user, Password: tc.pass}, r.Host()+"/auth/img:2", img)
			var er *errcode.ErrorResponse
			if !errors.As(err, &er) || er.StatusCode != http.StatusUnauthorized {
				t.Fatalf("push as %q/%q: want 401, got %v", tc.user, tc.pass, err)
			}
		}

		// oras does not even try without credentials.
		_, err := imagebuild.PushImage(ctx, imagebuild.Target{PlainHTTP: true}, r.Host()+"/auth/img:3", img)
		if !errors.Is(err, auth.ErrBasicCredentialNotFound) {
			t.Fatalf("anonymous push: %v", err)
		}
		resp, err := http.Get(r.URL() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="`+registry.DefaultRealm+`"` {
			t.Fatalf("anonymous GET /v2/: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
}

// TestRestartKeepsContentAndUploads stops and restarts the registry on the
// same port and storage: pushed images stay, and a chunked upload started
// before the restart resumes after it with the old upload URL. Then a kill
// and a restart.
func TestRestartKeepsContentAndUploads(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind})
		ctx := ctxT(t)
		tgt := imagebuild.Target{PlainHTTP: true}
		b, err := imagebuild.PushImage(ctx, tgt, r.Host()+"/keep/me:1", imagebuild.SingleArch(imagebuild.OCI, 4, 10000))
		if err != nil {
			t.Fatal(err)
		}
		addr, root := r.Addr, r.RootDir
		c := &http.Client{}

		// Start a chunked upload: POST, then one PATCH of the first half.
		blob := imagebuild.Layer{Seed: 99, Size: 300 << 10}
		data, err := io.ReadAll(blob.Reader())
		if err != nil {
			t.Fatal(err)
		}
		half := len(data) / 2
		resp, _ := do(t, c, http.MethodPost, r.URL()+"/v2/keep/chunked/blobs/uploads/", nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST upload: %d", resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, r.URL()+"/v2/keep/chunked/blobs/uploads/") || !strings.Contains(loc, "_state=") {
			t.Fatalf("upload Location %q: want absolute URL on %s with _state", loc, r.URL())
		}
		resp, _ = do(t, c, http.MethodPatch, loc, data[:half], map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("0-%d", half-1),
		})
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != fmt.Sprintf("0-%d", half-1) {
			t.Fatalf("PATCH: %d Range %q", resp.StatusCode, resp.Header.Get("Range"))
		}
		loc = resp.Header.Get("Location")

		pid := r.PID()
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		if r.Running() || r.PID() != 0 {
			t.Fatalf("Running %v PID %d after Stop", r.Running(), r.PID())
		}
		if pid != 0 && processExists(pid) {
			t.Fatalf("docker-registry process %d still exists after Stop", pid)
		}
		if _, err := c.Get(r.URL() + "/v2/"); err == nil {
			t.Fatal("GET /v2/ on a stopped registry succeeded")
		}
		if err := r.Restart(); err != nil {
			t.Fatal(err)
		}
		if r.Addr != addr || r.RootDir != root || !r.Running() {
			t.Fatalf("after restart: addr %s root %s, want %s %s", r.Addr, r.RootDir, addr, root)
		}

		got, err := imagebuild.ManifestDigests(ctx, tgt, r.Host(), "keep/me:1")
		if err != nil || got["keep/me:1"] != b.Descriptor.Digest {
			t.Fatalf("after restart: %v %v", got, err)
		}

		// The upload state survives (same storage, same HTTP secret).
		resp, _ = do(t, c, http.MethodGet, loc, nil, nil)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != fmt.Sprintf("0-%d", half-1) {
			t.Fatalf("GET upload status after restart: %d Range %q", resp.StatusCode, resp.Header.Get("Range"))
		}
		resp, _ = do(t, c, http.MethodPatch, loc, data[half:], map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", half, len(data)-1),
		})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("second PATCH: %d", resp.StatusCode)
		}
		loc = resp.Header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("digest", blob.Digest().String())
		u.RawQuery = q.Encode()
		resp, _ = do(t, c, http.MethodPut, u.String(), nil, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d", resp.StatusCode)
		}
		resp, _ = do(t, c, http.MethodHead, r.URL()+"/v2/keep/chunked/blobs/"+blob.Digest().String(), nil, nil)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != blob.Size {
			t.Fatalf("HEAD blob: %d size %d", resp.StatusCode, resp.ContentLength)
		}

		// Kill closes connections at once; Restart brings the registry back.
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
		if r.Running() {
			t.Fatal("Running after Kill")
		}
		if err := r.Restart(); err != nil {
			t.Fatal(err)
		}
		resp, _ = do(t, c, http.MethodHead, r.URL()+"/v2/keep/me/manifests/1", nil, map[string]string{"Accept": b.Descriptor.MediaType})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != b.Descriptor.Digest.String() {
			t.Fatalf("HEAD manifest after kill+restart: %d %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
		}
	})
}

func TestCrossRepoMountAndDelete(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind})
		ctx := ctxT(t)
		b, err := imagebuild.PushImage(ctx, imagebuild.Target{PlainHTTP: true}, r.Host()+"/src/a:1", imagebuild.SingleArch(imagebuild.OCI, 5, 2048))
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{}
		layer := b.Layers[0].Digest
		resp, _ := do(t, c, http.MethodPost, r.URL()+"/v2/dst/b/blobs/uploads/?mount="+layer.String()+"&from=src/a", nil, nil)
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != layer.String() {
			t.Fatalf("mount: %d %v", resp.StatusCode, resp.Header)
		}
		// A mount from a repository without the blob falls back to an upload.
		resp, _ = do(t, c, http.MethodPost, r.URL()+"/v2/dst/c/blobs/uploads/?mount="+digest.FromString("nope").String()+"&from=src/a", nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("mount of a missing blob: %d, want 202", resp.StatusCode)
		}
		// Deletes are enabled.
		resp, _ = do(t, c, http.MethodDelete, r.URL()+"/v2/src/a/manifests/"+b.Descriptor.Digest.String(), nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE manifest: %d", resp.StatusCode)
		}
	})
}

func TestLogOutput(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		var buf syncBuffer
		r := registry.StartT(t, registry.Options{Kind: kind, LogOutput: &buf, LogLevel: "info"})
		resp, err := http.Get(r.URL() + "/v2/nothere/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// V28 writes from its own process: stopping it flushes the pipe.
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "response completed") {
			t.Fatalf("log output lacks the request line:\n%s", buf.String())
		}
	})
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r, err := registry.Start(registry.Options{Kind: kind, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(r.URL()+"/v2/ro/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST on a read-only registry: %d, want 405", resp.StatusCode)
		}
		pid := r.PID()
		if (kind == registry.V28) != (pid != 0) {
			t.Fatalf("PID %d with %v", pid, kind)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if pid != 0 && processExists(pid) {
			t.Fatalf("docker-registry process %d still exists after Close", pid)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := r.Restart(); err == nil {
			t.Fatal("Restart after Close succeeded")
		}
	})
}

func TestRelativeURLs(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind, RelativeURLs: true})
		resp, _ := do(t, &http.Client{}, http.MethodPost, r.URL()+"/v2/rel/blobs/uploads/", nil, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/v2/rel/blobs/uploads/") {
			t.Fatalf("POST: %d Location %q", resp.StatusCode, loc)
		}
		// An empty upload reports Range 0-0, the same as a 1-byte one.
		if resp.Header.Get("Range") != "0-0" {
			t.Fatalf("empty upload Range %q", resp.Header.Get("Range"))
		}
	})
}

// TestStopDrainsRunningRequests stops the registry while an upload's body
// is still being sent: the listener closes, and the request finishes
// before Stop returns.
func TestStopDrainsRunningRequests(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind})
		// With "Expect: 100-continue" the client sends the body only once
		// the registry's handler reads it: the first write below returns
		// when the request is running.
		c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
		resp, _ := do(t, c, http.MethodPost, r.URL()+"/v2/drain/me/blobs/uploads/", nil, nil)
		loc := resp.Header.Get("Location")

		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPatch, loc, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 2000
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Expect", "100-continue")
		patched := make(chan *http.Response, 1)
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("PATCH: %v", err)
			} else {
				resp.Body.Close()
			}
			patched <- resp
		}()
		if _, err := pw.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}

		stopped := make(chan error, 1)
		go func() { stopped <- r.Stop() }()
		for { // until the listener is closed
			conn, err := net.Dial("tcp", r.Addr)
			if err != nil {
				break
			}
			conn.Close()
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a request was running", err)
		default:
		}
		if _, err := pw.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if resp := <-patched; resp == nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-1999" {
			t.Fatalf("PATCH during Stop: %+v", resp)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	})
}
