package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
	"github.com/edgemirror/edgemirror/transport"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// memRegistry is a set of oras-go memory stores, one per repository. Its
// repositories can mount blobs from each other, as a registry does.
type memRegistry struct {
	mu     sync.Mutex
	repos  map[string]*memRepo
	pushes atomic.Int64 // blob pushes
	mounts atomic.Int64
	refuse bool // answer mounts as a registry that does not support them
	// dedupe mounts from every repository of the host whatever "from"
	// says, as zot does from its dedupe store.
	dedupe bool
	// refuseDocker answers Docker manifests as zot does without docker2s2.
	refuseDocker bool
	// expire answers this many blob pushes 401, as a registry does when
	// the token of the session's POST expired before its PUT.
	expire  atomic.Int64
	fetches atomic.Int64
}

type memRepo struct {
	*memory.Store
	reg  *memRegistry
	host string
}

func newMemRegistry() *memRegistry { return &memRegistry{repos: map[string]*memRepo{}} }

func (m *memRegistry) repo(name string) *memRepo {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.repos[name]
	if !ok {
		host, _, _ := strings.Cut(name, "/")
		r = &memRepo{Store: memory.New(), reg: m, host: host}
		m.repos[name] = r
	}
	return r
}

func (r *memRepo) Push(ctx context.Context, d ocispec.Descriptor, rd io.Reader) error {
	if r.reg.refuseDocker && isDocker(d.MediaType) {
		return &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusUnsupportedMediaType,
			Errors: errcode.Errors{{Code: "MANIFEST_INVALID", Message: "manifest invalid"}}}
	}
	if !isManifestType(d.MediaType) && r.reg.expire.Add(-1) >= 0 {
		return &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusUnauthorized,
			Errors: errcode.Errors{{Code: "UNAUTHORIZED", Message: "authentication required"}}}
	}
	if !isManifestType(d.MediaType) {
		r.reg.pushes.Add(1)
	}
	return r.Store.Push(ctx, d, rd)
}

func (r *memRepo) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	r.reg.fetches.Add(1)
	return r.Store.Fetch(ctx, d)
}

// MountBlob mounts as a registry does, or refuses as one that does not.
func (r *memRepo) MountBlob(ctx context.Context, d ocispec.Descriptor, from string) (bool, error) {
	if r.reg.refuse {
		return false, nil
	}
	src := r.reg.repo(r.host + "/" + from)
	if r.reg.dedupe {
		src = r.reg.holder(r.host, d)
	}
	if ok, _ := src.Exists(ctx, d); src == nil || !ok {
		return false, nil
	}
	rc, err := src.Store.Fetch(ctx, d)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	r.reg.mounts.Add(1)
	return true, r.Store.Push(ctx, d, rc)
}

// holder returns a repository of host that holds d, or nil.
func (m *memRegistry) holder(host string, d ocispec.Descriptor) *memRepo {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.repos {
		if ok, _ := r.Exists(context.Background(), d); ok && r.host == host {
			return r
		}
	}
	return nil
}

func isManifestType(mt string) bool {
	return strings.Contains(mt, "manifest") || isIndex(mt)
}

// pushBlob stores data in repo and returns its descriptor.
func pushBlob(t *testing.T, repo oras.Target, mt string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := content.NewDescriptorFromBytes(mt, data)
	if err := repo.Push(context.Background(), d, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		t.Fatal(err)
	}
	return d
}

// pushImage stores an image whose layers are the given strings, tagged tag.
func pushImage(t *testing.T, repo oras.Target, tag string, platform *ocispec.Platform, layers ...string) ocispec.Descriptor {
	t.Helper()
	cfg := pushBlob(t, repo, ocispec.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"layers":%q}`, layers)))
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg}
	for _, l := range layers {
		m.Layers = append(m.Layers, pushBlob(t, repo, ocispec.MediaTypeImageLayerGzip, []byte(l)))
	}
	raw, _ := json.Marshal(m)
	d := pushBlob(t, repo, ocispec.MediaTypeImageManifest, raw)
	d.Platform = platform
	if tag != "" {
		if err := repo.Tag(context.Background(), d, tag); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// pushTwoPlatforms stores an index tagged 1 of a linux/amd64 and a
// linux/arm64 image, one layer each.
func pushTwoPlatforms(t *testing.T, repo oras.Target, amdLayer, armLayer string) {
	t.Helper()
	amd := pushImage(t, repo, "", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, amdLayer)
	arm := pushImage(t, repo, "", &ocispec.Platform{OS: "linux", Architecture: "arm64"}, armLayer)
	pushIndex(t, repo, "1", amd, arm)
}

func pushIndex(t *testing.T, repo oras.Target, tag string, children ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: children}
	raw, _ := json.Marshal(idx)
	d := pushBlob(t, repo, ocispec.MediaTypeImageIndex, raw)
	if err := repo.Tag(context.Background(), d, tag); err != nil {
		t.Fatal(err)
	}
	return d
}

type harness struct {
	src, dst *memRegistry
	opts     Options
}

func newHarness() *harness {
	h := &harness{src: newMemRegistry(), dst: newMemRegistry()}
	h.opts = Options{
		Jobs:   4,
		Source: func(name string) (oras.ReadOnlyTarget, error) { return h.src.repo(name), nil },
		Target: func(name string) (oras.Target, error) { return h.dst.repo(name), nil },
	}
	return h
}

func (h *harness) plan(refs ...string) *targets.Plan {
	res := &profile.Result{}
	for _, r := range refs {
		res.Images = append(res.Images, profile.Image{Ref: r, Raw: r, From: profile.Provenance{Profile: "p", Pack: "k", Origin: profile.OriginContent}})
	}
	return targets.Build(res, targets.Rules{Registry: "reg.local/edge"})
}

func statuses(p *targets.Plan) string {
	var s []string
	for _, im := range p.Images {
		s = append(s, string(im.Status))
	}
	return strings.Join(s, ",")
}

func TestCopyDedupMountAndPresent(t *testing.T) {
	h := newHarness()
	ctx := context.Background()
	// Three images share the base layer; two share a second one too.
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "base", "one")
	pushImage(t, h.src.repo("quay.io/a/two"), "1", nil, "base", "mid", "two")
	pushImage(t, h.src.repo("quay.io/a/three"), "1", nil, "base", "mid", "three")

	p := h.plan("quay.io/a/one:1", "quay.io/a/two:1", "quay.io/a/three:1")
	st := Copy(ctx, p, h.opts)
	if got := statuses(p); got != "copied,copied,copied" {
		t.Fatalf("statuses %s; reasons %q %q %q", got, p.Images[0].Reason, p.Images[1].Reason, p.Images[2].Reason)
	}
	// Unique blobs: base, mid, one, two, three + 3 configs = 8.
	if st.BlobsUploaded != 8 || h.dst.pushes.Load() != 8 {
		t.Errorf("uploaded %d blobs (%d pushes), want 8 unique", st.BlobsUploaded, h.dst.pushes.Load())
	}
	if st.BlobsMounted != 3 || h.dst.mounts.Load() != 3 { // base twice, mid once
		t.Errorf("mounted %d (%d), want 3", st.BlobsMounted, h.dst.mounts.Load())
	}
	for _, im := range p.Images {
		src, _ := h.src.repo(im.Name).Resolve(ctx, im.Tag)
		dst, err := h.dst.repo(im.TargetName).Resolve(ctx, im.Tag)
		if err != nil || dst.Digest != src.Digest || im.Digest != src.Digest.String() {
			t.Errorf("%s: target %v %v, source %s, report %s", im.Target, dst.Digest, err, src.Digest, im.Digest)
		}
	}

	// A second run finds everything present and reads no blob.
	before := h.src.fetches.Load()
	p = h.plan("quay.io/a/one:1", "quay.io/a/two:1", "quay.io/a/three:1")
	st = Copy(ctx, p, h.opts)
	if got := statuses(p); got != "present,present,present" || st.BlobsUploaded != 0 || st.BytesUploaded != 0 {
		t.Errorf("second run: %s, %+v", got, st)
	}
	if n := h.src.fetches.Load() - before; n != 0 {
		t.Errorf("second run fetched %d things from the source", n)
	}
}

// TestCopyMountsWhatEarlierRunsPlaced: an upgrade's image shares a base
// layer with an image of the previous profile version, which the new plan
// no longer names: the blob is mounted from where the earlier run put it.
// A memory gone stale (the repository no longer holds the blob) costs only
// the mount: the blob is uploaded.
func TestCopyMountsWhatEarlierRunsPlaced(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name             string
		remember, stale  bool
		uploaded, mounts int64
	}{
		{"remembered", true, false, 2, 1},
		{"forgotten", false, false, 3, 0},
		{"stale", true, true, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness()
			pushImage(t, h.src.repo("quay.io/a/app-v1"), "1", nil, "base", "v1")
			pushImage(t, h.src.repo("quay.io/a/app-v2"), "2", nil, "base", "v2")
			day1 := Copy(ctx, h.plan("quay.io/a/app-v1:1"), h.opts)
			if c.stale {
				h.dst.mu.Lock()
				delete(h.dst.repos, "reg.local/edge/quay.io/a/app-v1")
				h.dst.mu.Unlock()
			}
			if c.remember {
				h.opts.Remembered = day1.Held
			}
			pushes, mounts := h.dst.pushes.Load(), h.dst.mounts.Load()
			p := h.plan("quay.io/a/app-v2:2")
			st := Copy(ctx, p, h.opts)
			if got := statuses(p); got != "copied" {
				t.Fatalf("status %s (%s)", got, p.Images[0].Reason)
			}
			if n, m := h.dst.pushes.Load()-pushes, h.dst.mounts.Load()-mounts; n != c.uploaded || m != c.mounts {
				t.Errorf("uploaded %d blobs and mounted %d, want %d and %d", n, m, c.uploaded, c.mounts)
			}
			base := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("base"))
			if got := st.Held[base.Digest]; !slices.Contains(got, "reg.local/edge/quay.io/a/app-v2") {
				t.Errorf("held %v: the run does not say where it put the base layer", got)
			}
		})
	}
}

// TestMountWithoutFrom: at a registry that mounts from its whole store
// (zot), once a mount asked without "from" succeeded, a blob no run of
// ours placed is mounted from wherever the registry holds it; at one that
// needs "from" (distribution), the first ask fails, the mount is asked
// again with "from", and a blob without a known source is not asked for.
func TestMountWithoutFrom(t *testing.T) {
	ctx := context.Background()
	for _, dedupe := range []bool{true, false} {
		h := newHarness()
		h.dst.dedupe = dedupe
		known := pushBlob(t, h.dst.repo("reg.local/edge/a"), ocispec.MediaTypeImageLayerGzip, []byte("known"))
		other := pushBlob(t, h.dst.repo("reg.local/edge/elsewhere"), ocispec.MediaTypeImageLayerGzip, []byte("put there by another tool"))
		e := &engine{opts: Options{Remembered: map[digest.Digest][]string{known.Digest: {"reg.local/edge/a"}}}}
		dst := h.dst.repo("reg.local/edge/b")
		if !e.mount(ctx, dst, known, "reg.local/edge/b", "") {
			t.Errorf("dedupe %v: the remembered blob was not mounted", dedupe)
		}
		if got := e.mount(ctx, dst, other, "reg.local/edge/b", ""); got != dedupe {
			t.Errorf("dedupe %v: a blob of unknown place mounted %v", dedupe, got)
		}
		if n := h.dst.mounts.Load(); n != map[bool]int64{true: 2, false: 1}[dedupe] {
			t.Errorf("dedupe %v: %d mounts", dedupe, n)
		}
	}
}

// TestCopyTotalsComeTrue: every byte the plan counts is reported placed,
// also for an image whose --platform-filtered index turns out to be at the
// target already (only the copy computes its digest).
func TestCopyTotalsComeTrue(t *testing.T) {
	h := newHarness()
	pushTwoPlatforms(t, h.src.repo("quay.io/a/multi"), "amd-layer", "arm-layer")
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "base", "one")
	h.opts.Platforms = []string{"linux/amd64"}
	for run := 1; run <= 2; run++ {
		var planned, placed int64
		var mu sync.Mutex
		seen := map[digest.Digest]bool{}
		h.opts.Hooks = Hooks{
			Planned: func(t Totals) { planned = t.Bytes() },
			BlobPlaced: func(d ocispec.Descriptor, _ Outcome) {
				mu.Lock()
				defer mu.Unlock()
				if !seen[d.Digest] {
					seen[d.Digest] = true
					placed += d.Size
				}
			},
		}
		p := h.plan("quay.io/a/multi:1", "quay.io/a/one:1")
		Copy(context.Background(), p, h.opts)
		want := map[int]string{1: "copied,copied", 2: "present,present"}[run]
		if got := statuses(p); got != want {
			t.Fatalf("run %d: statuses %s, want %s", run, got, want)
		}
		if placed != planned || (run == 1 && planned == 0) {
			t.Errorf("run %d: planned %d bytes, placed %d", run, planned, placed)
		}
	}
}

func TestCopyConcurrentSameLayerOnce(t *testing.T) {
	h := newHarness()
	h.dst.refuse = true // no mounts: each repository needs its own upload
	var refs []string
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("quay.io/a/img%d", i)
		pushImage(t, h.src.repo(name), "1", nil, "shared-layer", fmt.Sprint("own", i))
		refs = append(refs, name+":1")
	}
	p := h.plan(refs...)
	st := Copy(context.Background(), p, Options{Jobs: 3, Source: h.opts.Source, Target: h.opts.Target})
	if strings.Count(statuses(p), "copied") != 12 {
		t.Fatalf("statuses %s", statuses(p))
	}
	// Refused mounts fall back to an upload: 12 repos × 3 blobs.
	if st.BlobsUploaded != 36 || st.BlobsMounted != 0 {
		t.Errorf("stats %+v, want 36 uploads and no mounts", st)
	}
}

func TestCopyMissingAndFailureKeepOthers(t *testing.T) {
	h := newHarness()
	pushImage(t, h.src.repo("quay.io/a/ok"), "1", nil, "layer")
	// An image whose layer is not at the source.
	broken := h.src.repo("quay.io/a/broken")
	cfg := pushBlob(t, broken, ocispec.MediaTypeImageConfig, []byte(`{}`))
	gone := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("gone"))
	raw, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{gone}})
	d := pushBlob(t, broken, ocispec.MediaTypeImageManifest, raw)
	if err := broken.Tag(context.Background(), d, "1"); err != nil {
		t.Fatal(err)
	}

	p := h.plan("quay.io/a/ok:1", "quay.io/a/absent:1", "quay.io/a/broken:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "copied,missing,failed" {
		t.Fatalf("statuses %s", got)
	}
	if !strings.Contains(p.Images[1].Reason, "not found at the source") || !strings.Contains(p.Images[2].Reason, "missing at the source") {
		t.Errorf("reasons %q / %q", p.Images[1].Reason, p.Images[2].Reason)
	}
}

func TestCopyIndexAndPlatforms(t *testing.T) {
	h := newHarness()
	repo := h.src.repo("quay.io/a/multi")
	amd := pushImage(t, repo, "", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, "amd-layer")
	arm := pushImage(t, repo, "", &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "arm-layer")
	idx := pushIndex(t, repo, "1", amd, arm)
	// A registry resolves a digest reference; the memory store only
	// resolves what was tagged, so tag the index under its digest too.
	if err := repo.Tag(context.Background(), idx, idx.Digest.String()); err != nil {
		t.Fatal(err)
	}

	p := h.plan("quay.io/a/multi:1")
	st := Copy(context.Background(), p, h.opts)
	im := p.Images[0]
	if im.Status != targets.Copied || im.Digest != idx.Digest.String() || strings.Join(im.Platforms, ",") != "linux/amd64,linux/arm64/v8" && strings.Join(im.Platforms, ",") != "linux/arm64/v8,linux/amd64" {
		t.Fatalf("index copy: %+v", im)
	}
	if st.BlobsUploaded != 4 {
		t.Errorf("uploaded %d blobs, want 4", st.BlobsUploaded)
	}

	// --platform linux/arm64 on a tag: a filtered index with a new digest.
	h2 := newHarness()
	h2.src = h.src
	opts := h2.opts
	opts.Platforms = []string{"linux/arm64"}
	p = h2.plan("quay.io/a/multi:1", "quay.io/a/multi@"+idx.Digest.String())
	st = Copy(context.Background(), p, opts)
	byTag, byDigest := p.Images[0], p.Images[1]
	if byTag.Status != targets.Copied || byTag.Digest == idx.Digest.String() || !strings.Contains(byTag.Reason, "index filtered to linux/arm64") {
		t.Errorf("filtered tag copy: %+v", byTag)
	}
	if byDigest.Status != targets.Copied || byDigest.Digest != idx.Digest.String() || !strings.Contains(byDigest.Reason, "every platform copied") {
		t.Errorf("digest-pinned copy: %+v", byDigest)
	}
	got, err := h2.dst.repo(byTag.TargetName).Resolve(context.Background(), "1")
	if err != nil || got.Digest.String() != byTag.Digest {
		t.Errorf("target tag %v %v, want %s", got.Digest, err, byTag.Digest)
	}
}

func TestCopySchema1(t *testing.T) {
	h := newHarness()
	repo := h.src.repo("quay.io/a/old")
	d := pushBlob(t, repo, dockerSchema1Signed, []byte(`{"schemaVersion":1}`))
	if err := repo.Tag(context.Background(), d, "1"); err != nil {
		t.Fatal(err)
	}
	p := h.plan("quay.io/a/old:1")
	Copy(context.Background(), p, h.opts)
	if statuses(p) != "failed" || !strings.Contains(p.Images[0].Reason, "schema 1") {
		t.Fatalf("got %s: %q", statuses(p), p.Images[0].Reason)
	}
}

func TestCopyCancelled(t *testing.T) {
	h := newHarness()
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := h.plan("quay.io/a/one:1")
	Copy(ctx, p, h.opts)
	if p.Images[0].Status != targets.Failed || !strings.Contains(p.Images[0].Reason, "canceled") {
		t.Fatalf("got %+v", p.Images[0])
	}
}

// TestCopyStopStartsNothing: after a graceful stop, no image starts and no
// blob moves; every image fails with ErrStopped's reason, so the report
// says what to do.
func TestCopyStopStartsNothing(t *testing.T) {
	h := newHarness()
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "base", "one")
	pushImage(t, h.src.repo("quay.io/a/two"), "1", nil, "base", "two")
	stop := make(chan struct{})
	close(stop)
	h.opts.Stop = stop
	p := h.plan("quay.io/a/one:1", "quay.io/a/two:1")
	st := Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "failed,failed" {
		t.Fatalf("statuses %s, want failed,failed", got)
	}
	for _, im := range p.Images {
		if im.Reason != registryclient.ErrStopped.Error() {
			t.Errorf("%s: reason %q, want %q", im.Target, im.Reason, registryclient.ErrStopped)
		}
	}
	if st.BlobsUploaded != 0 || h.dst.pushes.Load() != 0 || h.src.fetches.Load() != 0 {
		t.Errorf("a stopped run moved data: %+v, %d pushes, %d fetches", st, h.dst.pushes.Load(), h.src.fetches.Load())
	}
}

// stallingRepo is a source repository whose blob stall stays unread until
// the context of its fetch ends (or a minute passes), and whose manifest
// broken is missing, answered only once the stall has begun.
type stallingRepo struct {
	*memRepo
	stall, broken digest.Digest
	started       chan struct{} // closed when the stalled fetch begins
	cancelled     chan bool     // whether the stalled fetch ended by its context
}

func (r *stallingRepo) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	switch d.Digest {
	case r.broken:
		<-r.started
		return nil, fmt.Errorf("%s: %w", d.Digest, errdef.ErrNotFound)
	case r.stall:
		close(r.started)
		select {
		case <-ctx.Done():
			r.cancelled <- true
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			r.cancelled <- false
		}
	}
	return r.memRepo.Fetch(ctx, d)
}

// TestCopyIndexChildFailureStopsSiblings: when one manifest of an index
// cannot be copied (a blob of it fails), the transfers of its siblings
// stop instead of running to the end for an image that has failed already.
func TestCopyIndexChildFailureStopsSiblings(t *testing.T) {
	h := newHarness()
	src := h.src.repo("quay.io/a/multi")
	pushTwoPlatforms(t, src, "slow-layer", "unreadable-layer")
	stall := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("slow-layer"))
	broken := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("unreadable-layer"))
	stalling := &stallingRepo{memRepo: src, stall: stall.Digest, broken: broken.Digest, started: make(chan struct{}), cancelled: make(chan bool, 1)}
	h.opts.Source = func(name string) (oras.ReadOnlyTarget, error) { return stalling, nil }
	p := h.plan("quay.io/a/multi:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "failed" {
		t.Fatalf("status %s (%s), want failed", got, p.Images[0].Reason)
	}
	if !<-stalling.cancelled {
		t.Error("the sibling's transfer ran on after the index had failed")
	}
}

// TestCopyMissingChildFailsBeforeAnyByte: a manifest of an index missing at
// the source fails the image while it is resolved, before any of its blobs
// is sent, and the run's totals leave it out.
func TestCopyMissingChildFailsBeforeAnyByte(t *testing.T) {
	h := newHarness()
	src := h.src.repo("quay.io/a/multi")
	good := pushImage(t, src, "", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, "good-layer")
	missing := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, []byte(`{"not":"stored"}`))
	missing.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	pushIndex(t, src, "1", good, missing)
	pushImage(t, h.src.repo("quay.io/a/other"), "1", nil, "other-layer")
	var planned Totals
	h.opts.Hooks.Planned = func(t Totals) { planned = t }
	p := h.plan("quay.io/a/multi:1", "quay.io/a/other:1")
	st := Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "failed,copied" || !strings.Contains(p.Images[0].Reason, missing.Digest.String()) {
		t.Fatalf("statuses %s (%s)", got, p.Images[0].Reason)
	}
	if st.BlobsUploaded != 2 || planned.Images != 1 || len(planned.Blobs) != 2 {
		t.Errorf("uploaded %d blobs, planned %+v; want only the other image's config and layer", st.BlobsUploaded, planned)
	}
}

// chartSource is a chart from an HTTP(S) repository as helmrepo gives it:
// an OCI chart whose archive digest is known from index.yaml before
// anything is downloaded. It counts what is read from it.
type chartSource struct {
	*memory.Store
	archive digest.Digest
	reads   atomic.Int64
}

func (c *chartSource) ArchiveDigest() (digest.Digest, bool) { return c.archive, true }

func (c *chartSource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	c.reads.Add(1)
	return c.Store.Resolve(ctx, ref)
}

func (c *chartSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	c.reads.Add(1)
	return c.Store.Fetch(ctx, d)
}

// TestCopyChartPresentWithoutDownload: a chart already at its target, with
// the archive the repository's index names, is present without reading the
// chart at all (the archive would be downloaded for that).
func TestCopyChartPresentWithoutDownload(t *testing.T) {
	h := newHarness()
	newSource := func() *chartSource {
		c := &chartSource{Store: memory.New()}
		layer := pushImage(t, c, "1.2.3", nil, "chart-archive")
		raw, _ := content.FetchAll(context.Background(), c.Store, layer)
		var m ocispec.Manifest
		_ = json.Unmarshal(raw, &m)
		c.archive = m.Layers[0].Digest
		return c
	}
	res := &profile.Result{Charts: []profile.Chart{{Repo: "https://charts.example/stable", Name: "agent", Version: "1.2.3"}}}
	plan := func() *targets.Plan { return targets.Build(res, targets.Rules{Registry: "reg.local/edge"}) }

	first := newSource()
	h.opts.Charts = func(*targets.Image) (oras.ReadOnlyTarget, error) { return first, nil }
	p := plan()
	Copy(context.Background(), p, h.opts)
	if st := p.Charts[0].Status; st != targets.Copied {
		t.Fatalf("first run: %s %s", st, p.Charts[0].Reason)
	}

	second := newSource()
	h.opts.Charts = func(*targets.Image) (oras.ReadOnlyTarget, error) { return second, nil }
	p = plan()
	Copy(context.Background(), p, h.opts)
	if st := p.Charts[0].Status; st != targets.Present || p.Charts[0].Digest == "" {
		t.Fatalf("second run: %s %q", st, p.Charts[0].Reason)
	}
	if n := second.reads.Load(); n != 0 {
		t.Errorf("the chart present at the target was read %d times", n)
	}
}

// TestCopyTokenExpiredBeforePut: a whole-blob PUT refused with 401 (its
// token, taken from the session's POST, expired) is made again, and the
// image arrives.
func TestCopyTokenExpiredBeforePut(t *testing.T) {
	h := newHarness()
	h.opts.Retry = transport.Retry{MinWait: time.Millisecond, MaxWait: time.Millisecond}
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "layer")
	h.dst.expire.Store(2)
	p := h.plan("quay.io/a/one:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "copied" {
		t.Fatalf("status %s: %s", got, p.Images[0].Reason)
	}
}
