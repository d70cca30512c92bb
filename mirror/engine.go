package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/edgemirror/edgemirror/transport"
)

// Media types the engine recognizes beyond the OCI ones.
const (
	dockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	dockerList          = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	dockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	dockerForeignLayer  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// maxManifestBytes bounds a manifest read into memory (oras-go's default).
const maxManifestBytes = 4 << 20

// Options configure a copy run.
type Options struct {
	// Jobs is the number of concurrent blob transfers across all images;
	// <= 0 means the default, 8.
	Jobs int
	// Platforms (os/arch[/variant]) restrict which manifests of an index are
	// copied; empty copies every platform.
	Platforms []string
	// Source opens a source repository by its canonical name
	// (docker.io/library/busybox).
	Source func(name string) (oras.ReadOnlyTarget, error)
	// Target opens a target repository by its full name including the host.
	// A repository that implements registry.Mounter gets cross-repository
	// mounts; one that implements registry.ReferencePusher gets tags in one
	// request.
	Target func(name string) (oras.Target, error)
	// Hooks observe the run; nil hooks are skipped.
	Hooks Hooks
	// ChunkThreshold is the blob size above which a blob is uploaded in
	// resumable chunks (when the target supports it); <= 0 means the
	// default, 16 MiB.
	ChunkThreshold int64
	// ChunkSize is the size of each chunk; <= 0 means the default, 16 MiB.
	ChunkSize int64
	// Journal records chunked uploads so a later run resumes them; nil
	// keeps them in memory only (a cut within the run still resumes).
	Journal *Journal
	// IncludeReferrers also copies each manifest's referrers (signatures,
	// SBOMs, attestations), recursively.
	IncludeReferrers bool
	// Charts opens a chart from an HTTP(S) Helm repository as an OCI chart
	// (see helmrepo.Chart); nil reads every chart through Source by its name
	// (oci:// charts, or a bundle).
	Charts func(im *Image) (oras.ReadOnlyTarget, error)
	// Retry says how long a blob transfer that keeps failing goes on.
	Retry Retry
	// ConvertDocker converts Docker-format images to OCI (same blobs, new
	// manifest digests) for a target that refuses Docker manifests, rather
	// than failing them. Digest-pinned images cannot be converted: the node
	// pulls them by their digest.
	ConvertDocker bool
	// Stop, once closed, asks for a graceful stop: no image, blob or chunk
	// starts any more, the transfers in flight finish their current chunk
	// (journaled, so the next run resumes there), and Copy returns. The
	// images not placed then fail with ErrStopped. Cancel ctx to abort at
	// once. nil never stops.
	Stop <-chan struct{}
}

// source opens where im is read from.
func (o *Options) source(im *Image) (oras.ReadOnlyTarget, error) {
	if im.Chart != nil && o.Charts != nil && isHTTP(im.Chart.Repo) {
		return o.Charts(im)
	}
	return o.Source(im.Name)
}

func isHTTP(repo string) bool {
	r := strings.ToLower(repo)
	return strings.HasPrefix(r, "https://") || strings.HasPrefix(r, "http://")
}

// Defaults of Options.
const (
	DefaultJobs           = 8
	DefaultChunkThreshold = 16 << 20
	DefaultChunkSize      = 16 << 20
)

// rangeFetcher reads a blob from an offset (Repo does, with HTTP Range).
type rangeFetcher interface {
	FetchRange(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, error)
}

// chunkUploader uploads a blob in resumable chunks (Repo does).
type chunkUploader interface {
	UploadChunked(ctx context.Context, desc ocispec.Descriptor, open func(off int64) (io.ReadCloser, error), opts ChunkOptions) (UploadStats, error)
}

// blobMounter mounts a blob from another repository of the same registry
// (Repo does, cancelling the session a registry opens when it will not).
type blobMounter interface {
	MountBlob(ctx context.Context, desc ocispec.Descriptor, from string) (bool, error)
}

// Hooks observe a run. The engine never prints; the caller renders progress.
// Hooks may be called from several goroutines at once.
type Hooks struct {
	// ImageStart is called when an image starts.
	ImageStart func(im *Image)
	// ImageDone is called when an image has its final status.
	ImageDone func(im *Image)
	// BlobStart is called when a blob's bytes start to cross the wire.
	BlobStart func(desc ocispec.Descriptor)
	// Progress reports bytes sent for a blob.
	Progress func(desc ocispec.Descriptor, n int64)
	// BlobEnd is called when a blob's byte stream closes, whether or not
	// the transfer succeeded.
	BlobEnd func(desc ocispec.Descriptor)
	// BlobDone is called when a blob is in place; how is "uploaded",
	// "mounted" or "skipped".
	BlobDone func(desc ocispec.Descriptor, how string)
	// BlobRestarted is called when the target lost an upload session that
	// held bytes of a blob, which starts over from byte 0; held is what the
	// lost session held.
	BlobRestarted func(desc ocispec.Descriptor, held int64, cause error)
}

// Stats count what crossed the wire in a run.
type Stats struct {
	BytesUploaded int64
	BytesMounted  int64
	BlobsUploaded int
	BlobsMounted  int
	BlobsSkipped  int
	// BlobsRestarted counts the blobs the target could not resume: an
	// upload session it lost while holding bytes (each loss counts).
	BlobsRestarted int
	// BytesResent counts the bytes sent again because the target could not
	// resume (this run's, and a lost session of an earlier run).
	BytesResent int64
	// DockerRefused counts the Docker-format images a target refused
	// (zot without Docker compatibility); DockerRefusal is the reason.
	DockerRefused int
	DockerRefusal string
}

// engine is one copy run.
type engine struct {
	opts  Options
	slots chan struct{} // one token per concurrent blob transfer

	mu           sync.Mutex
	locks        map[digest.Digest]*sync.Mutex // serializes placements of one digest
	where        map[digest.Digest][]string    // target repositories known to hold a blob
	counts       struct{ uploaded, mounted, skipped, restarted, docker atomic.Int64 }
	dockerReason atomic.Value // string: the first Docker refusal
	bytes        struct{ uploaded, mounted, resent atomic.Int64 }

	noChunks atomic.Bool // the target refused a chunked upload: send whole blobs
	noDocker sync.Map    // target host → error: it refuses Docker manifests
}

// Copy copies every planned image of plan to its target, setting each
// image's Status, Reason, Digest, Bytes and Platforms. Images already at the
// target with the same digest become Present; the rest Copied, Missing or
// Failed. Each blob crosses the wire at most once; a blob already in another
// repository of the target is mounted.
func Copy(ctx context.Context, plan *Plan, opts Options) Stats {
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs
	}
	if opts.ChunkThreshold <= 0 {
		opts.ChunkThreshold = DefaultChunkThreshold
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	e := &engine{
		opts:  opts,
		slots: make(chan struct{}, opts.Jobs),
		locks: map[digest.Digest]*sync.Mutex{},
		where: map[digest.Digest][]string{},
	}
	var g errgroup.Group
	// Metadata requests of many images overlap; blob bytes are bounded by slots.
	g.SetLimit(opts.Jobs * 4)
	// The provider image is first in the plan; charts come after images.
	for _, im := range plan.All() {
		if im.Status != Planned {
			continue
		}
		g.Go(func() error {
			e.hook(func(h Hooks) {
				if h.ImageStart != nil {
					h.ImageStart(im)
				}
			})
			e.copyImage(ctx, im)
			im.Reason = Notes(im.Note, im.Reason)
			e.hook(func(h Hooks) {
				if h.ImageDone != nil {
					h.ImageDone(im)
				}
			})
			return nil
		})
	}
	_ = g.Wait()
	st := Stats{
		BytesUploaded: e.bytes.uploaded.Load(), BytesMounted: e.bytes.mounted.Load(),
		BlobsUploaded: int(e.counts.uploaded.Load()), BlobsMounted: int(e.counts.mounted.Load()),
		BlobsSkipped: int(e.counts.skipped.Load()), BlobsRestarted: int(e.counts.restarted.Load()),
		BytesResent: e.bytes.resent.Load(), DockerRefused: int(e.counts.docker.Load()),
	}
	if r, ok := e.dockerReason.Load().(string); ok {
		st.DockerRefusal = r
	}
	return st
}

func (e *engine) hook(f func(Hooks)) { f(e.opts.Hooks) }

// copyImage places one image and records the outcome on it.
func (e *engine) copyImage(ctx context.Context, im *Image) {
	err := e.place(ctx, im)
	switch {
	case err == nil:
	case errors.Is(err, errSourceMissing):
		im.Status, im.Reason = Missing, transport.Redact(err.Error())
	default:
		if reason, ok := refusedDocker(err); ok {
			e.counts.docker.Add(1)
			e.dockerReason.CompareAndSwap(nil, reason)
		}
		im.Status = Failed
		im.Reason = transport.Redact(err.Error())
		if r := transport.Reason(err); r != "" {
			im.Reason = r + ": " + im.Reason
		}
	}
}

// errSourceMissing marks an image that is not at the source.
var errSourceMissing = errors.New("not found at the source")

func (e *engine) place(ctx context.Context, im *Image) error {
	if err := ctx.Err(); err != nil {
		return err // interrupted: start nothing new
	}
	if stopped(e.opts.Stop) {
		return ErrStopped
	}
	src, err := e.opts.source(im)
	if err != nil {
		return fmt.Errorf("source %s: %w", im.Name, err)
	}
	dst, err := e.opts.Target(im.TargetName)
	if err != nil {
		return fmt.Errorf("target %s: %w", im.TargetName, err)
	}
	srcRef := im.Tag
	if im.PinnedDigest != "" {
		srcRef = im.PinnedDigest
	}
	root, err := src.Resolve(ctx, srcRef)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return fmt.Errorf("%w: %s", errSourceMissing, im.SourceRef())
		}
		return fmt.Errorf("resolving %s at the source: %w", im.SourceRef(), err)
	}
	if im.PinnedDigest != "" && root.Digest.String() != im.PinnedDigest {
		return fmt.Errorf("source %s resolved to %s, not the pinned digest", im.SourceRef(), root.Digest)
	}
	tgtRef := im.Tag
	if tgtRef == "" {
		tgtRef = im.PinnedDigest
	}
	filtering := len(e.opts.Platforms) > 0 && isIndex(root.MediaType) && im.PinnedDigest == ""
	existing, err := dst.Resolve(ctx, tgtRef)
	switch {
	case err == nil && existing.Digest == root.Digest && !filtering:
		im.Status, im.Digest, im.Bytes, im.Reason = Present, root.Digest.String(), 0, ""
		// Referrers may have been added at the source since the image was
		// copied: bring them over.
		j := &imageJob{src: src, dst: dst, repo: im.TargetName}
		if err := e.copyReferrers(ctx, j, root); err != nil {
			return err
		}
		if j.referrers > 0 {
			im.Reason = fmt.Sprintf("%d referrer(s) checked or copied", j.referrers)
		}
		return nil
	case err != nil && !errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("checking %s at the target: %w", im.Target, err)
	}

	raw, err := fetchManifest(ctx, src, root)
	if err != nil {
		return err
	}
	c := &rootCopy{im: im, src: src, dst: dst, root: root, raw: raw, existing: existing, tgtRef: tgtRef, filtering: filtering}
	if refusal := e.dockerRefused(im.TargetName, root); refusal != nil {
		if err := e.convert(ctx, c, refusal); err != nil {
			return err
		}
	}
	err = e.copyRoot(ctx, c)
	if _, refused := refusedDocker(err); refused && isDocker(c.root.MediaType) && e.opts.ConvertDocker {
		// The refusal came with this image: convert it and push again
		// (its blobs are in place already).
		if err := e.convert(ctx, c, err); err != nil {
			return err
		}
		err = e.copyRoot(ctx, c)
	}
	return err
}

// rootCopy is what place found out about an image before copying it.
type rootCopy struct {
	im        *Image
	src       oras.ReadOnlyTarget
	dst       oras.Target
	root      ocispec.Descriptor // the source's manifest or index
	raw       []byte             // its bytes
	existing  ocispec.Descriptor // what the target tag points at, if anything
	tgtRef    string
	filtering bool // --platform filters the index
	notes     []string
}

// copyRoot copies the image below c.root to the target and records the
// outcome on the image.
func (e *engine) copyRoot(ctx context.Context, c *rootCopy) error {
	im, root, raw, notes := c.im, c.root, c.raw, c.notes
	if c.existing.Digest == root.Digest && !c.filtering {
		im.Status, im.Digest, im.Bytes, im.Reason = Present, root.Digest.String(), 0, Notes(notes...)
		return nil
	}
	if c.filtering {
		var note string
		var err error
		root, raw, note, err = e.filterIndex(raw, root)
		if err != nil {
			return err
		}
		notes = append(notes, note)
		if c.existing.Digest == root.Digest {
			im.Status, im.Digest, im.Reason = Present, root.Digest.String(), Notes(notes...)
			return nil
		}
	}
	if im.PinnedDigest != "" && len(e.opts.Platforms) > 0 && isIndex(root.MediaType) {
		notes = append(notes, "digest-pinned: every platform copied, the node pulls the index by digest")
	}
	if c.existing.Digest != "" {
		notes = append(notes, fmt.Sprintf("replaced %s, which pointed at %s", c.tgtRef, c.existing.Digest))
	}
	j := &imageJob{src: c.src, dst: c.dst, repo: im.TargetName}
	if err := e.copyNode(ctx, j, root, raw, c.tgtRef); err != nil {
		return err
	}
	if err := verify(ctx, c.dst, root, c.tgtRef); err != nil {
		return err
	}
	if j.foreign > 0 {
		notes = append(notes, fmt.Sprintf("%d non-distributable layer(s) not copied (the node fetches them from their URLs)", j.foreign))
	}
	if j.referrers > 0 {
		notes = append(notes, fmt.Sprintf("with %d referrer(s) (signatures, SBOMs, attestations)", j.referrers))
	}
	im.Status, im.Digest, im.Bytes, im.Platforms = Copied, root.Digest.String(), j.total, j.platforms
	im.Reason = Notes(notes...)
	return nil
}

// imageJob is the copy of one image: its two ends and what it added up.
type imageJob struct {
	src  oras.ReadOnlyTarget
	dst  oras.Target
	repo string // the target repository, for mounts

	mu        sync.Mutex
	total     int64    // bytes of every manifest and blob of the image
	platforms []string // of the index's manifests
	foreign   int      // non-distributable layers left out
	referrers int      // referrer manifests copied
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
	var g errgroup.Group
	switch desc.MediaType {
	case dockerSchema1, dockerSchema1Signed:
		return fmt.Errorf("%s is a Docker schema 1 manifest, which OCI registries refuse; re-push the image with a current client", desc.Digest)
	case ocispec.MediaTypeImageIndex, dockerList:
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("index %s is not valid JSON: %w", desc.Digest, err)
		}
		for _, child := range idx.Manifests {
			g.Go(func() error {
				craw, err := fetchManifest(ctx, j.src, child)
				if err != nil {
					return err
				}
				if err := e.copyNode(ctx, j, child, craw, ""); err != nil {
					return err
				}
				if p := child.Platform; p != nil {
					j.add(func(j *imageJob) { j.platforms = append(j.platforms, platformString(p)) })
				}
				return nil
			})
		}
	default:
		if err := e.dockerRefused(j.repo, desc); err != nil {
			return err // refused since the image started: send none of its blobs
		}
		blobs, err := manifestBlobs(desc, raw)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			if isForeign(b) {
				j.add(func(j *imageJob) { j.foreign++ })
				continue
			}
			j.add(func(j *imageJob) { j.total += b.Size })
			g.Go(func() error { return e.placeBlob(ctx, j.src, j.dst, j.repo, b) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := pushManifest(ctx, j.dst, desc, raw, ref); err != nil {
		return e.noteDockerRefusal(j.repo, desc, err)
	}
	return e.copyReferrers(ctx, j, desc)
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
		raw, err := fetchManifest(ctx, j.src, r)
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

// fetchManifest reads a manifest whole (bounded) and checks its digest.
func fetchManifest(ctx context.Context, src oras.ReadOnlyTarget, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit", desc.Digest, desc.Size, maxManifestBytes)
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("manifest %s is referenced but missing at the source: %w", desc.Digest, err)
		}
		return nil, fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	raw, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	return raw, nil
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

// digestLock returns the mutex that serializes the placements of d.
func (e *engine) digestLock(d digest.Digest) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.locks[d]
	if !ok {
		l = &sync.Mutex{}
		e.locks[d] = l
	}
	return l
}

// known reports whether repo holds d, and another repository that does.
func (e *engine) known(d digest.Digest, repo string) (here bool, other string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.where[d] {
		if r == repo {
			return true, ""
		}
		other = r
	}
	return false, other
}

func (e *engine) remember(d digest.Digest, repo string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.where[d] = append(e.where[d], repo)
}

// placeBlob makes blob b exist in the target repository repo: skip it when
// known or found there, mount it from another target repository that holds
// it, or stream it from the source. Placements of one digest are serialized,
// so concurrent images needing the same layer send it once and mount it
// after; a failure is not remembered, the next placement tries again.
func (e *engine) placeBlob(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, repo string, b ocispec.Descriptor) error {
	if here, _ := e.known(b.Digest, repo); here {
		e.done(b, "skipped")
		return nil
	}
	l := e.digestLock(b.Digest)
	l.Lock()
	defer l.Unlock()
	here, other := e.known(b.Digest, repo)
	if here {
		e.done(b, "skipped")
		return nil
	}
	if m, ok := dst.(blobMounter); ok && other != "" && sameHost(other, repo) {
		mounted, err := m.MountBlob(ctx, b, repoPath(other))
		if mounted {
			e.remember(b.Digest, repo)
			e.done(b, "mounted")
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		// A refused or failed mount is not fatal: look, then upload.
	}
	ok, err := dst.Exists(ctx, b)
	if err != nil {
		return fmt.Errorf("checking blob %s at the target: %w", b.Digest, err)
	}
	if ok {
		e.remember(b.Digest, repo)
		e.done(b, "skipped")
		return nil
	}
	if err := e.upload(ctx, src, dst, b); err != nil {
		return err
	}
	e.remember(b.Digest, repo)
	e.done(b, "uploaded")
	return nil
}

// upload streams b from the source to the target in one transfer slot.
// A chunked upload resumes and retries by itself; a whole-blob PUT cannot be
// replayed by the HTTP client, so one that fails for a passing reason
// (network, 5xx, 429, expired token) is started over here, as Retry says.
func (e *engine) upload(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, b ocispec.Descriptor) error {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.opts.Stop:
		return ErrStopped
	}
	defer func() { <-e.slots }()
	if stopped(e.opts.Stop) {
		return ErrStopped // the stop and a free slot came together
	}
	if cu, ok := dst.(chunkUploader); ok && b.Size > e.opts.ChunkThreshold && !e.noChunks.Load() {
		st, err := cu.UploadChunked(ctx, b, func(off int64) (io.ReadCloser, error) { return e.read(ctx, src, b, off) },
			ChunkOptions{Size: e.opts.ChunkSize, Journal: e.opts.Journal, Retry: e.opts.Retry, Stop: e.opts.Stop,
				Restarted: func(held int64, cause error) {
					if h := e.opts.Hooks.BlobRestarted; h != nil {
						h(b, held, cause)
					}
				}})
		e.counts.restarted.Add(int64(st.Restarts))
		e.bytes.resent.Add(st.Resent)
		if !errors.Is(err, errChunkingUnsupported) {
			return err
		}
		e.noChunks.Store(true)
	}
	budget := e.opts.Retry.start()
	var sent atomic.Int64
	defer func() { e.bytes.resent.Add(max(0, sent.Load()-b.Size)) }()
	for {
		err := e.uploadWhole(ctx, src, dst, b, &sent)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		// A whole-blob PUT keeps nothing of a failed attempt: no progress.
		if err := budget.failed(ctx, false, err); err != nil {
			return fmt.Errorf("uploading blob %s: %w", b.Digest, err)
		}
	}
}

// uploadWhole streams b in one PUT, adding the bytes read to sent.
func (e *engine) uploadWhole(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, b ocispec.Descriptor, sent *atomic.Int64) error {
	rc, err := e.read(ctx, src, b, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := dst.Push(ctx, b, &countingReader{r: rc, n: sent}); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("uploading blob %s: %w", b.Digest, err)
	}
	return nil
}

// read streams blob b from the source from offset off, reporting progress;
// a read cut mid-way continues from where it stopped with a ranged request.
func (e *engine) read(ctx context.Context, src oras.ReadOnlyTarget, b ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	open := func(off int64) (io.ReadCloser, error) {
		rc, err := fetchFrom(ctx, src, b, off)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				return nil, fmt.Errorf("blob %s is referenced but missing at the source: %w", b.Digest, err)
			}
			return nil, fmt.Errorf("fetching blob %s: %w", b.Digest, err)
		}
		return rc, nil
	}
	rc, err := open(off)
	if err != nil {
		return nil, err
	}
	if h := e.opts.Hooks.BlobStart; h != nil {
		h(b)
	}
	rr := &resumingReader{ctx: ctx, open: open, rc: rc, off: off}
	return &progressReader{rc: rr, desc: b, hooks: e.opts.Hooks}, nil
}

// fetchFrom reads blob b of src from offset off: with a ranged request
// where src can, otherwise by skipping the first off bytes.
func fetchFrom(ctx context.Context, src oras.ReadOnlyTarget, b ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	if rf, ok := src.(rangeFetcher); ok {
		return rf.FetchRange(ctx, b, off)
	}
	rc, err := src.Fetch(ctx, b)
	if err == nil && off > 0 {
		if _, err = io.CopyN(io.Discard, rc, off); err != nil {
			rc.Close()
			return nil, err
		}
	}
	return rc, err
}

// resumingReader reopens its source at the current offset when a read is
// cut, a bounded number of times. Close may come from another goroutine
// while a Read is under way: net/http can still be reading a request body
// when the request has already failed. The source reader is not safe for a
// Close during its Read, so such a Close only marks the reader closed and
// the Read closes the source when it returns.
type resumingReader struct {
	ctx   context.Context
	open  func(off int64) (io.ReadCloser, error)
	off   int64 // read by Read only
	tries int   // read by Read only

	mu      sync.Mutex
	rc      io.ReadCloser // replaced by Read only, while reading
	reading bool
	closed  bool
}

// maxReadResumes bounds the reopenings of one blob read.
const maxReadResumes = 5

// errReaderClosed ends a Read racing with Close.
var errReaderClosed = errors.New("blob reader closed")

// isClosed reports whether Close was called.
func (r *resumingReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *resumingReader) Read(p []byte) (n int, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errReaderClosed
	}
	r.reading = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reading = false
		if r.closed {
			r.rc.Close() // closed while this Read ran
			err = errReaderClosed
		}
	}()
	for {
		n, err = r.rc.Read(p)
		r.off += int64(n)
		if err == nil || err == io.EOF || r.ctx.Err() != nil || r.tries >= maxReadResumes ||
			!(errors.Is(err, io.ErrUnexpectedEOF) || transient(err)) {
			return n, err
		}
		r.tries++
		if serr := sleep(r.ctx, time.Duration(r.tries)*200*time.Millisecond); serr != nil || r.isClosed() {
			return n, err
		}
		next, oerr := r.open(r.off)
		if oerr != nil {
			return n, fmt.Errorf("%w (resuming the read at %d: %v)", err, r.off, oerr)
		}
		r.rc.Close()
		r.rc = next
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.reading {
		return nil // the Read under way closes the source
	}
	return r.rc.Close()
}

// progressReader reports bytes as they are read, and its end.
type progressReader struct {
	rc     io.ReadCloser
	desc   ocispec.Descriptor
	hooks  Hooks
	closed atomic.Bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	if n > 0 && p.hooks.Progress != nil {
		p.hooks.Progress(p.desc, int64(n))
	}
	return n, err
}

func (p *progressReader) Close() error {
	if !p.closed.Swap(true) && p.hooks.BlobEnd != nil {
		p.hooks.BlobEnd(p.desc)
	}
	return p.rc.Close()
}

// done counts a placed blob.
func (e *engine) done(b ocispec.Descriptor, how string) {
	switch how {
	case "uploaded":
		e.counts.uploaded.Add(1)
		e.bytes.uploaded.Add(b.Size)
	case "mounted":
		e.counts.mounted.Add(1)
		e.bytes.mounted.Add(b.Size)
	default:
		e.counts.skipped.Add(1)
	}
	if h := e.opts.Hooks.BlobDone; h != nil {
		h(b, how)
	}
}

func sameHost(a, b string) bool { return hostOf(a) == hostOf(b) }

// repoPath drops the host from a full repository name.
func repoPath(name string) string {
	_, p, _ := strings.Cut(name, "/")
	return p
}
