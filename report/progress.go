package report

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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
// The total is known before the first byte (mirror.Hooks.Planned), the
// share done never goes back, and the rate and time left are measured
// over the last ten seconds. On a terminal (bar) it redraws a frame: a bar
// and the largest transfers under way, each on its own line, as docker
// pull does; elsewhere (plain) it writes a line per image and a summary
// line at each interval.
type Progress struct {
	w        io.Writer
	mode     ProgressMode
	images   int
	interval time.Duration
	width    func() int       // of the terminal, for the frame (under mu)
	now      func() time.Time // the clock; tests set it

	mu         sync.Mutex // serializes writes to w and guards what follows
	start      time.Time
	t          *tally
	planned    bool
	imagesDone int
	frame      int // lines of the frame on the terminal now
	stopped    bool
	stop       chan struct{}
	wg         sync.WaitGroup
}

// The terminal frame.
const (
	redraw       = 200 * time.Millisecond // how often the frame is drawn
	frameTopN    = 4                      // transfers shown, largest first
	minBarWidth  = 10                     // of the overall bar
	maxBarWidth  = 30
	blobBarWidth = 16 // of a transfer's bar
)

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
	p := &Progress{w: w, mode: mode, images: images, interval: interval, width: columns, now: time.Now,
		start: time.Now(), t: newTally(), stop: make(chan struct{})}
	switch mode {
	case ProgressBar:
		p.wg.Add(1)
		go p.every(redraw, p.draw)
	case ProgressPlain:
		// The rate is sampled every second; a line is written at each interval.
		p.wg.Add(2)
		go p.every(time.Second, func() { p.update(func(t *tally) { t.rate(p.now()) }) })
		go p.every(interval, func() { p.line(p.summary()) })
	}
	return p, nil
}

// SetWidth tells the progress how wide the terminal is now (asked at each
// redraw; 0 when it cannot tell); by default $COLUMNS, or 80. Frame lines are cut to fit: a line
// the terminal wraps would break the redraw.
func (p *Progress) SetWidth(width func() int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.width = func() int {
		if n := width(); n > 0 {
			return max(n, minFrameWidth)
		}
		return columns()
	}
}

// minFrameWidth is the narrowest frame drawn.
const minFrameWidth = 40

// columns is $COLUMNS, or 80.
func columns() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= minFrameWidth {
		return n
	}
	return 80
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

func (p *Progress) every(d time.Duration, f func()) {
	defer p.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			f()
		}
	}
}

// summary is the plain progress line.
func (p *Progress) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.t
	rate := t.rate(p.now())
	return fmt.Sprintf("progress: %d/%d images, %s of %s (%s), %s sent, %s/s, %s, %d transfers active",
		p.imagesDone, p.images, Bytes(t.done), Bytes(t.total), p.percent(), Bytes(t.sent), Bytes(int64(rate)), eta(t, rate), len(t.active(len(t.blobs))))
}

// percent is the share done, or "planning" before the total is known.
func (p *Progress) percent() string {
	if !p.planned {
		return "planning"
	}
	if p.t.total == 0 {
		return "100%"
	}
	return fmt.Sprintf("%.0f%%", 100*p.t.fraction())
}

func eta(t *tally, rate float64) string {
	d, ok := t.eta(rate)
	if !ok {
		return "ETA --"
	}
	return "ETA " + d.Round(time.Second).String()
}

// frameLines are the lines of the terminal frame.
func (p *Progress) frameLines(cols int) []string {
	t := p.t
	if !p.planned {
		return []string{fmt.Sprintf("resolving %d images at the source and the target…", p.images)}
	}
	rate := t.rate(p.now())
	text := fmt.Sprintf("%s / %s  %s/s  %s  images %d/%d", Bytes(t.done), Bytes(t.total), Bytes(int64(rate)), eta(t, rate), p.imagesDone, p.images)
	// The bar takes what the text leaves of the line, within bounds.
	width := min(max(cols-len(text)-10, minBarWidth), maxBarWidth)
	lines := []string{fmt.Sprintf("%4s %s %s", p.percent(), bar(t.fraction(), width), text)}
	for _, b := range t.active(frameTopN) {
		lines = append(lines, fmt.Sprintf("  %s %s %s / %s", shortDigest(b.desc), bar(float64(b.pos)/float64(max(b.desc.Size, 1)), blobBarWidth),
			Bytes(b.pos), Bytes(b.desc.Size)))
	}
	return lines
}

// bar draws a fraction f as [=====>    ] of width cells.
func bar(f float64, width int) string {
	n := int(min(max(f, 0), 1) * float64(width))
	s := strings.Repeat("=", n)
	if n < width {
		s += ">" + strings.Repeat(" ", width-n-1)
	}
	return "[" + s + "]"
}

// draw redraws the terminal frame.
func (p *Progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	var b strings.Builder
	p.clearFrame(&b)
	cols := p.width()
	lines := p.frameLines(cols)
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(cut(l, cols-1))
	}
	p.frame = len(lines)
	_, _ = io.WriteString(p.w, b.String())
}

// clearFrame erases the frame: the cursor is at the end of its last line.
func (p *Progress) clearFrame(b *strings.Builder) {
	if p.frame == 0 {
		return
	}
	b.WriteString("\r")
	if p.frame > 1 {
		fmt.Fprintf(b, "\x1b[%dA", p.frame-1)
	}
	b.WriteString("\x1b[J")
	p.frame = 0
}

// cut shortens s to n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// line writes s on a line of its own, above the frame.
func (p *Progress) line(s string) {
	p.mu.Lock()
	var b strings.Builder
	p.clearFrame(&b)
	b.WriteString(s + "\n")
	_, _ = io.WriteString(p.w, b.String())
	p.mu.Unlock()
	if p.mode == ProgressBar {
		p.draw()
	}
}

// Log returns the writer of other messages on the same stream (retry
// notices, --debug traces), serialized with the progress output: on a
// terminal they are written above the frame, which the next redraw puts
// back.
func (p *Progress) Log() io.Writer { return logWriter{p} }

// logWriter writes above the frame.
type logWriter struct{ p *Progress }

func (l logWriter) Write(b []byte) (int, error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	p.clearFrame(&sb)
	sb.Write(b)
	if _, err := io.WriteString(p.w, sb.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

// restarted says in one line that a blob starts over because the target
// lost its upload session. It is shown in every progress mode, as retries
// are: it explains bytes sent twice.
func (p *Progress) restarted(d ocispec.Descriptor, held int64, _ error) {
	p.update(func(t *tally) { t.restarted(d) })
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

// update changes the tally under the lock.
func (p *Progress) update(f func(t *tally)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.t)
}

// Hooks returns the engine hooks that feed this progress.
func (p *Progress) Hooks() mirror.Hooks {
	if p.mode == ProgressNone {
		return mirror.Hooks{BlobRestarted: p.restarted}
	}
	return mirror.Hooks{
		BlobRestarted: p.restarted,
		Planned:       p.plannedHook,
		ImageDone:     p.imageDone,
		BlobStart:     func(d ocispec.Descriptor, off int64) { p.update(func(t *tally) { t.start(d, off) }) },
		Progress:      func(d ocispec.Descriptor, n int64) { p.update(func(t *tally) { t.progress(d, n) }) },
		BlobEnd:       func(d ocispec.Descriptor) { p.update(func(t *tally) { t.end(d) }) },
		BlobPlaced: func(d ocispec.Descriptor, how mirror.Outcome) {
			p.update(func(t *tally) { t.placed(d, how == mirror.Uploaded) })
		},
	}
}

// plannedHook sets the total; in plain mode it says what the run will place.
func (p *Progress) plannedHook(tot mirror.Totals) {
	p.update(func(t *tally) {
		t.plan(tot.Blobs)
		p.planned = true
	})
	if p.mode == ProgressPlain {
		p.line(fmt.Sprintf("plan: %d of %d images to copy, %d blobs, %s", tot.Images, p.images, len(tot.Blobs), Bytes(tot.Bytes())))
	}
}

// imageDone counts an image; in plain mode it writes its line, on a
// terminal only the images that failed.
func (p *Progress) imageDone(im *targets.Image) {
	var n int
	p.update(func(*tally) {
		p.imagesDone++
		n = p.imagesDone
	})
	if p.mode == ProgressBar && im.Status != targets.Failed && im.Status != targets.Missing {
		return
	}
	msg := fmt.Sprintf("[%d/%d] %s %s", n, p.images, im.Status, im.Source)
	if im.Target != "" {
		msg += " → " + im.Target
	}
	if im.Reason != "" {
		msg += " (" + im.Reason + ")"
	}
	p.line(msg)
}

// Stop ends the progress output with a last summary line; later calls do
// nothing.
func (p *Progress) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	if p.mode == ProgressNone {
		return
	}
	p.line(p.final())
}

// final is the last line: what was placed and how, and the time taken.
func (p *Progress) final() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.t
	return fmt.Sprintf("progress: %d/%d images, %s of %s placed (%s): %s sent, %s already at the target (mounted or found), in %s",
		p.imagesDone, p.images, Bytes(t.done), Bytes(t.total), p.percent(), Bytes(t.sent), Bytes(t.mounted),
		p.now().Sub(p.start).Round(100*time.Millisecond))
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
