package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
)

// Totals are what a run places, known before its first blob byte: the
// images to copy (those not found in place) and their distinct blobs.
// Blobs of referrers (Options.IncludeReferrers) are found only while
// copying and are not counted.
type Totals struct {
	Images int
	Blobs  []ocispec.Descriptor
}

// Bytes is the size of the blobs.
func (t Totals) Bytes() int64 {
	var n int64
	for _, b := range t.Blobs {
		n += b.Size
	}
	return n
}

// rootCopy is what the resolve phase found out about an image.
type rootCopy struct {
	im        *targets.Image
	src       oras.ReadOnlyTarget
	dst       oras.Target
	root      ocispec.Descriptor // the source's manifest or index
	raw       []byte             // its bytes
	existing  ocispec.Descriptor // what the target tag points at, if anything
	tgtRef    string
	filtering bool // --platform filters the index
	notes     []string

	err     error // why the image cannot be placed
	done    bool  // the image has its status already (a chart found in place)
	present bool  // the target serves root at tgtRef: only referrers to check
	// manifests are the source manifests below root, read once: the copy
	// does not ask for them again. mu guards them and blobs while they are
	// read.
	mu        sync.Mutex
	manifests map[digest.Digest][]byte
	// blobs are the distributable blobs below root, for the totals.
	blobs []ocispec.Descriptor
}

// resolveAll resolves every planned image before any blob is sent, so the
// run's totals are known up front (Hooks.Planned), and learns which blobs
// the target holds: for every image whose target tag exists (this version
// copied by an earlier run, or an older one an upgrade replaces), the
// blobs its manifests name are in that repository, so a new image that
// shares them mounts them instead of uploading them again. The result is
// in the order of plan.All().
func (e *engine) resolveAll(ctx context.Context, plan *targets.Plan) []*rootCopy {
	var all []*rootCopy
	for _, im := range plan.All() {
		if im.Status == targets.Planned {
			all = append(all, &rootCopy{im: im})
		}
	}
	var g errgroup.Group
	g.SetLimit(e.opts.Jobs * 4)
	for _, c := range all {
		g.Go(func() error {
			c.err = e.resolve(ctx, c)
			return nil
		})
	}
	_ = g.Wait()
	return all
}

// totals adds up what the resolved images will place.
func totals(all []*rootCopy) Totals {
	var t Totals
	seen := map[digest.Digest]bool{}
	for _, c := range all {
		if c.err != nil || c.done || c.present {
			continue
		}
		t.Images++
		for _, b := range c.blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				t.Blobs = append(t.Blobs, b)
			}
		}
	}
	return t
}

// resolve finds the source and target manifests of c.im and reads the
// source manifests below its root.
func (e *engine) resolve(ctx context.Context, c *rootCopy) error {
	im := c.im
	if err := e.stopped(ctx); err != nil {
		return err
	}
	var err error
	if c.src, err = e.opts.source(im); err != nil {
		return fmt.Errorf("source %s: %w", im.Name, err)
	}
	if c.dst, err = e.opts.Target(im.TargetName); err != nil {
		return fmt.Errorf("target %s: %w", im.TargetName, err)
	}
	if c.done, err = chartPresent(ctx, im, c.src, c.dst); c.done || err != nil {
		return err
	}
	srcRef := im.Tag
	if im.PinnedDigest != "" {
		srcRef = im.PinnedDigest
	}
	if c.root, err = c.src.Resolve(ctx, srcRef); err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return fmt.Errorf("%w: %s", errSourceMissing, im.SourceRef())
		}
		return fmt.Errorf("resolving %s at the source: %w", im.SourceRef(), err)
	}
	if im.PinnedDigest != "" && c.root.Digest.String() != im.PinnedDigest {
		return fmt.Errorf("source %s resolved to %s, not the pinned digest", im.SourceRef(), c.root.Digest)
	}
	c.tgtRef = im.Tag
	if c.tgtRef == "" {
		c.tgtRef = im.PinnedDigest
	}
	c.filtering = len(e.opts.Platforms) > 0 && isIndex(c.root.MediaType) && im.PinnedDigest == ""
	c.existing, err = c.dst.Resolve(ctx, c.tgtRef)
	switch {
	case err == nil:
		e.registerHeld(ctx, c.dst, im.TargetName, c.existing)
		if c.existing.Digest == c.root.Digest && !c.filtering {
			c.present = true
			return nil
		}
	case !errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("checking %s at the target: %w", im.Target, err)
	}
	if c.raw, err = registryclient.FetchManifest(ctx, c.src, c.root); err != nil {
		return err
	}
	c.manifests = map[digest.Digest][]byte{}
	return e.walk(ctx, c, c.root, c.raw, 0)
}

// maxDepth bounds the nesting of indexes the resolve phase follows; the
// copy reads deeper ones as it goes.
const maxDepth = 2

// walk reads the manifests below desc (raw), keeping them and their blobs
// in c; at the root of a filtered index, only the wanted platforms.
func (e *engine) walk(ctx context.Context, c *rootCopy, desc ocispec.Descriptor, raw []byte, depth int) error {
	keep := func(depth int, child ocispec.Descriptor) bool {
		return depth > 0 || !c.filtering || matchPlatform(child.Platform, e.opts.Platforms)
	}
	return eachManifest(ctx, c.src, desc, raw, depth, keep, func(m ocispec.Descriptor, raw []byte, blobs []ocispec.Descriptor) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if m.Digest != desc.Digest {
			c.manifests[m.Digest] = raw
		}
		c.blobs = append(c.blobs, blobs...)
	})
}

// registerHeld remembers the blobs below desc as held by repo, reading the
// manifests from the target. A registry keeps a manifest's blobs with it,
// so no blob is asked for. Failures only mean fewer mounts: the copy
// checks every blob.
func (e *engine) registerHeld(ctx context.Context, dst oras.ReadOnlyTarget, repo string, desc ocispec.Descriptor) {
	raw, err := registryclient.FetchManifest(ctx, dst, desc)
	if err != nil {
		return
	}
	all := func(int, ocispec.Descriptor) bool { return true }
	_ = eachManifest(ctx, dst, desc, raw, 0, all, func(_ ocispec.Descriptor, _ []byte, blobs []ocispec.Descriptor) {
		for _, b := range blobs {
			e.remember(b.Digest, repo)
		}
	})
}

// eachManifest calls visit with every image manifest below desc (whose
// bytes are raw), its bytes and its distributable blobs, reading the
// manifests of indexes from store, together; keep says which entries of an
// index at a depth to follow. Indexes deeper than maxDepth, or broken, are
// left to the copy, which reports them.
func eachManifest(ctx context.Context, store oras.ReadOnlyTarget, desc ocispec.Descriptor, raw []byte, depth int,
	keep func(depth int, child ocispec.Descriptor) bool, visit func(m ocispec.Descriptor, raw []byte, blobs []ocispec.Descriptor)) error {
	if desc.MediaType == dockerSchema1 || desc.MediaType == dockerSchema1Signed {
		return schema1Error(desc)
	}
	if !isIndex(desc.MediaType) {
		blobs, err := manifestBlobs(desc, raw)
		if err != nil {
			return err
		}
		visit(desc, raw, slices.DeleteFunc(blobs, isForeign))
		return nil
	}
	var idx ocispec.Index
	if depth >= maxDepth || json.Unmarshal(raw, &idx) != nil {
		return nil
	}
	visit(desc, raw, nil)
	// One manifest that fails stops the others.
	g, gctx := errgroup.WithContext(ctx)
	for _, child := range idx.Manifests {
		if !keep(depth, child) {
			continue
		}
		g.Go(func() error {
			craw, err := registryclient.FetchManifest(gctx, store, child)
			if err != nil {
				return err
			}
			return eachManifest(gctx, store, child, craw, depth+1, keep, visit)
		})
	}
	return g.Wait()
}
