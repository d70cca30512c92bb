package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/targets"
)

func blob(name string, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromString(name), Size: size}
}

// feed drives the hooks as the engine would for one image with one blob.
func feed(h mirror.Hooks) {
	d := blob("layer", 3<<20)
	h.Planned(mirror.Totals{Images: 1, Blobs: []ocispec.Descriptor{d}})
	h.BlobStart(d, 0)
	h.Progress(d, 1<<20)
	h.BlobEnd(d)
	h.BlobStart(d, 1<<20) // resumed where the registry holds bytes
	h.Progress(d, 2<<20)
	h.BlobEnd(d)
	h.BlobPlaced(d, mirror.Uploaded)
	h.ImageDone(&targets.Image{Source: "busybox:1.36", Target: "reg.local/docker.io/library/busybox:1.36", Status: targets.Copied})
}

func TestProgressModes(t *testing.T) {
	for _, c := range []struct {
		mode ProgressMode
		tty  bool
		want []string
	}{
		{ProgressAuto, false, []string{"plan: 1 of 1 images to copy, 1 blobs, 3.0 MiB\n",
			"[1/1] copied busybox:1.36 → reg.local/docker.io/library/busybox:1.36\n",
			"progress: 1/1 images, 3.0 MiB of 3.0 MiB placed (100%): 3.0 MiB sent, 0 B already at the target (mounted or found), in "}},
		{ProgressAuto, true, []string{"progress: 1/1 images, 3.0 MiB of 3.0 MiB placed (100%)"}},
		{ProgressNone, true, nil},
	} {
		var b bytes.Buffer
		p, err := NewProgress(&b, c.mode, c.tty, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if c.mode != ProgressNone {
			feed(p.Hooks())
		}
		p.Stop()
		p.Stop()
		out := b.String()
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s tty=%v: output lacks %q:\n%s", c.mode, c.tty, w, out)
			}
		}
		if c.want == nil && out != "" {
			t.Errorf("%s: wrote %q", c.mode, out)
		}
		if c.tty && strings.Contains(out, "[1/1] copied") {
			t.Errorf("on a terminal a copied image has no line of its own:\n%s", out)
		}
		if n := len(p.t.active(100)); n != 0 {
			t.Errorf("%s: %d transfers still counted", c.mode, n)
		}
	}
	if _, err := NewProgress(&bytes.Buffer{}, "fancy", false, 1, 0); err == nil {
		t.Error("progress mode fancy accepted")
	}
}

// TestProgressNeverGoesBack drives the events that used to move the bar
// back: a session lost after bytes were sent (the blob starts again from
// byte 0), a transfer resumed from an earlier run's offset, a mount, and a
// referrer's blob the plan did not count.
func TestProgressNeverGoesBack(t *testing.T) {
	p, err := NewProgress(&bytes.Buffer{}, ProgressNone, false, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	h := mirror.Hooks{}
	p.mode = ProgressPlain // the full hooks, without a ticker writing lines
	h = p.Hooks()
	a, b, c, ref := blob("a", 10<<20), blob("b", 20<<20), blob("c", 30<<20), blob("referrer", 30<<20)
	var shown []float64
	var dones []int64
	look := func() {
		p.mu.Lock()
		shown = append(shown, p.t.fraction())
		dones = append(dones, p.t.done)
		p.mu.Unlock()
	}
	h.Planned(mirror.Totals{Images: 2, Blobs: []ocispec.Descriptor{a, b, c}})
	look()
	steps := []func(){
		func() { h.BlobStart(a, 0) },
		func() { h.Progress(a, 6<<20) },
		func() { h.BlobRestarted(a, 6<<20, nil) },
		func() { h.BlobEnd(a) },
		func() { h.BlobStart(a, 0) },
		func() { h.Progress(a, 4<<20) }, // below the 6 MiB already shown
		func() { h.Progress(a, 6<<20) },
		func() { h.BlobPlaced(a, mirror.Uploaded) },
		func() { h.BlobEnd(a) },
		func() { h.BlobStart(b, 15<<20) }, // an earlier run sent 15 MiB
		func() { h.Progress(b, 5<<20) },
		func() { h.BlobPlaced(b, mirror.Uploaded) },
		func() { h.BlobEnd(b) },
		func() { h.BlobStart(ref, 0) }, // found while copying: the total grows
		func() { h.Progress(ref, 30<<20) },
		func() { h.BlobPlaced(ref, mirror.Uploaded) },
		func() { h.BlobEnd(ref) },
		func() { h.BlobPlaced(c, mirror.Mounted) },
	}
	for _, s := range steps {
		s()
		look()
	}
	for i := 1; i < len(shown); i++ {
		if shown[i] < shown[i-1] {
			t.Errorf("step %d: the share done went back from %.3f to %.3f", i, shown[i-1], shown[i])
		}
		if dones[i] < dones[i-1] {
			t.Errorf("step %d: bytes done went back from %d to %d", i, dones[i-1], dones[i])
		}
	}
	if want := []int64{0, 0, 6 << 20, 6 << 20, 6 << 20, 6 << 20, 6 << 20, 10 << 20, 10 << 20, 10 << 20, 25 << 20, 30 << 20}; fmt.Sprint(dones[:12]) != fmt.Sprint(want) {
		t.Errorf("bytes done = %v, want %v", dones[:12], want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.t.total != 90<<20 || p.t.done != p.t.total || shown[len(shown)-1] != 1 {
		t.Errorf("at the end: total %d, done %d, shown %.3f; want 90 MiB, all, 1", p.t.total, p.t.done, shown[len(shown)-1])
	}
	if p.t.sent != 16<<20+5<<20+30<<20 || p.t.mounted != 30<<20 {
		t.Errorf("sent %d, mounted %d; want %d and %d", p.t.sent, p.t.mounted, 16<<20+5<<20+30<<20, 30<<20)
	}
}

// TestRateWindow: the rate follows the last ten seconds, not the whole run.
func TestRateWindow(t *testing.T) {
	var w window
	t0 := time.Unix(1000, 0)
	if r := w.rate(t0, 0); r != 0 {
		t.Errorf("first sample: rate %v, want 0", r)
	}
	if r := w.rate(t0.Add(time.Second), 50_000_000); r != 0 {
		t.Errorf("after 1 s: rate %v, want 0 (unknown) until %s", r, minRateSpan)
	}
	sent := int64(50_000_000)
	for s := 2; s <= 60; s++ { // a minute at 10 MB/s
		sent += 10_000_000
		w.rate(t0.Add(time.Duration(s)*time.Second), sent)
	}
	for s := 61; s <= 70; s++ { // then ten seconds at 1 MB/s
		sent += 1_000_000
		r := w.rate(t0.Add(time.Duration(s)*time.Second), sent)
		if s == 70 && (r < 0.99e6 || r > 1.01e6) {
			t.Errorf("after 10 s at 1 MB/s the rate is %.0f B/s, want 1 MB/s (the run's average is %.0f)", r, float64(sent)/70)
		}
	}
	if len(w.samples) > 12 {
		t.Errorf("the window keeps %d samples of one per second", len(w.samples))
	}
	tl := &tally{total: 100, done: 40}
	if d, ok := tl.eta(6); !ok || d != 10*time.Second {
		t.Errorf("eta of 60 bytes at 6 B/s = %v %v, want 10s", d, ok)
	}
	if _, ok := tl.eta(0); ok {
		t.Error("an eta with no rate")
	}
}

// TestFrame: on a terminal the frame shows the bar and the largest
// transfers in flight, each on its own line, and is redrawn in place.
func TestFrame(t *testing.T) {
	var out bytes.Buffer
	p, err := NewProgress(&out, ProgressBar, true, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop() // no ticker: the test draws
	p.stopped = false
	p.SetWidth(func() int { return 72 })
	clock := time.Unix(2000, 0)
	p.now = func() time.Time { return clock }
	h := p.Hooks()
	p.draw()
	if !strings.Contains(out.String(), "resolving 3 images") {
		t.Errorf("before the plan: %q", out.String())
	}
	var blobs []ocispec.Descriptor
	for i := 1; i <= 6; i++ {
		blobs = append(blobs, blob(fmt.Sprint(i), int64(i)<<20))
	}
	h.Planned(mirror.Totals{Images: 3, Blobs: blobs})
	for _, b := range blobs[:5] { // the largest, blobs[5], is not under way
		h.BlobStart(b, 0)
		h.Progress(b, b.Size/2)
	}
	p.draw()
	clock = clock.Add(2 * time.Second)
	h.Progress(blobs[4], 2<<20)
	out.Reset()
	p.draw()
	frame := out.String()
	if !strings.HasPrefix(frame, "\r\x1b[4A\x1b[J") {
		t.Errorf("the redraw does not start by erasing the 5-line frame: %q", frame)
	}
	lines := strings.Split(strings.TrimPrefix(frame, "\r\x1b[4A\x1b[J"), "\n")
	if len(lines) != 1+frameTopN {
		t.Fatalf("frame of %d lines, want %d:\n%s", len(lines), 1+frameTopN, frame)
	}
	for i, want := range []string{"45%", shortDigest(blobs[4]), shortDigest(blobs[3]), shortDigest(blobs[2]), shortDigest(blobs[1])} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want it to show %s", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "1.0 MiB/s") || !strings.Contains(lines[0], "ETA 12s") {
		t.Errorf("top line %q: want the rate of the last 2 s and the time left", lines[0])
	}
	out.Reset()
	fmt.Fprint(p.Log(), "retry: PATCH http://reg/x: server error; attempt 2\n")
	if got := out.String(); got != "\r\x1b[4A\x1b[Jretry: PATCH http://reg/x: server error; attempt 2\n" || p.frame != 0 {
		t.Errorf("a message written through Log: %q, frame %d; want the frame erased, then the line", got, p.frame)
	}
	for _, l := range lines {
		if len([]rune(l)) >= 72 {
			t.Errorf("line %q is wider than the terminal's 72 columns", l)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
