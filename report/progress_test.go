package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/targets"
)

// feed drives the hooks as the engine would for one image with one blob.
func feed(h mirror.Hooks) {
	d := ocispec.Descriptor{Digest: digest.FromString("layer"), Size: 3 << 20}
	h.BlobStart(d)
	h.BlobStart(d) // a resumed transfer starts again
	h.Progress(d, 3<<20)
	h.BlobEnd(d)
	h.BlobEnd(d)
	h.ImageDone(&targets.Image{Source: "busybox:1.36", Target: "reg.local/docker.io/library/busybox:1.36", Status: targets.Copied})
}

func TestProgressModes(t *testing.T) {
	for _, c := range []struct {
		mode ProgressMode
		tty  bool
		want []string
	}{
		{ProgressAuto, false, []string{"[1/1] copied busybox:1.36 → reg.local/docker.io/library/busybox:1.36", "progress: 1/1 images, 3.0 MiB of 3.0 MiB sent"}},
		{ProgressAuto, true, []string{"progress: 1/1 images, 3.0 MiB of 3.0 MiB sent"}},
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
		out := b.String()
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s tty=%v: output lacks %q:\n%s", c.mode, c.tty, w, out)
			}
		}
		if c.want == nil && out != "" {
			t.Errorf("%s: wrote %q", c.mode, out)
		}
		if p.transfers.Load() != 0 {
			t.Errorf("%s: %d transfers still counted", c.mode, p.transfers.Load())
		}
	}
	if _, err := NewProgress(&bytes.Buffer{}, "fancy", false, 1, 0); err == nil {
		t.Error("progress mode fancy accepted")
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
