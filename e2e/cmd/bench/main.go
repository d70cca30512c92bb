// Command bench measures edgemirror against crane and oras on a synthetic
// corpus of about 1 GiB shaped like an edge profile (the OS provider image
// with one 512 MiB layer, 20 images sharing three base layers, and a
// two-platform index), then measures edgemirror alone against real
// registries misbehaving the way real ones do.
//
// The corpus is seeded into a local CNCF distribution v3 registry (plain
// HTTP on 127.0.0.1, storage in a temporary directory). The figures, each
// selected by -only:
//
//   - peers: each tool copies every image of the corpus into its own fresh
//     target registry, once with distribution v3 targets and once with
//     distribution 2.8 targets (the registry Harbor embeds); the tool reads
//     the source and writes the target through two counting proxies of its
//     own, so bytes uploaded and requests are measured the same way for
//     every tool. edgemirror (built from this repository) mirrors the whole
//     profile in one process with -j JOBS; crane and oras (installed with go
//     install) copy one image per process, JOBS processes at a time (xargs
//     -P). Every target digest is checked against the source before a
//     result is printed.
//   - day2: each tool copies the whole corpus into a target that already
//     holds every other image (seeded by edgemirror), counting the bytes
//     uploaded against the bytes the site lacked (see day2.go).
//   - slowlink: each tool copies the corpus over a 25 MB/s uplink with
//     30 ms added to every request, into distribution v3 and 2.8 targets,
//     timed against the link's floor (see slowlink.go).
//   - resume: a mirror of the 512 MiB provider image killed half-way, then
//     run again.
//   - audit: `edgemirror audit` of 1000 images.
//   - real: for each registry kind, a provider image with a 256 MiB layer
//     interrupted half-way by SIGKILL and by SIGINT then run again, a flaky
//     link over several seeds, Bearer tokens living 2 s, and zot's refusal of
//     Docker manifests (see real.go).
//
// Peak RSS is the ru_maxrss of the largest process of each command's tree,
// as GNU time (/usr/bin/time -f %M) reports it: for the xargs trees, the
// largest single crane or oras process, not their sum. It is not taken from
// Go's own wait4 rusage, which for children of a Go process includes the
// parent's RSS (see meter). Without GNU time it is the largest VmHWM sampled
// from /proc. The "RSS sum" column adds up the resident sets of the whole
// process group, sampled every 50 ms.
//
// Run it with `make bench`, or `cd e2e && go run ./cmd/bench -scale 0.1` for
// a quick pass, `-only real` for one part. The Markdown tables go to stdout,
// progress to stderr. The exit code is 0 when the measurement completed
// (whether or not edgemirror met its targets) and 1 when it could not.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// The peers, at versions the Go module proxy serves.
const (
	cranePkg = "github.com/google/go-containerregistry/cmd/crane@v0.22.1"
	orasPkg  = "oras.land/oras/cmd/oras@v1.3.6"
)

// targetPath is the external registry's path under each target host.
const targetPath = "spectro-images"

// The parts of the bench that -only selects, in the order they run.
const (
	partPeers  = "peers"
	partResume = "resume"
	partAudit  = "audit"
	partReal   = "real"
	// partDay2 and partSlowlink are the baselines of day2.go and
	// slowlink.go.
	partDay2     = "day2"
	partSlowlink = "slowlink"
)

// parts lists every part, in the order they run.
var parts = []string{partPeers, partDay2, partSlowlink, partResume, partAudit, partReal}

// config holds the command-line flags.
type config struct {
	jobs  int
	scale float64
	keep  bool
	// only is the set of parts to run.
	only map[string]bool
	// seeds is the number of seeds of the flaky-link figure.
	seeds int
}

// main parses the flags, runs the bench and exits 0 when it completed, 1
// when it could not, 2 on bad usage.
func main() {
	var cfg config
	var only string
	flag.IntVar(&cfg.jobs, "jobs", 8, "concurrent transfers: edgemirror -j, and the xargs -P of crane and oras")
	flag.Float64Var(&cfg.scale, "scale", 1.0, "multiplier of every layer size (1.0 is about 1 GiB; 0.1 for a quick run)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (binaries, profiles, registry storage, reports and stderr of every edgemirror run; the real part alone leaves about 18 GB at scale 1)")
	flag.StringVar(&only, "only", strings.Join(parts, ","), "comma-separated parts to run: "+strings.Join(parts, ", "))
	flag.IntVar(&cfg.seeds, "seeds", 10, "seeds of the flaky-link figure of the real part")
	flag.Parse()
	cfg.only = map[string]bool{}
	for p := range strings.SplitSeq(only, ",") {
		if p = strings.TrimSpace(p); !slices.Contains(parts, p) {
			fmt.Fprintf(os.Stderr, "bench: -only %q: the parts are %s\n", p, strings.Join(parts, ", "))
			os.Exit(2)
		}
		cfg.only[p] = true
	}
	if cfg.jobs < 1 || cfg.scale <= 0 || cfg.seeds < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench: -jobs and -seeds must be >= 1, -scale > 0, and no arguments")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		stop()
		os.Exit(1)
	}
}

// env is what the figures share: the flags, the working directory, the
// edgemirror binary, the corpus and the source registry.
type env struct {
	cfg  config
	work string
	// edgemirror is the path of the binary built from the working tree.
	edgemirror string
	corpus     *corpus
	src        *registry.Registry
	meter      meter
	logf       func(format string, args ...any)
	// seeded holds the references already pushed to src.
	seeded map[string]bool
	// runs numbers the edgemirror processes, for their report files.
	runs int
}

// bench runs the selected parts and prints their tables to stdout.
func bench(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	e := &env{cfg: cfg, seeded: map[string]bool{}}
	e.logf = func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	if e.work, err = os.MkdirTemp("", "edgemirror-bench-"); err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if cfg.keep {
			e.logf("kept %s", e.work)
		} else if rerr := os.RemoveAll(e.work); rerr != nil && err == nil {
			err = fmt.Errorf("clean up: %w", rerr)
		}
	}()
	if err := e.tools(ctx); err != nil {
		return err
	}
	e.meter = newMeter(ctx, e.work)
	e.corpus = newCorpus(cfg.scale)
	if err := e.corpus.build(); err != nil {
		return err
	}
	if e.src, err = registry.Start(registry.Options{RootDir: filepath.Join(e.work, "source")}); err != nil {
		return fmt.Errorf("source registry: %w", err)
	}
	defer e.src.Close()

	// Every figure runs before any table is printed, so that the tables
	// are not interleaved with the progress lines of a terminal.
	var printers []func(io.Writer)
	if cfg.only[partPeers] {
		for _, kind := range registry.Kinds {
			p, err := e.peers(ctx, kind)
			if err != nil {
				return err
			}
			printers = append(printers, p)
		}
	}
	if cfg.only[partDay2] {
		p, err := e.day2(ctx)
		if err != nil {
			return err
		}
		printers = append(printers, p)
	}
	if cfg.only[partSlowlink] {
		for _, kind := range registry.Kinds {
			p, err := e.slowlink(ctx, kind)
			if err != nil {
				return err
			}
			printers = append(printers, p)
		}
	}
	var ex extras
	if cfg.only[partResume] {
		e.logf("resume: mirroring the provider image, killed half-way, then again")
		r, err := e.interrupt(ctx, registry.V3, sigKill, newSet(e.corpus.images[:1], e.corpus.built[:1]), resumeRate)
		if err != nil {
			return err
		}
		ex.resume = &r
	}
	if cfg.only[partAudit] {
		e.logf("audit: %d images", auditImages)
		a, err := measureAudit(ctx, e.meter, e.edgemirror, e.work, e.logf)
		if err != nil {
			return err
		}
		ex.audit = &a
	}
	if ex.resume != nil || ex.audit != nil {
		printers = append(printers, ex.print)
	}
	if cfg.only[partReal] {
		p, err := e.real(ctx)
		if err != nil {
			return err
		}
		printers = append(printers, p)
	}
	for _, p := range printers {
		p(stdout)
	}
	return nil
}

// tools builds edgemirror from the working tree and, for the parts that
// run them (peers, day2, slowlink), installs crane and oras into the
// working directory.
func (e *env) tools(ctx context.Context) error {
	started := time.Now()
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	e.edgemirror = filepath.Join(e.work, "edgemirror")
	e.logf("building edgemirror into %s", e.work)
	// The e2e module requires the root module and replaces it with ../, so
	// this builds the working tree's edgemirror.
	if err := goTool(ctx, wd, nil, "build", "-o", e.edgemirror, "github.com/edgemirror/edgemirror"); err != nil {
		return fmt.Errorf("%w (run the bench from the e2e module: make bench)", err)
	}
	if e.cfg.only[partPeers] || e.cfg.only[partDay2] || e.cfg.only[partSlowlink] {
		e.logf("installing %s and %s", cranePkg, orasPkg)
		for _, pkg := range []string{cranePkg, orasPkg} {
			if err := goTool(ctx, e.work, []string{"GOBIN=" + e.work}, "install", pkg); err != nil {
				return err
			}
		}
	}
	e.logf("tools ready in %s", since(started))
	return nil
}

// seed pushes the images of set that are not yet in the source registry.
func (e *env) seed(ctx context.Context, set *corpus) error {
	started := time.Now()
	target := imagebuild.Target{PlainHTTP: true, Concurrency: 4}
	n := 0
	for i, im := range set.images {
		if e.seeded[im.ref] {
			continue
		}
		if err := imagebuild.Push(ctx, target, e.src.Host()+"/"+im.ref, set.built[i]); err != nil {
			return fmt.Errorf("seed %s: %w", im.ref, err)
		}
		e.seeded[im.ref] = true
		n++
	}
	if n > 0 {
		e.logf("seeded %d images in %s", n, since(started))
	}
	return nil
}

// since returns the time since t, rounded for a log line.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// yes renders whether a target is met.
func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
