package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/edgemirror/edgemirror/e2e/registry"
)

// realRow is one row of the real-registries table: a figure, how each
// column renders it, and its target ("" when it has none).
type realRow struct {
	figure, target string
	cell           func(c realColumn) string
}

// printReal prints the real-registries table: a caption saying how each
// figure was measured, then one row per figure and one column per registry
// kind.
func printReal(w io.Writer, cfg config, sets realSets, cols []realColumn) {
	p, f, d := sets.provider, sets.flaky, sets.docker
	fmt.Fprintf(w, "\n## real registries: edgemirror -j %d from a distribution v3 source, scale %g\n\n", cfg.jobs, cfg.scale)
	fmt.Fprintf(w, "- SIGKILL / SIGINT: the provider image %s (%.0f MiB layer, %.1f MiB unique), uploads throttled to %.0f MB/s; "+
		"the signal once %.0f MiB of the layer are sent (mid-chunk, about half-way); re-sent = (first run + rerun - unique) / layer.\n",
		p.images[0].ref, float64(p.largestLayer())/mib, float64(p.unique)/mib, realRate/1e6, float64(signalAt(p.largestLayer()))/mib)
	fmt.Fprintf(w, "- flaky link: that provider image and %d shared-base images (%d images, %.1f MiB unique), "+
		"a link cut every %.0f MiB on average (exponential) and %.0f%% of requests answered 503, seeds 1 to %d; "+
		"uploads throttled to %.0f MB/s rather than %.0f MB/s, and this smaller corpus rather than the whole one, "+
		"to keep the %d runs within minutes.\n",
		flakyShared, len(f.images), float64(f.unique)/mib, flakyCutEvery*cfg.scale, flaky503*100, cfg.seeds,
		flakyRate/1e6, realRate/1e6, len(cols)*cfg.seeds)
	fmt.Fprintf(w, "- Bearer tokens: the flaky-link images over a sound link, uploads throttled to %.1f MB/s "+
		"(%d token lifetimes for the unique bytes), tokens living %s.\n",
		float64(tokenRate(f))/1e6, tokenLifetimes, tokenLifetime)
	fmt.Fprintf(w, "- zot: the corpus without its provider image (%d images, %d of them Docker-format, %.1f MiB unique, "+
		"%.1f MiB in blobs only Docker-format images use), uploads throttled to %.0f MB/s, Docker manifest PUTs answered "+
		"415 MANIFEST_INVALID as zot without docker2s2 does.\n\n",
		len(d.images), cols[0].zot.docker, float64(d.unique)/mib, float64(cols[0].zot.dockerOnly)/mib, realRate/1e6)

	rows := realRows(cfg)
	fmt.Fprint(w, "| figure |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", strings.Replace(c.kind.String(), "-", " ", 1))
	}
	fmt.Fprintln(w, " target |")
	fmt.Fprintln(w, "|---|"+strings.Repeat("---:|", len(cols))+"---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |", r.figure)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", r.cell(c))
		}
		fmt.Fprintf(w, " %s |\n", r.target)
	}
}

// realRows returns the rows of the real-registries table.
func realRows(cfg config) []realRow {
	chunk := fmt.Sprintf("<= %d MiB (one chunk)", chunkSize/mib)
	return []realRow{{
		figure: "SIGKILL half-way through the layer, rerun: re-sent / layer",
		target: chunk + " on v3",
		cell: func(c realColumn) string {
			s := interruptCell(c.kill)
			if c.kind == registry.V3 {
				s = verdict(s, c.kill.resent() <= chunkSize && c.kill.rerun.exit == 0 && c.kill.check == "")
			}
			return s
		},
	}, {
		figure: `SIGKILL rerun printed "restarting blob" (report: blobsRestarted)`,
		target: "v3: no; 2.8: once",
		cell: func(c realColumn) string {
			n := c.kill.rerun.restarts()
			s := fmt.Sprintf("%s (%d)", lines(n), c.kill.rerun.report.Summary.BlobsRestarted)
			want := 0
			if c.kind == registry.V28 {
				want = 1
			}
			return verdict(s, n == want && c.kill.rerun.report.Summary.BlobsRestarted == want)
		},
	}, {
		figure: "SIGINT (Ctrl-C) half-way through the layer, rerun: re-sent / layer",
		target: chunk,
		cell: func(c realColumn) string {
			return verdict(interruptCell(c.stop), c.stop.resent() <= chunkSize && c.stop.rerun.exit == 0 && c.stop.check == "")
		},
	}, {
		figure: "SIGINT: first run's exit code, time from the signal to the exit",
		target: "exit 1",
		cell: func(c realColumn) string {
			return verdict(fmt.Sprintf("exit %d after %.2f s", c.stop.run.exit, c.stop.run.afterSignal.Seconds()), c.stop.run.exit == 1)
		},
	}, {
		figure: fmt.Sprintf("flaky link: failed images over %d seeds (exit codes)", cfg.seeds),
		target: "0",
		cell: func(c realColumn) string {
			s := fmt.Sprintf("%d (%s)", c.flaky.failed, exits(c.flaky.exits))
			if c.flaky.checks > 0 {
				s += fmt.Sprintf(", %d runs with a wrong target", c.flaky.checks)
			}
			return verdict(s, c.flaky.failed == 0 && c.flaky.checks == 0)
		},
	}, {
		figure: "flaky link: uploaded / unique, min-max over the seeds",
		target: "<= 1.05x on v3",
		cell: func(c realColumn) string {
			s := fmt.Sprintf("%.2fx-%.2fx", c.flaky.minRatio, c.flaky.maxRatio)
			if c.kind == registry.V3 {
				s = verdict(s, c.flaky.maxRatio <= 1.05)
			}
			return s
		},
	}, {
		figure: "flaky link: blobsRestarted, bytesResent (sums)",
		cell: func(c realColumn) string {
			return fmt.Sprintf("%d, %.1f MiB", c.flaky.restarted, float64(c.flaky.resent)/mib)
		},
	}, {
		figure: "flaky link: link cuts, 503s injected (sums); run time (sum)",
		cell: func(c realColumn) string {
			return fmt.Sprintf("%d, %d; %.0f s", c.flaky.cuts, c.flaky.unavailable, c.flaky.wall.Seconds())
		},
	}, {
		figure: fmt.Sprintf("Bearer tokens living %s: exit code, uploaded / unique, tokens issued", tokenLifetime),
		target: "exit 0",
		cell: func(c realColumn) string {
			t := c.token
			s := fmt.Sprintf("exit %d, %.2fx, %d tokens in %.1f s (%.1f lifetimes)", t.run.exit,
				float64(t.uploaded)/float64(t.unique), t.issued, t.run.wall.Seconds(), t.run.wall.Seconds()/tokenLifetime.Seconds())
			if t.check != "" {
				s += ", wrong target"
			}
			return verdict(s, t.run.exit == 0 && t.check == "")
		},
	}, {
		figure: "zot's Docker refusal: images failed, longest reason",
		target: "the Docker-format ones",
		cell: func(c realColumn) string {
			z := c.zot
			return verdict(fmt.Sprintf("%d of %d (%d Docker-format), %d characters; exit %d, %d refusals",
				z.failed, z.images, z.docker, z.longest, z.run.exit, z.refusals), z.failed == z.docker)
		},
	}, {
		figure: "zot's Docker refusal: Docker-only blob bytes sent after the first refusal (blobs); sent in all / their total",
		target: "0",
		cell: func(c realColumn) string {
			z := c.zot
			s := fmt.Sprintf("%.1f MiB (%d); %.1f / %.1f MiB", float64(z.blobs.after)/mib, z.blobs.blobsAfter,
				float64(z.blobs.sent)/mib, float64(z.dockerOnly)/mib)
			if z.blobs.uncommittedAfter > 0 {
				s += fmt.Sprintf("; %.1f MiB of abandoned uploads after it", float64(z.blobs.uncommittedAfter)/mib)
			}
			return verdict(s, z.blobs.after == 0)
		},
	}}
}

// interruptCell renders an interrupt figure's re-sent fraction.
func interruptCell(r interruptResult) string {
	s := fmt.Sprintf("%.3f (%.1f MiB)", r.fraction(), float64(r.resent())/mib)
	if r.rerun.exit != 0 {
		s += fmt.Sprintf(", rerun exit %d", r.rerun.exit)
	}
	if r.check != "" {
		s += ", wrong target"
	}
	return s
}

// verdict appends whether the cell meets its target.
func verdict(s string, ok bool) string {
	if ok {
		return s + ": met"
	}
	return s + ": **missed**"
}

// lines renders a count of lines printed.
func lines(n int) string {
	switch n {
	case 0:
		return "no"
	case 1:
		return "yes, once"
	}
	return fmt.Sprintf("yes, %d times", n)
}

// exits renders run counts by exit code, e.g. "exit 0 x9, exit 3 x1".
func exits(m map[int]int) string {
	var out []string
	for _, code := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("exit %d x%d", code, m[code]))
	}
	return strings.Join(out, ", ")
}
