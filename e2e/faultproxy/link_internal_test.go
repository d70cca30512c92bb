package faultproxy

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// cutOffsets feeds total bytes through a link in chunks of random sizes
// (up to 256 KiB, from chunkSeed) and returns the byte offsets at which it
// failed, up to total-256 KiB (beyond, whether the last chunks reach a
// failure point depends on their sizes).
func cutOffsets(seed uint64, every, total int64, chunkSeed uint64) []int64 {
	var l link
	l.reset(seed, every)
	chunks := rand.New(rand.NewPCG(chunkSeed, 1))
	var offs []int64
	var off int64
	for off < total {
		n := 1 + chunks.IntN(256<<10)
		pass, cut := l.take(n)
		off += int64(pass)
		if !cut && pass != n {
			panic("take passed part of an uncut chunk")
		}
		if cut && off <= total-(256<<10) {
			offs = append(offs, off)
		}
	}
	return offs
}

// TestLinkModel: the distances between failures average CutEvery, are
// spread like an exponential distribution, do not depend on how the bytes
// are chunked, and repeat for a seed.
func TestLinkModel(t *testing.T) {
	const every = 1 << 20
	const total = 4 << 30 // about 4096 failures
	offs := cutOffsets(7, every, total, 1)
	if len(offs) < 3000 {
		t.Fatalf("%d failures over %d bytes at a mean of %d", len(offs), int64(total), every)
	}
	var prev int64
	above := 0
	for _, o := range offs {
		if o-prev > every {
			above++
		}
		prev = o
	}
	mean := float64(offs[len(offs)-1]) / float64(len(offs))
	if math.Abs(mean-every)/every > 0.05 {
		t.Errorf("mean distance between failures %.0f, want %d within 5%%", mean, every)
	}
	// An exponential distribution exceeds its mean with probability 1/e.
	if frac := float64(above) / float64(len(offs)); math.Abs(frac-1/math.E) > 0.03 {
		t.Errorf("%.3f of the distances exceed the mean, want about 1/e = %.3f", frac, 1/math.E)
	}
	if again := cutOffsets(7, every, total, 2); !slices.Equal(offs, again) {
		t.Error("the same seed failed at other offsets when the bytes came in other chunks")
	}
	if other := cutOffsets(8, every, total, 1); slices.Equal(offs[:10], other[:10]) {
		t.Error("another seed failed at the same offsets")
	}
}

// TestLinkTake: the link carries exactly next() bytes and fails on the
// byte after; a link without CutEvery never fails.
func TestLinkTake(t *testing.T) {
	var l link
	l.reset(3, 1000)
	left, ok := l.next()
	if !ok || left < 1 {
		t.Fatalf("next() = %d, %v", left, ok)
	}
	if pass, cut := l.take(int(left)); cut || pass != int(left) {
		t.Fatalf("take(%d) = %d, %v: want all of it, no failure", left, pass, cut)
	}
	if pass, cut := l.take(10); !cut || pass != 0 {
		t.Fatalf("take after the point = %d, %v: want 0, failed", pass, cut)
	}
	if left, _ := l.next(); left < 1 {
		t.Fatalf("no new failure point drawn: %d", left)
	}
	l.reset(3, 0)
	if pass, cut := l.take(1 << 30); cut || pass != 1<<30 {
		t.Fatalf("link without CutEvery: take = %d, %v", pass, cut)
	}
	if _, ok := l.next(); ok {
		t.Fatal("link without CutEvery reports a next failure")
	}
}

// TestLatencyReturnsEarly: a request waiting out Latency whose client
// gives up leaves the proxy without being forwarded.
func TestLatencyReturnsEarly(t *testing.T) {
	forwarded := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { forwarded <- struct{}{} }))
	defer up.Close()
	p, err := New(up.URL, Options{Faults: Faults{Latency: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/v2/", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	inFlight := func() int64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.inFlight
	}
	waitFor(t, "the request to arrive", func() bool { return inFlight() == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request got an answer through an hour of latency")
	}
	waitFor(t, "the proxy to let the request go", func() bool { return inFlight() == 0 })
	select {
	case <-forwarded:
		t.Fatal("the abandoned request was forwarded")
	default:
	}
	if s := p.Stats(); s.MaxInFlight != 1 || s.Requests != 1 {
		t.Fatalf("MaxInFlight %d, Requests %d: the waiting request counts as in flight", s.MaxInFlight, s.Requests)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
