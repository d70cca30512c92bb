package faultproxy

import (
	"context"
	"sync"
	"time"

	"github.com/edgemirror/edgemirror/transport"
)

// chunkFor is the largest piece of a body throttled at rate that passes at
// once, so the bytes flow smoothly rather than in bursts; 0 means no limit.
func chunkFor(rate int64) int {
	if rate <= 0 {
		return 0
	}
	return int(min(max(rate/50, 1<<10), 64<<10))
}

// bucket is the token bucket of one direction of the link, shared by every
// transfer in flight in that direction. Tokens may go negative: a debt each
// transfer pays by sleeping, so concurrent transfers together get the rate.
// It holds at most chunkFor(rate) tokens, so a transfer starting on an
// idle link gets at most one chunk ahead of the rate.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *bucket) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens, b.last = 0, time.Time{}
}

// wait takes n tokens at rate bytes per second and sleeps off any debt,
// returning early with ctx's error when ctx ends.
func (b *bucket) wait(ctx context.Context, rate int64, n int) error {
	burst := float64(chunkFor(rate))
	b.mu.Lock()
	now := time.Now()
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	}
	b.last = now
	b.tokens -= float64(n)
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / float64(rate) * float64(time.Second))
	}
	b.mu.Unlock()
	return transport.Sleep(ctx, d)
}

// uploadRate returns the current upload limit (<= 0: none).
func (p *Proxy) uploadRate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.UploadBytesPerSec
}

// downloadRate returns the current download limit (<= 0: none).
func (p *Proxy) downloadRate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.DownloadBytesPerSec
}
