package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// The slow link of the slowlink figure, and edgemirror's target on it.
const (
	// slowUplink is the target side's upload rate, in bytes per second
	// (25 MB/s, about 200 Mbit/s).
	slowUplink = 25_000_000
	// slowLatency is added to every request, on both sides.
	slowLatency = 30 * time.Millisecond
	// maxFloorRatio bounds edgemirror's wall time, as a multiple of the
	// link floor (the unique bytes at slowUplink).
	maxFloorRatio = 1.10
)

// slowlink measures each tool copying the whole corpus into a fresh target
// of kind over a slow link: the target proxy reads uploads at slowUplink,
// and both proxies delay every request by slowLatency. It returns the
// printer of the table.
func (e *env) slowlink(ctx context.Context, kind registry.Kind) (func(io.Writer), error) {
	c := e.corpus
	want, profile, err := e.seedWithProfile(ctx, partSlowlink)
	if err != nil {
		return nil, err
	}
	s := setup{
		name: partSlowlink,
		src:  faultproxy.Faults{Latency: slowLatency},
		dst:  faultproxy.Faults{Latency: slowLatency, UploadBytesPerSec: slowUplink},
	}
	e.logf("slowlink %s: link floor %.1f s per tool", kind, linkFloor(c).Seconds())
	results, err := e.runAll(ctx, e.copiers(c, profile, partSlowlink+"-"+kind.String()), kind, c, want, s)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) { printSlowlink(w, e.cfg, kind, c, results) }, nil
}

// linkFloor is the shortest time in which the slow link carries the unique
// bytes of c.
func linkFloor(c *corpus) time.Duration {
	return time.Duration(float64(c.unique) / slowUplink * float64(time.Second))
}

// printSlowlink prints the slow-link table: each tool's time against the
// link floor, then edgemirror's targets.
func printSlowlink(w io.Writer, cfg config, kind registry.Kind, c *corpus, results []result) {
	floor := linkFloor(c).Seconds()
	fmt.Fprintf(w, "\n## slow link (%s target): %d images, %.1f MiB unique (scale %g), uplink %d MB/s, +%s per request both sides, link floor %.1f s, -jobs %d, %d CPUs\n\n",
		kind, len(c.images), float64(c.unique)/mib, cfg.scale, slowUplink/1_000_000, slowLatency, floor, cfg.jobs, runtime.NumCPU())
	fmt.Fprintln(w, "| tool | wall s | time / floor | uploaded / unique | requests (src + dst) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %.1f | %.2fx | %.2fx | %d (%d + %d) |\n", r.label(cfg.jobs),
			r.usage.wall.Seconds(), r.usage.wall.Seconds()/floor, float64(r.dst.BytesUploaded)/float64(c.unique),
			r.src.Requests+r.dst.Requests, r.src.Requests, r.dst.Requests)
	}
	em, peer := results[0], fastestPeer(results)
	toFloor := em.usage.wall.Seconds() / floor
	toPeer := em.usage.wall.Seconds() / peer.usage.wall.Seconds()
	fmt.Fprintln(w, "\n| target | measured | met |")
	fmt.Fprintln(w, "|---|---:|---|")
	fmt.Fprintf(w, "| time <= %.2fx the link floor | %.2fx | %s |\n", maxFloorRatio, toFloor, yes(toFloor <= maxFloorRatio))
	fmt.Fprintf(w, "| time <= %.2fx the faster peer (%s) | %.2fx | %s |\n", maxTimeRatio, peer.tool, toPeer, yes(toPeer <= maxTimeRatio))
}
