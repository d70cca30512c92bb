package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// The targets edgemirror is held to in the peer comparison.
const (
	maxTimeRatio = 0.85      // of the faster peer's wall time
	maxRSS       = 100 * mib // peak RSS
)

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

// peers runs edgemirror, crane and oras on the whole corpus, each into a
// fresh target registry of the given kind, and returns the printer of
// their table.
func (e *env) peers(ctx context.Context, kind registry.Kind) (func(io.Writer), error) {
	c := e.corpus
	want, profile, err := e.seedWithProfile(ctx, "peers")
	if err != nil {
		return nil, err
	}
	hasAudit, err := lists(ctx, e.edgemirror, "audit")
	if err != nil {
		return nil, err
	}
	m := e.meter
	tools := e.copiers(c, profile, kind.String())
	if hasAudit {
		// Timed after the mirror, on its complete target: an audit only
		// reads the target.
		tools[0].after = func(ctx context.Context, dstHost string) (usage, error) {
			return m.measure(ctx, e.edgemirror, "audit", "-p", profile, "-r", dstHost+"/"+targetPath, "--plain-http", "--progress", "none")
		}
	}
	results, err := e.runAll(ctx, tools, kind, c, want, setup{})
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) { printReport(w, e.cfg, kind, c, m, results) }, nil
}

// copiers returns edgemirror, crane and oras as tools copying c:
// edgemirror mirrors profile (which lists c) in one process with -j JOBS,
// with the state directory state-NAME (see stateDir), and writes its report
// as edgemirror-report-NAME.json; crane and oras copy one image per
// process, JOBS processes at a time.
func (e *env) copiers(c *corpus, profile, name string) []tool {
	m, work, jobs := e.meter, e.work, e.cfg.jobs
	return []tool{
		{name: "edgemirror", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			args := mirrorArgs(profile, srcHost, dstHost, c, "-j", fmt.Sprint(jobs), "--state-dir", e.stateDir(name),
				"--report", filepath.Join(work, "edgemirror-report-"+name+".json"))
			return m.measure(ctx, e.edgemirror, args...)
		}},
		{name: "crane", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			return perImage(ctx, m, c, jobs, srcHost, dstHost, "crane", filepath.Join(work, "crane"), "copy", "--insecure")
		}},
		{name: "oras", run: func(ctx context.Context, srcHost, dstHost string) (usage, error) {
			return perImage(ctx, m, c, jobs, srcHost, dstHost, "oras", filepath.Join(work, "oras"), "cp", "--from-plain-http", "--to-plain-http")
		}},
	}
}

// stateDir is the edgemirror state directory of the figure name: what
// its runs remember (uploads in progress, blobs placed at the target)
// stays with the figure, as it would with one site.
func (e *env) stateDir(name string) string { return filepath.Join(e.work, "state-"+name) }

// seedAndResolve seeds set at the source (what is there already stays)
// and returns the source's manifest digests of its images.
func (e *env) seedAndResolve(ctx context.Context, set *corpus) (map[string]digest.Digest, error) {
	if err := e.seed(ctx, set); err != nil {
		return nil, err
	}
	return e.sourceDigests(ctx, set)
}

// seedWithProfile seeds the whole corpus (seedAndResolve) and writes the
// profile that lists it as NAME-profile.json in the working directory,
// for the figures in which every tool copies the corpus.
func (e *env) seedWithProfile(ctx context.Context, name string) (map[string]digest.Digest, string, error) {
	want, err := e.seedAndResolve(ctx, e.corpus)
	if err != nil {
		return nil, "", err
	}
	profile := filepath.Join(e.work, name+"-profile.json")
	if err := e.corpus.writeProfile(profile); err != nil {
		return nil, "", err
	}
	return want, profile, nil
}

// sourceDigests returns the manifest digest of every image of set at the
// source, by reference.
func (e *env) sourceDigests(ctx context.Context, set *corpus) (map[string]digest.Digest, error) {
	want, err := imagebuild.ManifestDigests(ctx, imagebuild.Target{PlainHTTP: true}, e.src.Host(), set.refs()...)
	if err != nil {
		return nil, fmt.Errorf("source digests: %w", err)
	}
	if len(want) != len(set.images) {
		return nil, fmt.Errorf("the source registry has %d of the %d seeded images", len(want), len(set.images))
	}
	return want, nil
}

// checkTarget checks that every image of set is at its target reference
// under host with the digest it has at the source (want).
func checkTarget(ctx context.Context, t imagebuild.Target, host string, set *corpus, want map[string]digest.Digest) error {
	refs := set.refs()
	dstRefs := make([]string, len(refs))
	for i, ref := range refs {
		dstRefs[i] = targetPath + "/" + ref
	}
	got, err := imagebuild.ManifestDigests(ctx, t, host, dstRefs...)
	if err != nil {
		return fmt.Errorf("target digests: %w", err)
	}
	var bad []string
	for i, ref := range refs {
		if got[dstRefs[i]] != want[ref] {
			bad = append(bad, fmt.Sprintf("%s is %q, want %s", dstRefs[i], got[dstRefs[i]], want[ref]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d target images differ from the source: %s", len(bad), len(refs), strings.Join(bad, "; "))
	}
	return nil
}

// setup is how runTool prepares a tool's run; the zero value is a fresh,
// empty target and proxies that pass everything at full speed.
type setup struct {
	// name, when set, prefixes the target registry's directory.
	name string
	// prepare, when set, runs before the tool, through the same proxies
	// (whose counters are then reset), e.g. to seed the target.
	prepare func(ctx context.Context, srcHost, dstHost string) error
	// src and dst are the faults and link of the source and target
	// proxies while the tool runs.
	src, dst faultproxy.Faults
}

// runTool runs one tool against a fresh target registry of the given kind,
// each side behind a counting proxy of its own, prepared by s, and checks
// every target digest. The target's storage is removed afterwards unless
// -keep.
func (e *env) runTool(ctx context.Context, t tool, kind registry.Kind, c *corpus, want map[string]digest.Digest, s setup) (result, error) {
	dir := filepath.Join(e.work, "target-"+kind.String()+"-"+t.name)
	if s.name != "" {
		dir = filepath.Join(e.work, s.name+"-target-"+kind.String()+"-"+t.name)
	}
	dst, err := registry.Start(registry.Options{Kind: kind, RootDir: dir})
	if err != nil {
		return result{}, fmt.Errorf("%s target registry: %w", t.name, err)
	}
	defer func() {
		dst.Close()
		if !e.cfg.keep {
			_ = os.RemoveAll(dir)
		}
	}()
	sp, err := faultproxy.New(e.src.URL(), faultproxy.Options{})
	if err != nil {
		return result{}, fmt.Errorf("%s source proxy: %w", t.name, err)
	}
	defer sp.Close()
	dp, err := faultproxy.New(dst.URL(), faultproxy.Options{})
	if err != nil {
		return result{}, fmt.Errorf("%s target proxy: %w", t.name, err)
	}
	defer dp.Close()
	if s.prepare != nil {
		if err := s.prepare(ctx, sp.Host(), dp.Host()); err != nil {
			return result{}, fmt.Errorf("%s: preparing the target: %w", t.name, err)
		}
		sp.Reset()
		dp.Reset()
	}
	sp.SetFaults(s.src)
	dp.SetFaults(s.dst)
	u, err := t.run(ctx, sp.Host(), dp.Host())
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", t.name, err)
	}
	r := result{tool: t.name, usage: u, src: sp.Stats(), dst: dp.Stats()}
	if t.after != nil {
		dp.SetFaults(faultproxy.Faults{})
		dp.Reset()
		a, err := t.after(ctx, dp.Host())
		if err != nil {
			return result{}, fmt.Errorf("%s after the copy: %w", t.name, err)
		}
		r.after, r.afterDst = &a, dp.Stats()
	}
	if err := checkTarget(ctx, imagebuild.Target{PlainHTTP: true}, dst.Host(), c, want); err != nil {
		return result{}, fmt.Errorf("%s: %w", t.name, err)
	}
	return r, nil
}

// runAll runs each tool with runTool, in order, and returns their results.
func (e *env) runAll(ctx context.Context, tools []tool, kind registry.Kind, c *corpus, want map[string]digest.Digest, s setup) ([]result, error) {
	label := kind.String()
	if s.name != "" {
		label = s.name + " " + label
	}
	var results []result
	for _, t := range tools {
		e.logf("%s to %s: copying %d images, %.1f MiB unique", t.name, label, len(c.images), float64(c.unique)/mib)
		r, err := e.runTool(ctx, t, kind, c, want, s)
		if err != nil {
			return nil, err
		}
		e.logf("%s: %.1f s, every target digest equals the source's", t.name, r.usage.wall.Seconds())
		results = append(results, r)
	}
	return results, nil
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

// printReport prints the Markdown table of the peers on targets of the
// given kind, the ratios and the targets.
func printReport(w io.Writer, cfg config, kind registry.Kind, c *corpus, m meter, results []result) {
	uniqueMiB := float64(c.unique) / mib
	fmt.Fprintf(w, "\n## edgemirror bench, %s targets: %d images, %d unique blobs, %.1f MiB unique (scale %g), -jobs %d, %d CPUs, %s\n\n",
		kind, len(c.images), c.blobs, uniqueMiB, cfg.scale, cfg.jobs, runtime.NumCPU(), runtime.Version())
	fmt.Fprintln(w, "| tool | wall s | MiB/s | uploaded / unique | requests (src + dst) | peak RSS MiB | RSS sum MiB |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2fx | %d (%d + %d) | %.1f | %.1f |\n", r.label(cfg.jobs),
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

	em, peer := results[0], fastestPeer(results)
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

// label names the tool and how it ran in parallel, for a table row.
func (r result) label(jobs int) string {
	if r.tool == "edgemirror" {
		return fmt.Sprintf("%s (-j %d)", r.tool, jobs)
	}
	return fmt.Sprintf("%s (xargs -P %d)", r.tool, jobs)
}

// fastestPeer returns the result other than edgemirror's (the first) with
// the shortest wall time.
func fastestPeer(results []result) result {
	peer := results[1]
	for _, r := range results[2:] {
		if r.usage.wall < peer.usage.wall {
			peer = r
		}
	}
	return peer
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
