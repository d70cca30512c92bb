package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// maxDay2Ratio is the target of the day-2 figure: edgemirror uploads at
// most this many times the bytes the site lacked, mounting the blobs the
// target already holds under other repositories.
const maxDay2Ratio = 1.01

// day2 measures a second mirror into a site that already holds half of the
// corpus: each tool copies the whole corpus into a fresh distribution v3
// target that edgemirror first seeded with every other image (the provider
// image among them), through the counting proxies of runTool, and the
// bytes uploaded are compared with the bytes the site lacked. It returns
// the printer of the table.
func (e *env) day2(ctx context.Context) (func(io.Writer), error) {
	c := e.corpus
	want, profile, err := e.seedWithProfile(ctx, partDay2)
	if err != nil {
		return nil, err
	}
	have, rest := c.alternate()
	missing := missingBytes(have, rest)
	haveProfile := filepath.Join(e.work, "day2-seed-profile.json")
	if err := have.writeProfile(haveProfile); err != nil {
		return nil, err
	}
	s := setup{name: partDay2, prepare: func(ctx context.Context, srcHost, dstHost string) error {
		_, err := e.meter.measure(ctx, e.edgemirror, mirrorArgs(haveProfile, srcHost, dstHost, have, "-j", fmt.Sprint(e.cfg.jobs), "--state-dir", e.stateDir(partDay2))...)
		return err
	}}
	e.logf("day2: the target holds %d of %d images, lacks %.1f MiB of %.1f MiB unique", len(have.images), len(c.images), float64(missing)/mib, float64(c.unique)/mib)
	results, err := e.runAll(ctx, e.copiers(c, profile, partDay2), registry.V3, c, want, s)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) { printDay2(w, e.cfg, c, len(have.images), missing, results) }, nil
}

// alternate splits c into the images at even positions (the provider
// image first) and those at odd positions.
func (c *corpus) alternate() (even, odd *corpus) {
	var ei, oi []benchImage
	var eb, ob []*imagebuild.Built
	for i, im := range c.images {
		if i%2 == 0 {
			ei, eb = append(ei, im), append(eb, c.built[i])
		} else {
			oi, ob = append(oi, im), append(ob, c.built[i])
		}
	}
	return newSet(ei, eb), newSet(oi, ob)
}

// missingBytes returns the size of the unique blobs of add that have does
// not hold: what a site holding have lacks to hold add as well.
func missingBytes(have, add *corpus) int64 {
	held := map[digest.Digest]bool{}
	for _, d := range imagebuild.UniqueBlobs(have.built...) {
		held[d.Digest] = true
	}
	var n int64
	for _, d := range imagebuild.UniqueBlobs(add.built...) {
		if !held[d.Digest] {
			n += d.Size
		}
	}
	return n
}

// printDay2 prints the day-2 table: each tool's uploads against the
// missing bytes, then edgemirror's target.
func printDay2(w io.Writer, cfg config, c *corpus, seeded int, missing int64, results []result) {
	fmt.Fprintf(w, "\n## day 2 (v3 target): %d images, %d already at the site (every other one, seeded by edgemirror), %.1f MiB missing of %.1f MiB unique (scale %g), -jobs %d, %d CPUs\n\n",
		len(c.images), seeded, float64(missing)/mib, float64(c.unique)/mib, cfg.scale, cfg.jobs, runtime.NumCPU())
	fmt.Fprintln(w, "| tool | wall s | uploaded MiB | uploaded / missing | mounts | blob uploads | requests (src + dst) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2fx | %d | %d | %d (%d + %d) |\n", r.label(cfg.jobs),
			r.usage.wall.Seconds(), float64(r.dst.BytesUploaded)/mib, float64(r.dst.BytesUploaded)/float64(missing),
			r.dst.MountsSucceeded, r.dst.UploadsCompleted, r.src.Requests+r.dst.Requests, r.src.Requests, r.dst.Requests)
	}
	em := results[0]
	ratio := float64(em.dst.BytesUploaded) / float64(missing)
	fmt.Fprintln(w, "\n| target | measured | met |")
	fmt.Fprintln(w, "|---|---:|---|")
	fmt.Fprintf(w, "| uploaded <= %.2fx the missing bytes | %.2fx (%d of %d bytes) | %s |\n",
		maxDay2Ratio, ratio, em.dst.BytesUploaded, missing, yes(ratio <= maxDay2Ratio))
}
