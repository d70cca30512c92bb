package report

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tally is the arithmetic of a run's progress, fed by the engine's hooks
// under Progress's lock. Done bytes are the sum, over the blobs, of the
// furthest each got: a blob sent again from byte 0 (its session lost) does
// not count twice or go back, a blob resumed from an offset counts what an
// earlier run sent, and a blob mounted or found in place counts whole. So
// done never decreases and never passes the total.
type tally struct {
	total   int64 // bytes to place, fixed when the run is planned
	done    int64
	sent    int64 // bytes that crossed the wire, resent ones included
	mounted int64 // bytes mounted or found in place
	blobs   map[digest.Digest]*blobTally
	window  window
	shown   float64 // the fraction last shown: it never goes back
}

// blobTally is one blob's progress.
type blobTally struct {
	desc   ocispec.Descriptor
	pos    int64 // where its transfer is
	done   int64 // the furthest it got
	active int   // its byte streams open now
}

func newTally() *tally { return &tally{blobs: map[digest.Digest]*blobTally{}} }

// blob returns the tally of d; a blob the plan did not count (a referrer's)
// adds its size to the total.
func (t *tally) blob(d ocispec.Descriptor) *blobTally {
	b, ok := t.blobs[d.Digest]
	if !ok {
		b = &blobTally{desc: d}
		t.blobs[d.Digest] = b
		t.total += d.Size
	}
	return b
}

// plan sets the total from the blobs the run will place.
func (t *tally) plan(blobs []ocispec.Descriptor) {
	for _, d := range blobs {
		t.blob(d)
	}
}

// reach records that b got to offset n.
func (t *tally) reach(b *blobTally, n int64) {
	n = min(n, b.desc.Size)
	if n > b.done {
		t.done += n - b.done
		b.done = n
	}
}

func (t *tally) start(d ocispec.Descriptor, off int64) {
	b := t.blob(d)
	b.active++
	b.pos = off
	t.reach(b, off) // an earlier run or attempt sent these
}

func (t *tally) progress(d ocispec.Descriptor, n int64) {
	b := t.blob(d)
	t.sent += n
	b.pos += n
	t.reach(b, b.pos)
}

func (t *tally) end(d ocispec.Descriptor) {
	if b := t.blob(d); b.active > 0 {
		b.active--
	}
}

// placed records a blob in place; sent is false when it was mounted or
// found there.
func (t *tally) placed(d ocispec.Descriptor, sent bool) {
	b := t.blob(d)
	if !sent {
		t.mounted += d.Size - b.done
	}
	t.reach(b, d.Size)
}

// restarted records a blob whose transfer starts again from byte 0.
func (t *tally) restarted(d ocispec.Descriptor) { t.blob(d).pos = 0 }

// fraction is the share of the total done, as last shown or more.
func (t *tally) fraction() float64 {
	if t.total > 0 {
		t.shown = max(t.shown, float64(t.done)/float64(t.total))
	}
	return t.shown
}

// active returns the transfers under way, largest first, at most n.
func (t *tally) active(n int) []*blobTally {
	var out []*blobTally
	for _, b := range t.blobs {
		if b.active > 0 {
			out = append(out, b)
		}
	}
	sortBlobs(out)
	return out[:min(n, len(out))]
}

// sortBlobs orders transfers largest first, then by digest.
func sortBlobs(bs []*blobTally) {
	slices.SortFunc(bs, func(a, b *blobTally) int {
		if c := cmp.Compare(b.desc.Size, a.desc.Size); c != 0 {
			return c
		}
		return strings.Compare(a.desc.Digest.String(), b.desc.Digest.String())
	})
}

// rate is the send rate in bytes per second over the last windowSpan (0
// while unknown); each call takes a sample.
func (t *tally) rate(now time.Time) float64 { return t.window.rate(now, t.sent) }

// eta is the time left at rate; ok is false while the rate is unknown.
func (t *tally) eta(rate float64) (time.Duration, bool) {
	if rate <= 0 || t.total == 0 {
		return 0, false
	}
	left := float64(t.total - t.done)
	return time.Duration(left / rate * float64(time.Second)), true
}

// window measures the send rate over the last windowSpan.
type window struct {
	samples []rateSample
}

type rateSample struct {
	at   time.Time
	sent int64
}

// windowSpan is how far back the rate looks: long enough to smooth the
// bursts of chunked uploads, short enough to follow a link that slows.
const windowSpan = 10 * time.Second

// minRateSpan is the shortest time a rate is told over: over less, the
// first bursts (buffers filling) would promise hours or seconds.
const minRateSpan = 2 * time.Second

// rate records sent at now and returns the bytes per second since the
// oldest sample within windowSpan; 0 (unknown) until the samples span
// minRateSpan.
func (w *window) rate(now time.Time, sent int64) float64 {
	w.samples = append(w.samples, rateSample{now, sent})
	cut := 0
	for cut < len(w.samples)-2 && now.Sub(w.samples[cut+1].at) >= windowSpan {
		cut++
	}
	w.samples = w.samples[cut:]
	first := w.samples[0]
	span := now.Sub(first.at)
	if span < minRateSpan {
		return 0
	}
	return float64(sent-first.sent) / span.Seconds()
}
