package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// imageJob is the copy of one image: its two ends and what it added up.
type imageJob struct {
	src  oras.ReadOnlyTarget
	dst  oras.Target
	repo string // the target repository, for mounts
	// manifests were read by the resolve phase (read-only here).
	manifests map[digest.Digest][]byte

	mu        sync.Mutex
	total     int64    // bytes of every manifest and blob of the image
	platforms []string // of the index's manifests
	foreign   int      // non-distributable layers left out
	referrers int      // referrer manifests copied
}

// newJob starts the copy of the image of c.
func (e *engine) newJob(c *rootCopy) *imageJob {
	return &imageJob{src: c.src, dst: c.dst, repo: c.im.TargetName, manifests: c.manifests}
}

// manifest returns the bytes of the source manifest desc.
func (j *imageJob) manifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if raw, ok := j.manifests[desc.Digest]; ok {
		return raw, nil
	}
	return registryclient.FetchManifest(ctx, j.src, desc)
}

func (j *imageJob) add(f func(j *imageJob)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f(j)
}

// copyNode copies a manifest or index with everything below it, then pushes
// it byte-exact, tagged with ref when ref is a tag; with IncludeReferrers,
// then the referrers of the node.
func (e *engine) copyNode(ctx context.Context, j *imageJob, desc ocispec.Descriptor, raw []byte, ref string) error {
	j.add(func(j *imageJob) { j.total += desc.Size })
	var children, blobs []ocispec.Descriptor
	switch desc.MediaType {
	case dockerSchema1, dockerSchema1Signed:
		return schema1Error(desc)
	case ocispec.MediaTypeImageIndex, dockerList:
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("index %s is not valid JSON: %w", desc.Digest, err)
		}
		children = idx.Manifests
	default:
		if err := e.dockerRefused(j.repo, desc); err != nil {
			return err // refused since the image started: send none of its blobs
		}
		var err error
		if blobs, err = manifestBlobs(desc, raw); err != nil {
			return err
		}
	}
	// A child that fails fails the node: its siblings stop too.
	g, gctx := errgroup.WithContext(ctx)
	for _, child := range children {
		g.Go(func() error {
			craw, err := j.manifest(gctx, child)
			if err != nil {
				return err
			}
			if err := e.copyNode(gctx, j, child, craw, ""); err != nil {
				return err
			}
			if p := child.Platform; p != nil {
				j.add(func(j *imageJob) { j.platforms = append(j.platforms, platformString(p)) })
			}
			return nil
		})
	}
	for _, b := range blobs {
		if isForeign(b) {
			j.add(func(j *imageJob) { j.foreign++ })
			continue
		}
		j.add(func(j *imageJob) { j.total += b.Size })
		g.Go(func() error { return e.placeBlob(gctx, j, desc, b) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := pushManifest(ctx, j.dst, desc, raw, ref); err != nil {
		return e.noteDockerRefusal(j.repo, desc, err)
	}
	return e.copyReferrers(ctx, j, desc)
}

// schema1Error fails a Docker schema 1 manifest.
func schema1Error(desc ocispec.Descriptor) error {
	return fmt.Errorf("%s is a Docker schema 1 manifest, which OCI registries refuse; re-push the image with a current client", desc.Digest)
}

// referrerKeeper is a target that must record a referrer to find it again
// (an OCI layout lists only what index.json names).
type referrerKeeper interface {
	KeepReferrer(ctx context.Context, desc ocispec.Descriptor) error
}

// copyReferrers copies the referrers of subject (signatures, SBOMs,
// attestations: OCI 1.1 referrers API, or the tag-schema fallback, as
// oras-go lists them), each with everything below it and its own referrers.
// The target indexes them by their subject on push.
func (e *engine) copyReferrers(ctx context.Context, j *imageJob, subject ocispec.Descriptor) error {
	if !e.opts.IncludeReferrers {
		return nil
	}
	lister, ok := j.src.(registry.ReferrerLister)
	if !ok {
		return nil
	}
	var refs []ocispec.Descriptor
	if err := lister.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
		refs = append(refs, page...)
		return nil
	}); err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return fmt.Errorf("listing the referrers of %s: %w", subject.Digest, err)
	}
	for _, r := range refs {
		if ok, err := j.dst.Exists(ctx, r); err == nil && ok {
			continue // copied by an earlier run, with what is below it
		}
		raw, err := registryclient.FetchManifest(ctx, j.src, r)
		if err != nil {
			return fmt.Errorf("referrer of %s: %w", subject.Digest, err)
		}
		if err := e.copyNode(ctx, j, r, raw, ""); err != nil {
			return fmt.Errorf("referrer of %s: %w", subject.Digest, err)
		}
		if k, ok := j.dst.(referrerKeeper); ok {
			if err := k.KeepReferrer(ctx, r); err != nil {
				return err
			}
		}
		j.add(func(j *imageJob) { j.referrers++ })
	}
	return nil
}

// verify checks that the target now serves root at ref.
func verify(ctx context.Context, dst oras.Target, root ocispec.Descriptor, ref string) error {
	if strings.Contains(ref, ":") { // a digest
		ok, err := dst.Exists(ctx, root)
		if err == nil && !ok {
			err = errors.New("not found")
		}
		if err != nil {
			return fmt.Errorf("verifying %s at the target: %w", root.Digest, err)
		}
		return nil
	}
	got, err := dst.Resolve(ctx, ref)
	if err != nil {
		return fmt.Errorf("verifying %s at the target: %w", ref, err)
	}
	if got.Digest != root.Digest {
		return fmt.Errorf("after the push the target's %s points at %s, not %s", ref, got.Digest, root.Digest)
	}
	return nil
}

// manifestBlobs lists the config and layers of an image manifest.
func manifestBlobs(desc ocispec.Descriptor, raw []byte) ([]ocispec.Descriptor, error) {
	var m struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Blobs     []ocispec.Descriptor `json:"blobs"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is not valid JSON: %w", desc.Digest, err)
	}
	if m.Config == nil && len(m.Layers) == 0 && len(m.Blobs) == 0 {
		return nil, fmt.Errorf("manifest %s (%s) lists no config or layers", desc.Digest, desc.MediaType)
	}
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	out = append(out, m.Layers...)
	return append(out, m.Blobs...), nil
}

func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == dockerList }

func isForeign(d ocispec.Descriptor) bool {
	return d.MediaType == dockerForeignLayer || strings.Contains(d.MediaType, ".nondistributable.")
}

func platformString(p *ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// pushManifest pushes raw byte-exact; by tag when ref is a tag.
func pushManifest(ctx context.Context, dst oras.Target, desc ocispec.Descriptor, raw []byte, ref string) error {
	var err error
	if ref != "" && !strings.Contains(ref, ":") {
		if rp, ok := dst.(registry.ReferencePusher); ok {
			err = rp.PushReference(ctx, desc, bytes.NewReader(raw), ref)
		} else if err = dst.Push(ctx, desc, bytes.NewReader(raw)); err == nil || errors.Is(err, errdef.ErrAlreadyExists) {
			err = dst.Tag(ctx, desc, ref)
		}
	} else {
		err = dst.Push(ctx, desc, bytes.NewReader(raw))
	}
	if err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("pushing manifest %s: %w", desc.Digest, err)
	}
	return nil
}
