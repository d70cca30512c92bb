// Command bench measures edgemirror against crane and oras on a synthetic
// corpus of about 1 GiB shaped like an edge profile: the OS provider image
// with one 512 MiB layer, 20 images sharing three base layers, and a
// two-platform index.
//
// The corpus is seeded into a local CNCF distribution registry (plain HTTP on
// 127.0.0.1, storage in a temporary directory). Each tool then copies every
// image of the corpus into its own fresh target registry; the tool reads the
// source and writes the target through two counting proxies of its own, so
// bytes uploaded and requests are measured the same way for every tool.
// edgemirror (built from this repository) mirrors the whole profile in one
// process with -j JOBS; crane and oras (installed with go install) copy one
// image per process, JOBS processes at a time (xargs -P). Every target
// digest is checked against the source before a result is printed.
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
// a quick pass. The Markdown table goes to stdout, progress to stderr. The
// exit code is 0 when the measurement completed (whether or not edgemirror
// met its targets) and 1 when it could not.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
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

// The targets edgemirror is held to.
const (
	maxTimeRatio = 0.85      // of the faster peer's wall time
	maxRSS       = 100 * mib // peak RSS
)

// config holds the command-line flags.
type config struct {
	jobs  int
	scale float64
	keep  bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.jobs, "jobs", 8, "concurrent transfers: edgemirror -j, and the xargs -P of crane and oras")
	flag.Float64Var(&cfg.scale, "scale", 1.0, "multiplier of every layer size (1.0 is about 1 GiB; 0.1 for a quick run)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (binaries, profile, registry storage, reports)")
	flag.Parse()
	if cfg.jobs < 1 || cfg.scale <= 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench: -jobs must be >= 1, -scale > 0, and no arguments")
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

// result is one tool's measurement.
type result struct {
	tool     string
	usage    usage
	src, dst faultproxy.Stats
	// after and afterDst measure tool.after, when set.
	after    *usage
	afterDst faultproxy.Stats
}

// tool is a copier under test: run copies the corpus from the source
// location srcHost to dstHost/spectro-images, as a subprocess.
type tool struct {
	name string
	run  func(ctx context.Context, srcHost, dstHost string) (usage, error)
	// after, when set, is measured on the complete target after run
	// (edgemirror audit).
	after func(ctx context.Context, dstHost string) (usage, error)
}

func bench(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	work, err := os.MkdirTemp("", "edgemirror-bench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if cfg.keep {
			logf("kept %s", work)
		} else if rerr := os.RemoveAll(work); rerr != nil && err == nil {
			err = fmt.Errorf("clean up: %w", rerr)
		}
	}()

	logf("building edgemirror and installing %s and %s into %s", cranePkg, orasPkg, work)
	started := time.Now()
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	edgemirror := filepath.Join(work, "edgemirror")
	// The e2e module requires the root module and replaces it with ../, so
	// this builds the working tree's edgemirror.
	if err := goTool(ctx, wd, nil, "build", "-o", edgemirror, "github.com/edgemirror/edgemirror"); err != nil {
		return fmt.Errorf("%w (run the bench from the e2e module: make bench)", err)
	}
	for _, pkg := range []string{cranePkg, orasPkg} {
		if err := goTool(ctx, work, []string{"GOBIN=" + work}, "install", pkg); err != nil {
			return err
		}
	}
	logf("tools ready in %s", since(started))

	c := newCorpus(cfg.scale)
	started = time.Now()
	if err := c.build(); err != nil {
		return err
	}
	src, err := registry.Start(registry.Options{RootDir: filepath.Join(work, "source")})
	if err != nil {
		return fmt.Errorf("source registry: %w", err)
	}
	defer src.Close()
	seedTarget := imagebuild.Target{PlainHTTP: true, Concurrency: 4}
	for i, im := range c.images {
		if err := imagebuild.Push(ctx, seedTarget, src.Host()+"/"+im.ref, c.built[i]); err != nil {
			return fmt.Errorf("seed %s: %w", im.ref, err)
		}
	}
	logf("seeded %d images (%d unique blobs, %.1f MiB) in %s", len(c.images), c.blobs, float64(c.unique)/mib, since(started))
	profile := filepath.Join(work, "profile.json")
	if err := c.writeProfile(profile); err != nil {
		return err
	}
	refs := make([]string, len(c.images))
	for i, im := range c.images {
		refs[i] = im.ref
	}
	want, err := imagebuild.ManifestDigests(ctx, imagebuild.Target{PlainHTTP: true}, src.Host(), refs...)
	if err != nil {
		return fmt.Errorf("source digests: %w", err)
	}
	if len(want) != len(refs) {
		return fmt.Errorf("the source registry has %d of the %d seeded images", len(want), len(refs))
	}

	m := newMeter(ctx, work)
	hasAudit, err := lists(ctx, edgemirror, "audit")
	if err != nil {
		return err
	}
	tools := []tool{
		{name: "edgemirror", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			args := []string{"mirror", "-p", profile, "-r", dstHost + "/" + targetPath,
				"--plain-http", "--source-plain-http", "-j", fmt.Sprint(cfg.jobs), "--progress", "none",
				"--report", filepath.Join(work, "edgemirror-report.json")}
			for _, r := range c.registries() {
				args = append(args, "--source-mirror", r+"="+srcHost+"/"+r)
			}
			return m.measure(ctx, edgemirror, args...)
		}},
		{name: "crane", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			return perImage(ctx, m, c, cfg.jobs, srcHost, dstHost, "crane", filepath.Join(work, "crane"), "copy", "--insecure")
		}},
		{name: "oras", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			return perImage(ctx, m, c, cfg.jobs, srcHost, dstHost, "oras", filepath.Join(work, "oras"), "cp", "--from-plain-http", "--to-plain-http")
		}},
	}
	if hasAudit {
		// Timed after the mirror, on its complete target: an audit only
		// reads the target.
		tools[0].after = func(ctx context.Context, dstHost string) (usage, error) {
			return m.measure(ctx, edgemirror, "audit", "-p", profile, "-r", dstHost+"/"+targetPath, "--plain-http", "--progress", "none")
		}
	}
	var results []result
	for _, t := range tools {
		logf("%s: copying %d images, %.1f MiB unique", t.name, len(c.images), float64(c.unique)/mib)
		r, err := runTool(ctx, t, src, work, refs, want)
		if err != nil {
			return err
		}
		logf("%s: %.1f s, every target digest equals the source's", t.name, r.usage.wall.Seconds())
		results = append(results, r)
	}
	logf("resume: mirroring the provider image, killed half-way, then again")
	resume, err := measureResume(ctx, edgemirror, work, src, c, logf)
	if err != nil {
		return err
	}
	logf("audit: %d images", auditImages)
	audit, err := measureAudit(ctx, m, edgemirror, work, logf)
	if err != nil {
		return err
	}
	printReport(stdout, cfg, c, m, results)
	printExtras(stdout, resume, audit)
	return nil
}

// runTool runs one tool against a fresh target registry, each side behind
// a counting proxy of its own, and checks every target digest.
func runTool(ctx context.Context, t tool, src *registry.Registry, work string, refs []string, want map[string]digest.Digest) (result, error) {
	dst, err := registry.Start(registry.Options{RootDir: filepath.Join(work, "target-"+t.name)})
	if err != nil {
		return result{}, fmt.Errorf("%s target registry: %w", t.name, err)
	}
	defer dst.Close()
	sp, err := faultproxy.New(src.URL(), faultproxy.Options{})
	if err != nil {
		return result{}, fmt.Errorf("%s source proxy: %w", t.name, err)
	}
	defer sp.Close()
	dp, err := faultproxy.New(dst.URL(), faultproxy.Options{})
	if err != nil {
		return result{}, fmt.Errorf("%s target proxy: %w", t.name, err)
	}
	defer dp.Close()
	u, err := t.run(ctx, sp.Host(), dp.Host())
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", t.name, err)
	}
	r := result{tool: t.name, usage: u, src: sp.Stats(), dst: dp.Stats()}
	if t.after != nil {
		dp.Reset()
		a, err := t.after(ctx, dp.Host())
		if err != nil {
			return result{}, fmt.Errorf("%s after the copy: %w", t.name, err)
		}
		r.after, r.afterDst = &a, dp.Stats()
	}
	dstRefs := make([]string, len(refs))
	for i, ref := range refs {
		dstRefs[i] = targetPath + "/" + ref
	}
	got, err := imagebuild.ManifestDigests(ctx, imagebuild.Target{PlainHTTP: true}, dst.Host(), dstRefs...)
	if err != nil {
		return result{}, fmt.Errorf("%s target digests: %w", t.name, err)
	}
	var bad []string
	for i, ref := range refs {
		if got[dstRefs[i]] != want[ref] {
			bad = append(bad, fmt.Sprintf("%s is %q, want %s", dstRefs[i], got[dstRefs[i]], want[ref]))
		}
	}
	if len(bad) > 0 {
		return result{}, fmt.Errorf("%s: %d of %d target images differ from the source: %s", t.name, len(bad), len(refs), strings.Join(bad, "; "))
	}
	return r, nil
}

// perImage copies every image of c with one process of bin per image,
// jobs at a time, through xargs -P: the usual way to parallelize crane copy
// or oras cp over a list of images.
func perImage(ctx context.Context, m meter, c *corpus, jobs int, srcHost, dstHost, name, bin string, args ...string) (usage, error) {
	var b strings.Builder
	for _, im := range c.images {
		fmt.Fprintf(&b, "%s/%s %s/%s/%s\n", srcHost, im.ref, dstHost, targetPath, im.ref)
	}
	pairs := filepath.Join(m.dir, name+"-pairs.txt")
	if err := os.WriteFile(pairs, []byte(b.String()), 0o644); err != nil {
		return usage{}, fmt.Errorf("image list: %w", err)
	}
	script := fmt.Sprintf("xargs -P %d -n 2 %s %s < %s", jobs, shellQuote(bin), strings.Join(args, " "), shellQuote(pairs))
	return m.measure(ctx, "sh", "-c", script)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// lists reports whether `bin --help` lists the command name.
func lists(ctx context.Context, bin, name string) (bool, error) {
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil && len(out) == 0 {
		return false, fmt.Errorf("%s --help: %w", bin, err)
	}
	return regexp.MustCompile(`(?m)^\s*edgemirror\s+` + regexp.QuoteMeta(name) + `\b`).Match(out), nil
}

// since returns the time since t, rounded for a log line.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// printReport prints the Markdown table, the ratios and the targets.
func printReport(w io.Writer, cfg config, c *corpus, m meter, results []result) {
	uniqueMiB := float64(c.unique) / mib
	fmt.Fprintf(w, "\n## edgemirror bench: %d images, %d unique blobs, %.1f MiB unique (scale %g), -jobs %d, %d CPUs, %s\n\n",
		len(c.images), c.blobs, uniqueMiB, cfg.scale, cfg.jobs, runtime.NumCPU(), runtime.Version())
	fmt.Fprintln(w, "| tool | wall s | MiB/s | uploaded / unique | requests (src + dst) | peak RSS MiB | RSS sum MiB |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		name := r.tool + fmt.Sprintf(" (-j %d)", cfg.jobs)
		if r.tool != "edgemirror" {
			name = r.tool + fmt.Sprintf(" (xargs -P %d)", cfg.jobs)
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2fx | %d (%d + %d) | %.1f | %.1f |\n", name,
			r.usage.wall.Seconds(), uniqueMiB/r.usage.wall.Seconds(), float64(r.dst.BytesUploaded)/float64(c.unique),
			r.src.Requests+r.dst.Requests, r.src.Requests, r.dst.Requests,
			float64(r.usage.maxRSS)/mib, float64(r.usage.sumRSS)/mib)
	}
	fmt.Fprintf(w, "\npeak RSS: %s; RSS sum: the process group's summed VmRSS, sampled every 50 ms\n", m.method())
	if a := results[0].after; a != nil {
		fmt.Fprintf(w, "\nedgemirror audit of the mirrored target: %.2f s, %d requests, peak RSS %.1f MiB\n",
			a.wall.Seconds(), results[0].afterDst.Requests, float64(a.maxRSS)/mib)
	}
	fmt.Fprintln(w, "\nrequests by kind (source | target):")
	for _, r := range results {
		fmt.Fprintf(w, "- %s: %s | %s; downloaded %.1f MiB, mounts %d\n", r.tool, kinds(r.src), kinds(r.dst),
			float64(r.src.BytesDownloaded)/mib, r.dst.MountsSucceeded)
	}

	em, peer := results[0], results[1]
	for _, r := range results[2:] {
		if r.usage.wall < peer.usage.wall {
			peer = r
		}
	}
	ratio := em.usage.wall.Seconds() / peer.usage.wall.Seconds()
	bytesRatio := float64(em.dst.BytesUploaded) / float64(c.unique)
	fmt.Fprintf(w, "\nedgemirror time / faster peer (%s): %.2fx; crane %.2fx, oras %.2fx of edgemirror's uploaded bytes\n",
		peer.tool, ratio, float64(results[1].dst.BytesUploaded)/float64(em.dst.BytesUploaded), float64(results[2].dst.BytesUploaded)/float64(em.dst.BytesUploaded))
	fmt.Fprintln(w, "\n| target | measured | met |")
	fmt.Fprintln(w, "|---|---:|---|")
	fmt.Fprintf(w, "| time <= %.2fx the faster peer | %.2fx | %s |\n", maxTimeRatio, ratio, yes(ratio <= maxTimeRatio))
	fmt.Fprintf(w, "| uploaded = 1.00x unique bytes | %.2fx (%d of %d bytes) | %s |\n", bytesRatio, em.dst.BytesUploaded, c.unique, yes(em.dst.BytesUploaded == c.unique))
	fmt.Fprintf(w, "| peak RSS < %d MiB | %.1f MiB | %s |\n", maxRSS/mib, float64(em.usage.maxRSS)/mib, yes(em.usage.maxRSS < maxRSS))
}

// kinds renders the non-zero request counts by kind, sorted by kind.
func kinds(s faultproxy.Stats) string {
	var ks []string
	for k, n := range s.ByKind {
		if n > 0 {
			ks = append(ks, fmt.Sprintf("%s %d", k, n))
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
