package faultproxy_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
)

// TestThrottleBothWays: 1 MiB at 4 MiB/s takes at least 200 ms each way
// (the bucket lets at most 64 KiB through ahead of the rate), and the
// bytes arrive intact. Only lower bounds: the tests assert no speed.
func TestThrottleBothWays(t *testing.T) {
	const size, rate = 1 << 20, 4 << 20
	const least = 200 * time.Millisecond
	up := newUpstream(t, size, false)
	p := up.proxy(t, faultproxy.Faults{UploadBytesPerSec: rate, DownloadBytesPerSec: rate})

	start := time.Now()
	data, err := getBlob(t, p)
	if d := time.Since(start); err != nil || !bytes.Equal(data, up.blob) || d < least {
		t.Fatalf("download: %v, %d bytes intact %v, in %v (want at least %v)", err, len(data), bytes.Equal(data, up.blob), d, least)
	}

	body := randomBytes(5, size)
	start = time.Now()
	resp, err := upload(p, body)
	if d := time.Since(start); err != nil || resp.StatusCode != http.StatusAccepted || d < least {
		t.Fatalf("upload: %v %v in %v (want at least %v)", resp, err, d, least)
	}
	if got, err := up.lastUpload(t); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("upstream got %d of %d bytes, %v", len(got), size, err)
	}
	if s := p.Stats(); s.BytesDownloaded != size || s.BytesUploaded != size {
		t.Fatalf("downloaded %d, uploaded %d, want %d each", s.BytesDownloaded, s.BytesUploaded, size)
	}
}

// TestDownloadThrottleHolds: a throttled download is seen part-way
// through, then completes intact once the throttle is lifted.
func TestDownloadThrottleHolds(t *testing.T) {
	const size = 4 << 20
	up := newUpstream(t, size, false)
	p := up.proxy(t, faultproxy.Faults{DownloadBytesPerSec: 1 << 20})
	done := make(chan []byte, 1)
	go func() {
		data, _ := getBlob(t, p)
		done <- data
	}()
	seenMidway(t, "downloaded", func() int64 { return p.Stats().BytesDownloaded }, size)
	p.SetFaults(faultproxy.Faults{}) // lift it; the download in flight speeds up
	if data := <-done; !bytes.Equal(data, up.blob) {
		t.Fatalf("downloaded %d of %d bytes, intact %v", len(data), size, bytes.Equal(data, up.blob))
	}
}

// TestLatency: every request, forwarded or answered by an injected fault,
// takes at least the configured latency.
func TestLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	up := newUpstream(t, 0, false)
	p := up.proxy(t, faultproxy.Faults{Latency: latency})
	for _, want := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		if want == http.StatusServiceUnavailable {
			p.SetFaults(faultproxy.Faults{Latency: latency, Rate503: 1})
		}
		start := time.Now()
		resp, _, err := send(t, http.MethodGet, p.URL()+"/v2/", nil, nil)
		if d := time.Since(start); err != nil || resp.StatusCode != want || d < latency {
			t.Fatalf("GET /v2/: %v %v in %v, want %d after at least %v", resp, err, d, want, latency)
		}
	}
}

// seenMidway waits until counter shows that 1 MiB of a size-byte transfer
// throttled at 1 MiB/s has passed, and fails the test when 3/4 of it
// already has: the throttle holds.
func seenMidway(t *testing.T, what string, counter func() int64, size int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for counter() < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes %s", counter(), what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if n := counter(); n >= size*3/4 {
		t.Fatalf("%d of %d bytes already %s: the throttle does not hold", n, size, what)
	}
}
