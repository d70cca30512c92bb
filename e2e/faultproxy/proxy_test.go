package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setup starts a registry and a proxy in front of it.
func setup(t *testing.T, ropts registry.Options, popts faultproxy.Options) (*registry.Registry, *faultproxy.Proxy) {
	t.Helper()
	r := registry.StartT(t, ropts)
	if r.CertPool != nil {
		popts.UpstreamRootCAs = r.CertPool
	}
	p, err := faultproxy.New(r.URL(), popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return r, p
}

func send(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func TestClassify(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	cases := []struct {
		method, path string
		want         faultproxy.Kind
	}{
		{"GET", "/v2/", faultproxy.KindBase},
		{"GET", "/v2/_catalog", faultproxy.KindCatalog},
		{"HEAD", "/v2/a/b/blobs/" + d, faultproxy.KindBlobHead},
		{"GET", "/v2/a/blobs/" + d, faultproxy.KindBlobGet},
		{"DELETE", "/v2/a/blobs/" + d, faultproxy.KindBlobDelete},
		{"POST", "/v2/a/blobs/uploads/", faultproxy.KindUploadPost},
		{"POST", "/v2/a/blobs/uploads/?mount=" + d + "&from=b", faultproxy.KindMount},
		{"PATCH", "/v2/a/blobs/uploads/uuid?_state=x", faultproxy.KindUploadPatch},
		{"PUT", "/v2/a/blobs/uploads/uuid?digest=" + d, faultproxy.KindUploadPut},
		{"GET", "/v2/a/blobs/uploads/uuid", faultproxy.KindUploadStatus},
		{"DELETE", "/v2/a/blobs/uploads/uuid", faultproxy.KindUploadDelete},
		{"HEAD", "/v2/quay.io/x/manifests/v1", faultproxy.KindManifestHead},
		{"GET", "/v2/x/manifests/" + d, faultproxy.KindManifestGet},
		{"PUT", "/v2/x/manifests/v1", faultproxy.KindManifestPut},
		{"DELETE", "/v2/x/manifests/" + d, faultproxy.KindManifestDelete},
		{"GET", "/v2/x/tags/list", faultproxy.KindTags},
		{"GET", "/v2/x/referrers/" + d, faultproxy.KindReferrers},
		{"GET", "/metrics", faultproxy.KindOther},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, "http://h"+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := faultproxy.Classify(req); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.path, got, c.want)
		}
	}
}

// TestCountsAndLocation pushes through the proxy: the bytes uploaded equal
// the unique blob bytes, Location headers point at the proxy, mounts and
// downloads are counted.
func TestCountsAndLocation(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			_, p := setup(t, registry.Options{TLS: useTLS}, faultproxy.Options{})
			ctx := ctxT(t)
			tgt := imagebuild.Target{PlainHTTP: true}
			shared := imagebuild.Layer{Seed: 7, Size: 3<<20 + 17}
			img1 := imagebuild.Image{Layers: []imagebuild.Layer{shared, {Seed: 8, Size: 100_000}}}
			img2 := imagebuild.Image{Layers: []imagebuild.Layer{shared, {Seed: 9, Size: 1}}, Labels: map[string]string{"n": "2"}}
			b1, err := imagebuild.PushImage(ctx, tgt, p.Host()+"/app/one:1", img1)
			if err != nil {
				t.Fatalf("push through proxy: %v", err)
			}
			b2, err := imagebuild.PushImage(ctx, tgt, p.Host()+"/app/one:2", img2)
			if err != nil {
				t.Fatal(err)
			}
			s := p.Stats()
			want := imagebuild.SumUniqueBlobBytes(b1, b2)
			if s.BytesUploaded != want {
				t.Errorf("BytesUploaded %d, want %d", s.BytesUploaded, want)
			}
			blobs := imagebuild.UniqueBlobs(b1, b2)
			if s.UploadsCompleted != int64(len(blobs)) || len(s.UploadsByDigest) != len(blobs) {
				t.Errorf("UploadsCompleted %d (%d digests), want %d", s.UploadsCompleted, len(s.UploadsByDigest), len(blobs))
			}
			for _, d := range blobs {
				if s.UploadsByDigest[d.Digest.String()] != 1 {
					t.Errorf("blob %s uploaded %d times", d.Digest, s.UploadsByDigest[d.Digest.String()])
				}
			}
			if s.ByKind[faultproxy.KindManifestPut] != 2 || s.ByMethod[http.MethodPut] != int64(len(blobs))+2 {
				t.Errorf("ByKind %v ByMethod %v", s.ByKind, s.ByMethod)
			}
			if s.ByStatus[http.StatusCreated] != int64(len(blobs))+2 {
				t.Errorf("ByStatus %v", s.ByStatus)
			}

			// Location of an upload names the proxy.
			p.Reset()
			resp, _, err := send(t, http.MethodPost, p.URL()+"/v2/app/two/blobs/uploads/", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, p.URL()+"/v2/app/two/blobs/uploads/") {
				t.Fatalf("Location %q does not point at the proxy %s", loc, p.URL())
			}
			// Mounts are counted.
			d := b1.Layers[0].Digest.String()
			resp, _, err = send(t, http.MethodPost, p.URL()+"/v2/app/two/blobs/uploads/?mount="+d+"&from=app/one", nil, nil)
			if err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("mount: %v %v", resp, err)
			}
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, p.URL()+"/") {
				t.Fatalf("mount Location %q", loc)
			}
			// Blob downloads are counted.
			resp, data, err := send(t, http.MethodGet, p.URL()+"/v2/app/two/blobs/"+d, nil, nil)
			if err != nil || resp.StatusCode != http.StatusOK || int64(len(data)) != shared.Size {
				t.Fatalf("GET blob: %v %d bytes", err, len(data))
			}
			s = p.Stats()
			if s.MountsSucceeded != 1 || s.MountsByDigest[d] != 1 || s.ByKind[faultproxy.KindMount] != 1 || s.ByKind[faultproxy.KindUploadPost] != 1 {
				t.Errorf("mount counters: %+v", s)
			}
			if s.BytesDownloaded != shared.Size || s.BytesUploaded != 0 || s.Requests != 3 {
				t.Errorf("after reset: downloaded %d uploaded %d requests %d", s.BytesDownloaded, s.BytesUploaded, s.Requests)
			}
		})
	}
}

func TestStatusFaults(t *testing.T) {
	_, p := setup(t, registry.Options{}, faultproxy.Options{})

	// Hook: fault exactly the 2nd and 3rd GET /v2/.
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind != faultproxy.KindBase {
			return faultproxy.Fault{}, false
		}
		switch info.Seq {
		case 2:
			return faultproxy.Status429(7), true
		case 3:
			return faultproxy.Status503(), true
		}
		return faultproxy.Fault{}, false
	})
	want := []int{200, 429, 503, 200}
	for i, w := range want {
		resp, body, err := send(t, http.MethodGet, p.URL()+"/v2/", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != w {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, w)
		}
		if w == 429 && (resp.Header.Get("Retry-After") != "7" || !bytes.Contains(body, []byte("TOOMANYREQUESTS"))) {
			t.Fatalf("429: Retry-After %q body %s", resp.Header.Get("Retry-After"), body)
		}
	}
	s := p.Stats()
	if s.Faults["status-429"] != 1 || s.Faults["status-503"] != 1 || s.ByStatus[200] != 2 {
		t.Fatalf("stats %+v", s)
	}
	p.SetHook(nil)

	// Random 429s with the default Retry-After.
	p.SetFaults(faultproxy.Faults{Rate429: 1})
	resp, _, err := send(t, http.MethodGet, p.URL()+"/v2/", nil, nil)
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("random 429: %v %v", resp, err)
	}
	// Restricted to manifest kinds: the base ping passes.
	p.SetFaults(faultproxy.Faults{Rate503: 1, Kinds: []faultproxy.Kind{faultproxy.KindManifestHead}})
	resp, _, _ = send(t, http.MethodGet, p.URL()+"/v2/", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("base with manifest-only faults: %d", resp.StatusCode)
	}
	resp, _, _ = send(t, http.MethodHead, p.URL()+"/v2/x/manifests/latest", nil, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("manifest HEAD: %d, want 503", resp.StatusCode)
	}

	// The same seed faults the same requests.
	pattern := func() string {
		p.SetFaults(faultproxy.Faults{Seed: 42, Rate503: 0.3, Rate429: 0.2, RetryAfter: 2})
		var sb strings.Builder
		for range 40 {
			resp, _, err := send(t, http.MethodGet, p.URL()+"/v2/", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			sb.WriteString(strconv.Itoa(resp.StatusCode) + " ")
		}
		return sb.String()
	}
	a, b := pattern(), pattern()
	if a != b || !strings.Contains(a, "200") || !strings.Contains(a, "503") || !strings.Contains(a, "429") {
		t.Fatalf("seeded patterns differ or lack a status:\n%s\n%s", a, b)
	}
	p.SetFaults(faultproxy.Faults{})
}

func TestCutBlobGet(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{})
	ctx := ctxT(t)
	b, err := imagebuild.PushImage(ctx, imagebuild.Target{PlainHTTP: true}, r.Host()+"/cut/img:1", imagebuild.SingleArch(imagebuild.OCI, 11, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	layer := b.Layers[0]
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindBlobGet && info.Seq == 1 {
			return faultproxy.Cut(0), true
		}
		return faultproxy.Fault{}, false
	})
	u := p.URL() + "/v2/cut/img/blobs/" + layer.Digest.String()
	resp, data, err := send(t, http.MethodGet, u, nil, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut GET: want unexpected EOF, got %v", err)
	}
	if resp.ContentLength != layer.Size || int64(len(data)) != layer.Size/2 {
		t.Fatalf("cut GET: Content-Length %d, got %d bytes, want %d", resp.ContentLength, len(data), layer.Size/2)
	}
	want, _ := io.ReadAll(io.LimitReader(imagebuild.Layer{Seed: imagebuild.DeriveSeed(11, 0), Size: layer.Size}.Reader(), layer.Size/2))
	if !bytes.Equal(data, want) {
		t.Fatal("bytes before the cut differ from the blob's")
	}
	// The next GET is whole.
	_, data, err = send(t, http.MethodGet, u, nil, nil)
	if err != nil || int64(len(data)) != layer.Size {
		t.Fatalf("second GET: %v, %d bytes", err, len(data))
	}
	s := p.Stats()
	if s.Faults["cut"] != 1 || s.BytesDownloaded != layer.Size+layer.Size/2 {
		t.Fatalf("stats: faults %v downloaded %d", s.Faults, s.BytesDownloaded)
	}

	// A random cut at a fixed offset.
	p.SetHook(nil)
	p.SetFaults(faultproxy.Faults{RateCut: 1, CutAfter: 1000})
	_, data, err = send(t, http.MethodGet, u, nil, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(data) != 1000 {
		t.Fatalf("random cut: %v, %d bytes", err, len(data))
	}
}

// TestCutUpload cuts a PATCH body: the client's request fails, the proxy
// counts only what it read, and the registry keeps the bytes that reached
// it (distribution v3 behaviour).
func TestCutUpload(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{})
	layer := imagebuild.Layer{Seed: 12, Size: 2 << 20}
	resp, _, err := send(t, http.MethodPost, p.URL()+"/v2/up/x/blobs/uploads/", nil, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %v %v", resp, err)
	}
	loc := resp.Header.Get("Location")
	const cutAt = 700_000
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindUploadPatch {
			return faultproxy.Cut(cutAt), true
		}
		return faultproxy.Fault{}, false
	})
	req, err := http.NewRequest(http.MethodPatch, loc, layer.Reader())
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = layer.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	c := &http.Client{Transport: &http.Transport{}}
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cut PATCH succeeded: %d", resp.StatusCode)
	}
	s := p.Stats()
	if s.BytesUploaded != cutAt || s.BytesSentBeforeCut != cutAt || s.Faults["cut"] != 1 {
		t.Fatalf("BytesUploaded %d, BytesSentBeforeCut %d (want %d each), faults %v", s.BytesUploaded, s.BytesSentBeforeCut, cutAt, s.Faults)
	}
	// Ask the registry directly for the offset; it settles once the
	// aborted request has drained.
	status := strings.Replace(loc, p.URL(), r.URL(), 1)
	var rng string
	for range 100 {
		resp, _, err := send(t, http.MethodGet, status, nil, nil)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("upload status: %v %v", resp, err)
		}
		rng = resp.Header.Get("Range")
		if rng == fmt.Sprintf("0-%d", cutAt-1) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rng != fmt.Sprintf("0-%d", cutAt-1) {
		t.Fatalf("registry offset Range %q, want 0-%d", rng, cutAt-1)
	}
}

// TestRandomCutsAreDeterministic pushes the same images twice through a
// proxy with seeded random cuts: the same uploads fail each time.
func TestRandomCutsAreDeterministic(t *testing.T) {
	run := func() (string, faultproxy.Stats) {
		_, p := setup(t, registry.Options{}, faultproxy.Options{Faults: faultproxy.Faults{Seed: 5, RateCut: 0.5}})
		var sb strings.Builder
		for i := range 6 {
			img := imagebuild.SingleArch(imagebuild.OCI, uint64(100+i), 64<<10)
			_, err := imagebuild.PushImage(ctxT(t), imagebuild.Target{PlainHTTP: true, Concurrency: 1}, p.Host()+"/det/x:"+strconv.Itoa(i), img)
			sb.WriteString(strconv.FormatBool(err == nil) + " ")
		}
		return sb.String(), p.Stats()
	}
	a, sa := run()
	b, sb := run()
	if a != b || sa.Faults["cut"] != sb.Faults["cut"] || sa.Faults["cut"] == 0 {
		t.Fatalf("runs differ or nothing cut: %q (%v) vs %q (%v)", a, sa.Faults, b, sb.Faults)
	}
}

// TestLargeBlobStreams pushes and pulls a 192 MiB layer through the proxy.
func TestLargeBlobStreams(t *testing.T) {
	_, p := setup(t, registry.Options{}, faultproxy.Options{})
	ctx := ctxT(t)
	b, err := imagebuild.PushImage(ctx, imagebuild.Target{PlainHTTP: true}, p.Host()+"/big/x:1", imagebuild.SingleArch(imagebuild.OCI, 13, 192<<20))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := imagebuild.Target{PlainHTTP: true}.Repository(p.Host() + "/big/x")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := repo.Blobs().Fetch(ctx, b.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != b.Layers[0].Size {
		t.Fatalf("pull: %d bytes, %v", n, err)
	}
	s := p.Stats()
	if s.BytesUploaded != imagebuild.SumUniqueBlobBytes(b) || s.BytesDownloaded != b.Layers[0].Size {
		t.Fatalf("uploaded %d downloaded %d", s.BytesUploaded, s.BytesDownloaded)
	}
}

// TestUploadThrottle: a throttled upload is seen part-way through, then
// completes intact once the throttle is lifted.
func TestUploadThrottle(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{Faults: faultproxy.Faults{UploadBytesPerSec: 1 << 20}})
	layer := imagebuild.Layer{Seed: 21, Size: 4 << 20}
	resp, _, err := send(t, http.MethodPost, p.URL()+"/v2/slow/x/blobs/uploads/", nil, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %v %v", resp, err)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPut, loc+sep+"digest="+layer.Digest().String(), layer.Reader())
		if err != nil {
			done <- err
			return
		}
		req.ContentLength = layer.Size
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				err = fmt.Errorf("PUT: %s", resp.Status)
			}
		}
		done <- err
	}()

	// At 1 MiB/s the 4 MiB body is seen in flight: past 1 MiB, far from
	// its end.
	seenMidway(t, "uploaded", func() int64 { return p.Stats().BytesUploaded }, layer.Size)
	p.SetFaults(faultproxy.Faults{}) // lift it; the upload in flight speeds up
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.BytesUploaded != layer.Size || s.UploadsByDigest[layer.Digest().String()] != 1 {
		t.Fatalf("uploaded %d bytes, uploads %v", s.BytesUploaded, s.UploadsByDigest)
	}
	resp, _, err = send(t, http.MethodHead, r.URL()+"/v2/slow/x/blobs/"+layer.Digest().String(), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != layer.Size {
		t.Fatalf("blob at the registry: %v %v", resp, err)
	}
}

// TestRespond: canned answers replace the registry's, HEAD gets the
// headers only, and a Content-Length in the header wins.
func TestRespond(t *testing.T) {
	_, p := setup(t, registry.Options{}, faultproxy.Options{})
	body := []byte(`{"not":"a manifest"`)
	hdr := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}, "Docker-Content-Digest": {"sha256:" + strings.Repeat("0", 64)}}
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		switch {
		case faultproxy.Repository(r) == "canned/x" && info.Kind == faultproxy.KindManifestGet:
			return faultproxy.Respond(http.StatusOK, hdr, body), true
		case faultproxy.Repository(r) == "canned/x" && info.Kind == faultproxy.KindManifestHead:
			return faultproxy.Respond(0, http.Header{"Content-Length": {"5242880"}}, nil), true
		case faultproxy.Repository(r) == "canned/denied":
			return faultproxy.Respond(http.StatusForbidden, http.Header{"Content-Type": {"application/json"}}, []byte(`{"errors":[{"code":"DENIED","message":"no"}]}`)), true
		}
		return faultproxy.Fault{}, false
	})
	resp, data, err := send(t, http.MethodGet, p.URL()+"/v2/canned/x/manifests/1", nil, nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(data, body) || resp.Header.Get("Docker-Content-Digest") != hdr.Get("Docker-Content-Digest") || resp.ContentLength != int64(len(body)) {
		t.Fatalf("canned GET: %v %v %q", resp, err, data)
	}
	resp, _, err = send(t, http.MethodHead, p.URL()+"/v2/canned/x/manifests/1", nil, nil)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 5<<20 {
		t.Fatalf("canned HEAD: %v %v", resp, err)
	}
	resp, data, err = send(t, http.MethodGet, p.URL()+"/v2/canned/denied/manifests/1", nil, nil)
	if err != nil || resp.StatusCode != 403 || !bytes.Contains(data, []byte("DENIED")) {
		t.Fatalf("canned 403: %v %v %s", resp, err, data)
	}
	// Other repositories reach the registry.
	resp, _, _ = send(t, http.MethodGet, p.URL()+"/v2/other/manifests/1", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("forwarded GET: %d, want the registry's 404", resp.StatusCode)
	}
	s := p.Stats()
	if s.Faults["respond-200"] != 2 || s.Faults["respond-403"] != 1 || s.ByStatus[200] != 2 || s.ByStatus[403] != 1 || s.ByStatus[404] != 1 {
		t.Fatalf("stats: faults %v statuses %v", s.Faults, s.ByStatus)
	}
}

// TestRewrite: the client gets the rewritten manifest with its new
// length and the registry's other headers; HEAD passes untouched.
func TestRewrite(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{})
	b, err := imagebuild.PushImage(ctxT(t), imagebuild.Target{PlainHTTP: true}, r.Host()+"/rw/x:1", imagebuild.SingleArch(imagebuild.OCI, 31, 1000))
	if err != nil {
		t.Fatal(err)
	}
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindManifestGet || info.Kind == faultproxy.KindManifestHead {
			return faultproxy.Rewrite(func(body []byte) []byte { return append([]byte("garbage"), body[:10]...) }), true
		}
		return faultproxy.Fault{}, false
	})
	hdr := map[string]string{"Accept": b.Descriptor.MediaType}
	resp, data, err := send(t, http.MethodGet, p.URL()+"/v2/rw/x/manifests/1", nil, hdr)
	want := append([]byte("garbage"), b.Manifest[:10]...)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(data, want) || resp.ContentLength != int64(len(want)) {
		t.Fatalf("rewritten GET: %v %v %q", resp, err, data)
	}
	if resp.Header.Get("Docker-Content-Digest") != b.Descriptor.Digest.String() {
		t.Fatalf("Docker-Content-Digest %q, want the registry's %s", resp.Header.Get("Docker-Content-Digest"), b.Descriptor.Digest)
	}
	resp, _, err = send(t, http.MethodHead, p.URL()+"/v2/rw/x/manifests/1", nil, hdr)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(b.Manifest)) {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	if s := p.Stats(); s.Faults["rewrite"] != 1 {
		t.Fatalf("faults %v", s.Faults)
	}
}

// TestCorruptBody flips one byte of a blob GET (at an offset, and in the
// middle) and of an upload, which the registry then refuses.
func TestCorruptBody(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{})
	b, err := imagebuild.PushImage(ctxT(t), imagebuild.Target{PlainHTTP: true}, r.Host()+"/bad/x:1", imagebuild.SingleArch(imagebuild.OCI, 41, 300_000))
	if err != nil {
		t.Fatal(err)
	}
	layer := b.Layers[0]
	orig, _ := io.ReadAll(imagebuild.Layer{Seed: imagebuild.DeriveSeed(41, 0), Size: layer.Size}.Reader())
	for _, c := range []struct{ offset, want int64 }{{0, 0}, {123_457, 123_457}, {-1, layer.Size / 2}, {1 << 40, layer.Size - 1}} {
		p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
			if info.Kind == faultproxy.KindBlobGet {
				return faultproxy.CorruptBody(c.offset), true
			}
			return faultproxy.Fault{}, false
		})
		resp, data, err := send(t, http.MethodGet, p.URL()+"/v2/bad/x/blobs/"+layer.Digest.String(), nil, nil)
		if err != nil || resp.StatusCode != 200 || int64(len(data)) != layer.Size {
			t.Fatalf("offset %d: %v %v, %d bytes", c.offset, resp, err, len(data))
		}
		var diff []int64
		for i := range data {
			if data[i] != orig[i] {
				diff = append(diff, int64(i))
			}
		}
		if len(diff) != 1 || diff[0] != c.want || data[c.want] != orig[c.want]^0xff {
			t.Fatalf("offset %d: bytes differing at %v, want only %d", c.offset, diff, c.want)
		}
	}

	// A corrupted monolithic upload: the registry refuses the digest.
	p.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindUploadPut {
			return faultproxy.CorruptBody(-1), true
		}
		return faultproxy.Fault{}, false
	})
	resp, _, err := send(t, http.MethodPost, p.URL()+"/v2/bad/y/blobs/uploads/", nil, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %v %v", resp, err)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, data, err := send(t, http.MethodPut, loc+sep+"digest="+layer.Digest.String(), bytes.NewReader(orig), map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil || resp.StatusCode != http.StatusBadRequest || !bytes.Contains(data, []byte("DIGEST_INVALID")) {
		t.Fatalf("corrupted upload: %v %v %s", resp, err, data)
	}
	if s := p.Stats(); s.Faults["corrupt"] != 5 || s.BytesUploaded != layer.Size {
		t.Fatalf("faults %v, uploaded %d", s.Faults, s.BytesUploaded)
	}
}

func TestRepository(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for path, want := range map[string]string{
		"/v2/":                             "",
		"/v2/_catalog":                     "",
		"/v2/a/b/blobs/" + d:               "a/b",
		"/v2/quay.io/x/y/manifests/v1":     "quay.io/x/y",
		"/v2/a/blobs/uploads/":             "a",
		"/v2/a/blobs/uploads/uuid":         "a",
		"/v2/x/tags/list":                  "x",
		"/v2/x/referrers/" + d:             "x",
		"/v2/manifests/y/manifests/latest": "manifests/y",
		"/metrics":                         "",
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://h"+path, nil)
		if got := faultproxy.Repository(req); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}
