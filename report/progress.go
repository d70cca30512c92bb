package report

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/schollz/progressbar/v3"

	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/targets"
)

// ProgressMode is the --progress setting.
type ProgressMode string

// The progress modes.
const (
	ProgressAuto  ProgressMode = "auto"  // a bar on a terminal, plain lines otherwise
	ProgressBar   ProgressMode = "bar"   // a progress bar
	ProgressPlain ProgressMode = "plain" // a line per image and a periodic summary line
	ProgressNone  ProgressMode = "none"  // nothing
)

// Progress renders a run's progress on stderr. It never writes to stdout.
type Progress struct {
	w        io.Writer
	mode     ProgressMode
	images   int
	interval time.Duration
	start    time.Time

	done      atomic.Int64
	sent      atomic.Int64
	total     atomic.Int64
	transfers atomic.Int64

	mu      sync.Mutex      // serializes writes to w and guards seen
	seen    map[string]bool // digests counted in total
	bar     *progressbar.ProgressBar
	stop    chan struct{}
	stopped atomic.Bool
	wg      sync.WaitGroup
}

// NewProgress starts progress output for a run of images. mode auto picks a
// bar when tty is true; interval is the period of plain summary lines
// (<= 0 means the default, 10s).
func NewProgress(w io.Writer, mode ProgressMode, tty bool, images int, interval time.Duration) (*Progress, error) {
	mode, err := ParseProgressMode(string(mode))
	if err != nil {
		return nil, err
	}
	if mode == ProgressAuto {
		mode = ProgressPlain
		if tty {
			mode = ProgressBar
		}
	}
	if interval <= 0 {
		interval = 10 * time.Second
	}
	p := &Progress{w: w, mode: mode, images: images, interval: interval, start: time.Now(), stop: make(chan struct{}), seen: map[string]bool{}}
	switch mode {
	case ProgressBar:
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetDescription(p.describe()),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
		)
	case ProgressPlain:
		p.wg.Add(1)
		go p.tick()
	}
	return p, nil
}

// ParseProgressMode checks a --progress value; "" is auto.
func ParseProgressMode(s string) (ProgressMode, error) {
	switch m := ProgressMode(s); m {
	case "":
		return ProgressAuto, nil
	case ProgressAuto, ProgressBar, ProgressPlain, ProgressNone:
		return m, nil
	}
	return "", fmt.Errorf("--progress %q: use auto, bar, plain or none", s)
}

func (p *Progress) describe() string {
	return fmt.Sprintf("images %d/%d, %d transfers", p.done.Load(), p.images, p.transfers.Load())
}

func (p *Progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.line(p.summary())
		}
	}
}

func (p *Progress) summary() string {
	secs := time.Since(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.sent.Load()) / secs
	}
	return fmt.Sprintf("progress: %d/%d images, %s of %s sent (%s/s), %d transfers active",
		p.done.Load(), p.images, Bytes(p.sent.Load()), Bytes(p.total.Load()), Bytes(int64(rate)), p.transfers.Load())
}

func (p *Progress) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear() // the bar draws itself again on its next update
	}
	fmt.Fprintln(p.w, s)
}

// restarted says in one line that a blob starts over because the target
// lost its upload session. It is shown in every progress mode, as retries
// are: it explains bytes sent twice.
func (p *Progress) restarted(d ocispec.Descriptor, held int64, _ error) {
	p.line(fmt.Sprintf("restarting blob %s (%s) from byte 0: the registry dropped its upload session holding %s "+
		"(distribution 2.8, Harbor and zot cannot resume a session whose chunk was cut mid-body)",
		shortDigest(d), Bytes(d.Size), Bytes(held)))
}

func shortDigest(d ocispec.Descriptor) string {
	s := d.Digest.String()
	if len(s) > 19 {
		s = s[:19]
	}
	return s
}

// Hooks returns the engine hooks that feed this progress.
func (p *Progress) Hooks() mirror.Hooks {
	if p.mode == ProgressNone {
		return mirror.Hooks{BlobRestarted: p.restarted}
	}
	return mirror.Hooks{
		BlobRestarted: p.restarted,
		ImageDone: func(im *targets.Image) {
			n := p.done.Add(1)
			if p.mode == ProgressPlain {
				msg := fmt.Sprintf("[%d/%d] %s %s", n, p.images, im.Status, im.Source)
				if im.Target != "" {
					msg += " → " + im.Target
				}
				if im.Reason != "" {
					msg += " (" + im.Reason + ")"
				}
				p.line(msg)
				return
			}
			p.updateBar()
		},
		BlobStart: func(d ocispec.Descriptor) {
			p.transfers.Add(1)
			p.mu.Lock()
			// A resumed transfer starts again: count its size once.
			if !p.seen[d.Digest.String()] {
				p.seen[d.Digest.String()] = true
				p.total.Add(d.Size)
				if p.bar != nil {
					p.bar.ChangeMax64(p.total.Load())
				}
			}
			p.mu.Unlock()
			p.updateBar()
		},
		Progress: func(_ ocispec.Descriptor, n int64) {
			p.sent.Add(n)
			if p.bar != nil {
				p.mu.Lock()
				_ = p.bar.Add64(n)
				p.mu.Unlock()
			}
		},
		BlobEnd: func(ocispec.Descriptor) {
			p.transfers.Add(-1)
			p.updateBar()
		},
	}
}

func (p *Progress) updateBar() {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Describe(p.describe())
}

// Stop ends the progress output with a last summary line; later calls do
// nothing.
func (p *Progress) Stop() {
	if p.stopped.Swap(true) {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if p.mode == ProgressNone {
		return
	}
	if p.mode == ProgressBar {
		p.mu.Lock()
		_ = p.bar.Finish() // clears the bar
		p.mu.Unlock()
	}
	p.line(p.summary())
}

// Bytes formats a byte count with binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
