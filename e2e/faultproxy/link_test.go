package faultproxy_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
)

const blobPath = "/v2/link/x/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000"
const uploadPath = "/v2/link/x/blobs/uploads/session"

// upstream is a registry stand-in: it serves blob GETs of its blob and
// reads the bodies of uploads to the end, recording what it received.
type upstream struct {
	*httptest.Server
	blob []byte

	mu       sync.Mutex
	received [][]byte // upload bodies, as far as they arrived
	errs     []error  // the error that ended each body (nil: complete)
	uploads  chan struct{}
}

func newUpstream(t *testing.T, blobSize int, useTLS bool) *upstream {
	t.Helper()
	u := &upstream{blob: randomBytes(1, blobSize), uploads: make(chan struct{}, 100)}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	if useTLS {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == blobPath:
		w.Header().Set("Content-Length", fmt.Sprint(len(u.blob)))
		_, _ = w.Write(u.blob)
	case r.URL.Path == uploadPath:
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.received = append(u.received, body)
		u.errs = append(u.errs, err)
		u.mu.Unlock()
		u.uploads <- struct{}{}
		if err != nil {
			// The connection is gone: drop it rather than linger.
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// lastUpload waits for the next upload body to end and returns what
// arrived of it.
func (u *upstream) lastUpload(t *testing.T) ([]byte, error) {
	t.Helper()
	select {
	case <-u.uploads:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never saw the upload end")
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.received[len(u.received)-1], u.errs[len(u.errs)-1]
}

func (u *upstream) proxy(t *testing.T, f faultproxy.Faults) *faultproxy.Proxy {
	t.Helper()
	opts := faultproxy.Options{Faults: f}
	if c := u.Certificate(); c != nil && u.TLS != nil {
		opts.UpstreamRootCAs = x509.NewCertPool()
		opts.UpstreamRootCAs.AddCert(c)
	}
	p, err := faultproxy.New(u.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// upload sends body to the proxy's upload URL and returns the client's
// error, nil when an answer came.
func upload(p *faultproxy.Proxy, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPatch, p.URL()+uploadPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// TestLinkCutUpload: when the link fails inside an upload body, the
// upstream receives exactly the bytes before the failure point (no
// tolerance: the test compares them byte for byte), then loses the
// connection; the client gets no answer. Uploads that fit before the
// point pass and move it closer. Over plain HTTP and TLS, at full speed
// and throttled (small reads).
func TestLinkCutUpload(t *testing.T) {
	for _, c := range []struct {
		name string
		tls  bool
		rate int64
	}{{"plain", false, 0}, {"tls", true, 0}, {"plain-throttled", false, 64 << 20}, {"tls-throttled", true, 64 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			up := newUpstream(t, 0, c.tls)
			p := up.proxy(t, faultproxy.Faults{Seed: 11, CutEvery: 1 << 20, UploadBytesPerSec: c.rate})
			point, ok := p.NextCut()
			if !ok || point < 2 {
				t.Fatalf("NextCut() = %d, %v", point, ok)
			}

			// A body shorter than the point passes whole.
			small := randomBytes(2, int(point/2))
			if resp, err := upload(p, small); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Fatalf("upload before the point: %v %v", resp, err)
			}
			if got, err := up.lastUpload(t); err != nil || !bytes.Equal(got, small) {
				t.Fatalf("upstream got %d of %d bytes, %v", len(got), len(small), err)
			}
			point -= int64(len(small))
			if left, _ := p.NextCut(); left != point {
				t.Fatalf("NextCut() = %d after %d bytes, want %d", left, len(small), point)
			}

			// A body across the point is cut there.
			body := randomBytes(3, int(point)+300_000)
			if resp, err := upload(p, body); err == nil {
				t.Fatalf("upload across the failure point got an answer: %s", resp.Status)
			}
			got, err := up.lastUpload(t)
			if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("upstream body ended with %v, want an unexpected EOF", err)
			}
			if int64(len(got)) != point || !bytes.Equal(got, body[:point]) {
				t.Fatalf("upstream received %d bytes (prefix intact: %v), want the %d before the failure point",
					len(got), bytes.HasPrefix(body, got), point)
			}
			s := p.Stats()
			if s.Faults["link-cut"] != 1 || s.BytesSentBeforeCut != point || s.BytesUploaded != int64(len(small))+point {
				t.Fatalf("faults %v, sent before cut %d, uploaded %d; want 1 link-cut, %d, %d",
					s.Faults, s.BytesSentBeforeCut, s.BytesUploaded, point, int64(len(small))+point)
			}
			if left, _ := p.NextCut(); left < 1 {
				t.Fatalf("no next failure drawn: %d", left)
			}
		})
	}
}

// getBlob downloads the upstream's blob through p.
func getBlob(t *testing.T, p *faultproxy.Proxy) ([]byte, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(p.URL() + blobPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// TestLinkCutDownload: the client receives the bytes of a blob GET before
// the failure point, then the connection is aborted.
func TestLinkCutDownload(t *testing.T) {
	for _, rate := range []int64{0, 64 << 20} {
		t.Run(fmt.Sprintf("rate=%d", rate), func(t *testing.T) {
			up := newUpstream(t, 3<<20, false)
			// Find a seed whose first failure falls inside the blob.
			p := up.proxy(t, faultproxy.Faults{})
			var point int64
			for seed := uint64(1); ; seed++ {
				p.SetFaults(faultproxy.Faults{Seed: seed, CutEvery: 1 << 20, DownloadBytesPerSec: rate})
				if point, _ = p.NextCut(); point < int64(len(up.blob)) {
					break
				}
			}
			data, err := getBlob(t, p)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("GET across the failure point: %v, want an unexpected EOF", err)
			}
			if int64(len(data)) != point || !bytes.Equal(data, up.blob[:point]) {
				t.Fatalf("client received %d bytes (prefix intact: %v), want the %d before the failure point",
					len(data), bytes.HasPrefix(up.blob, data), point)
			}
			if s := p.Stats(); s.Faults["link-cut"] != 1 || s.BytesDownloaded != point {
				t.Fatalf("faults %v, downloaded %d, want 1 link-cut and %d", s.Faults, s.BytesDownloaded, point)
			}
		})
	}
}

// TestLinkCutMean downloads through a link failing every 64 KiB on
// average until it failed 200 times: the bytes per failure average about
// 64 KiB, and the same seed cuts the same downloads at the same offsets.
func TestLinkCutMean(t *testing.T) {
	const every = 64 << 10
	up := newUpstream(t, 256<<10, false)
	p := up.proxy(t, faultproxy.Faults{})
	run := func(seed uint64) (lengths []int, total int64) {
		p.SetFaults(faultproxy.Faults{Seed: seed, CutEvery: every})
		p.Reset()
		for p.Stats().Faults["link-cut"] < 200 {
			data, err := getBlob(t, p)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal(err)
			}
			if (err == nil) != (len(data) == len(up.blob)) {
				t.Fatalf("%d of %d bytes, error %v", len(data), len(up.blob), err)
			}
			lengths = append(lengths, len(data))
			total += int64(len(data))
		}
		return lengths, total
	}
	a, total := run(21)
	mean := float64(total) / 200
	if math.Abs(mean-every)/every > 0.25 {
		t.Errorf("%.0f bytes per link failure on average, want about %d", mean, every)
	}
	if s := p.Stats(); s.BytesDownloaded != total {
		t.Errorf("BytesDownloaded %d, the client received %d", s.BytesDownloaded, total)
	}
	if b, _ := run(21); !slices.Equal(a, b) {
		t.Errorf("the same seed cut differently:\n%v\n%v", a, b)
	}
	if c, _ := run(22); slices.Equal(a, c) {
		t.Error("another seed cut the same downloads at the same offsets")
	}
}
