package main

import (
	"context"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/e2e/tokenserver"
)

// Settings of the real-registries figures.
const (
	// realRate throttles the uploads of the interrupt and zot figures
	// (40 MB/s): a 256 MiB layer then takes about 7 s, so a signal lands
	// mid-layer.
	realRate = 40e6
	// flakyRate throttles the uploads of the flaky-link figure: 100 MB/s
	// rather than realRate, as on distribution 2.8 a run may send its
	// unique bytes four times over (each cut restarts the blob); with
	// flakyShared, 10 seeds on both kinds take about 3 minutes at scale 1
	// on 2 cores.
	flakyRate = 100e6
	// flakyCutEvery is the mean distance between two link cuts of the
	// flaky-link figure, in MiB before -scale.
	flakyCutEvery = 150
	// flaky503 is the fraction of requests answered 503 on the flaky link.
	flaky503 = 0.03
	// flakyShared is how many of the corpus's shared-base images (from
	// the first) join the real provider image on the flaky link: every
	// base layer and both formats, about 470 MiB at scale 1 rather than
	// the whole corpus's 1 GiB, to keep the figure's 2 x -seeds runs
	// within a few minutes.
	flakyShared = 7
	// tokenLifetime is how long the token figure's Bearer tokens live.
	tokenLifetime = 2 * time.Second
	// tokenLifetimes is how many token lifetimes the token figure's run
	// should last: its uploads are throttled to that end, at any -scale.
	tokenLifetimes = 6
	// benchUser and benchPassword are the token figure's credentials.
	benchUser, benchPassword = "bench", "bench-password"
)

// realColumn is the real-registries figures of one registry kind.
type realColumn struct {
	kind       registry.Kind
	kill, stop interruptResult
	flaky      flakyResult
	token      tokenResult
	zot        zotResult
}

// realSets are the image sets of the real-registries figures.
type realSets struct {
	// provider is the real provider image alone (interrupt figures).
	provider *corpus
	// flaky is the provider and flakyShared shared-base images (flaky
	// link and token figures).
	flaky *corpus
	// docker is the corpus without its provider image: shared-base
	// images in both formats and an index (zot figure).
	docker *corpus
}

// real measures every real-registries figure on both registry kinds and
// returns the printer of their table.
func (e *env) real(ctx context.Context) (func(io.Writer), error) {
	provider, err := realProvider(e.cfg.scale)
	if err != nil {
		return nil, err
	}
	c := e.corpus
	sets := realSets{
		provider: provider,
		flaky:    provider.plus(newSet(c.images[1:1+flakyShared], c.built[1:1+flakyShared])),
		docker:   newSet(c.images[1:], c.built[1:]),
	}
	var cols []realColumn
	for _, kind := range registry.Kinds {
		col := realColumn{kind: kind}
		e.logf("real, %s: SIGKILL half-way through the %.0f MiB layer, then again", kind, float64(provider.largestLayer())/mib)
		if col.kill, err = e.interrupt(ctx, kind, sigKill, provider, realRate); err != nil {
			return nil, err
		}
		e.logf("real, %s: SIGINT half-way, then again", kind)
		if col.stop, err = e.interrupt(ctx, kind, sigInt, provider, realRate); err != nil {
			return nil, err
		}
		e.logf("real, %s: flaky link, %d seeds", kind, e.cfg.seeds)
		if col.flaky, err = e.flaky(ctx, kind, sets.flaky); err != nil {
			return nil, err
		}
		e.logf("real, %s: Bearer tokens living %s", kind, tokenLifetime)
		if col.token, err = e.token(ctx, kind, sets.flaky); err != nil {
			return nil, err
		}
		e.logf("real, %s: Docker manifests refused as zot does", kind)
		if col.zot, err = e.zot(ctx, kind, sets.docker); err != nil {
			return nil, err
		}
		cols = append(cols, col)
	}
	return func(w io.Writer) { printReal(w, e.cfg, sets, cols) }, nil
}

// flakyResult sums the flaky-link runs of one registry kind.
type flakyResult struct {
	seeds int
	// failed counts the failed images over all seeds (summary.failed, or
	// every image when a run wrote no report); checks the runs whose
	// target differed from the source although they exited 0.
	failed, checks int
	// exits counts the runs by exit code.
	exits map[int]int
	// minRatio and maxRatio bound the bytes uploaded over the unique bytes.
	minRatio, maxRatio float64
	// restarted and resent sum the reports' blobsRestarted and bytesResent.
	restarted int
	resent    int64
	// cuts and unavailable count the link cuts and 503s injected.
	cuts, unavailable int64
	// wall sums the run times.
	wall time.Duration
}

// flaky mirrors set through a flaky link once per seed, each time into a
// fresh registry of the given kind.
func (e *env) flaky(ctx context.Context, kind registry.Kind, set *corpus) (flakyResult, error) {
	res := flakyResult{seeds: e.cfg.seeds, exits: map[int]int{}}
	for seed := 1; seed <= e.cfg.seeds; seed++ {
		if err := e.flakySeed(ctx, kind, set, uint64(seed), &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// flakySeed runs the flaky-link figure with one seed and adds it to res.
func (e *env) flakySeed(ctx context.Context, kind registry.Kind, set *corpus, seed uint64, res *flakyResult) error {
	f, err := e.newFigure(ctx, "flaky", kind, nil, faultproxy.Faults{Seed: seed, UploadBytesPerSec: flakyRate,
		CutEvery: int64(flakyCutEvery * e.cfg.scale * mib), Rate503: flaky503}, set)
	if err != nil {
		return err
	}
	defer f.close()
	p, err := e.runEdgemirror(ctx, f.args, "", 0, nil)
	if err != nil {
		return fmt.Errorf("%s, flaky link, seed %d: %w", kind, seed, err)
	}
	st := f.proxy.Stats()
	ratio := float64(st.BytesUploaded) / float64(set.unique)
	if seed == 1 || ratio < res.minRatio {
		res.minRatio = ratio
	}
	res.maxRatio = max(res.maxRatio, ratio)
	res.exits[p.exit]++
	res.wall += p.wall
	res.cuts += st.Faults["link-cut"]
	res.unavailable += st.Faults["status-503"]
	failed := len(set.images)
	if p.hasReport {
		failed = p.report.Summary.Failed
		res.restarted += p.report.Summary.BlobsRestarted
		res.resent += p.report.Summary.BytesResent
	}
	res.failed += failed
	if e.check(ctx, f, p, fmt.Sprintf("%s, seed %d", kind, seed)) != "" {
		res.checks++
	}
	e.logf("%s, seed %d: %.1f s, %.2fx unique, %d link cuts, %d 503s, %d failed, %d restarts", kind, seed,
		p.wall.Seconds(), ratio, st.Faults["link-cut"], st.Faults["status-503"], failed, p.restarts())
	return nil
}

// tokenResult is the token figure of one registry kind.
type tokenResult struct {
	run proc
	// uploaded is the bytes uploaded, at the proxy; unique the set's.
	uploaded, unique int64
	// issued is the number of tokens the token server issued.
	issued int64
	// check is the target check's failure after a successful run, or "".
	check string
}

// tokenRate is the upload rate at which set takes tokenLifetimes token
// lifetimes to upload.
func tokenRate(set *corpus) int64 {
	return int64(float64(set.unique) / (tokenLifetimes * tokenLifetime.Seconds()))
}

// token mirrors set into a registry of the given kind that takes Bearer
// tokens living tokenLifetime, through a proxy that throttles uploads to
// tokenRate, so that the run outlasts several tokens.
func (e *env) token(ctx context.Context, kind registry.Kind, set *corpus) (tokenResult, error) {
	res := tokenResult{unique: set.unique}
	ts, err := tokenserver.Start(tokenserver.Options{Users: map[string]string{benchUser: benchPassword}, Lifetime: tokenLifetime})
	if err != nil {
		return res, fmt.Errorf("token server: %w", err)
	}
	defer ts.Close()
	f, err := e.newFigure(ctx, "token", kind, ts.RegistryAuth(), faultproxy.Faults{UploadBytesPerSec: tokenRate(set)}, set,
		"-u", benchUser, "--password-stdin")
	if err != nil {
		return res, err
	}
	defer f.close()
	if res.run, err = e.runEdgemirror(ctx, f.args, benchPassword+"\n", 0, nil); err != nil {
		return res, fmt.Errorf("%s, tokens: %w", kind, err)
	}
	res.uploaded, res.issued = f.proxy.Stats().BytesUploaded, ts.Issued()
	res.check = e.check(ctx, f, res.run, kind.String()+", tokens")
	e.logf("%s, tokens: %.1f s, %d tokens issued", kind, res.run.wall.Seconds(), res.issued)
	return res, nil
}

// zotResult is the zot figure of one registry kind.
type zotResult struct {
	run proc
	// images and docker count the set's images and its Docker-format
	// ones; failed the images the report says failed.
	images, docker, failed int
	// longest is the length of the longest failure reason, in characters.
	longest int
	// refusals counts the 415 answers.
	refusals int64
	// uploaded is the bytes uploaded, at the proxy; unique the set's.
	uploaded, unique int64
	// dockerOnly is the total size of the blobs only Docker-format images
	// use; blobs what the run sent of them (see dockerTracker).
	dockerOnly int64
	blobs      dockerBlobs
}

// zot mirrors set into a registry of the given kind behind a proxy that
// refuses Docker manifests as zot does without docker2s2 compatibility,
// throttled to realRate, and measures the Docker-only bytes sent.
func (e *env) zot(ctx context.Context, kind registry.Kind, set *corpus) (zotResult, error) {
	res := zotResult{images: len(set.images), unique: set.unique}
	for _, im := range set.images {
		if im.isDocker() {
			res.docker++
		}
	}
	only := set.dockerOnly()
	for _, n := range only {
		res.dockerOnly += n
	}
	f, err := e.newFigure(ctx, "zot", kind, nil, faultproxy.Faults{UploadBytesPerSec: realRate}, set)
	if err != nil {
		return res, err
	}
	defer f.close()
	tracker := newDockerTracker(faultproxy.RefuseDockerManifests())
	f.proxy.SetHook(tracker.hook)
	if res.run, err = e.runEdgemirror(ctx, f.args, "", 0, nil); err != nil {
		return res, fmt.Errorf("%s, zot: %w", kind, err)
	}
	res.uploaded = f.proxy.Stats().BytesUploaded
	res.refusals, res.blobs = tracker.result(only)
	if res.run.hasReport {
		res.failed = res.run.report.Summary.Failed
		for _, im := range res.run.report.Images {
			if im.Status == "failed" {
				res.longest = max(res.longest, utf8.RuneCountInString(im.Reason))
			}
		}
	}
	e.logf("%s, zot: exit %d, %d of %d images failed, %.1f MiB of Docker-only blobs sent after the first refusal", kind,
		res.run.exit, res.failed, res.images, float64(res.blobs.after)/mib)
	return res, nil
}
