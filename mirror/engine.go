package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
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
	Journal *registryclient.Journal
	// IncludeReferrers also copies each manifest's referrers (signatures,
	// SBOMs, attestations), recursively.
	IncludeReferrers bool
	// Charts opens a chart from an HTTP(S) Helm repository as an OCI chart
	// (see helmrepo.Chart); nil reads every chart through Source by its name
	// (oci:// charts, or a bundle).
	Charts func(im *targets.Image) (oras.ReadOnlyTarget, error)
	// Retry says how long a blob transfer that keeps failing goes on.
	Retry transport.Retry
	// ConvertDocker converts Docker-format images to OCI (same blobs, new
	// manifest digests) for a target that refuses Docker manifests, rather
	// than failing them. Digest-pinned images cannot be converted: the node
	// pulls them by their digest.
	ConvertDocker bool
	// Remembered are the target repositories that held each blob in
	// earlier runs (see package held): mount sources to try, which may be
	// stale, never taken as proof that a blob is in place.
	Remembered map[digest.Digest][]string
	// Stop, once closed, asks for a graceful stop: no image, blob or chunk
	// starts any more, the transfers in flight finish their current chunk
	// (journaled, so the next run resumes there), and Copy returns. The
	// images not placed then fail with ErrStopped. Cancel ctx to abort at
	// once. nil never stops.
	Stop <-chan struct{}
}

// source opens where im is read from.
func (o *Options) source(im *targets.Image) (oras.ReadOnlyTarget, error) {
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

// blobMounter mounts a blob from another repository of the same registry
// (Repo does, cancelling the session a registry opens when it will not).
type blobMounter interface {
	MountBlob(ctx context.Context, desc ocispec.Descriptor, from string) (bool, error)
}

// Hooks observe a run. The engine never prints; the caller renders progress.
// Hooks may be called from several goroutines at once.
type Hooks struct {
	// ImageDone is called when an image has its final status.
	ImageDone func(im *targets.Image)
	// Planned is called once, when every image is resolved and before the
	// first blob byte is sent, with what the run will place.
	Planned func(t Totals)
	// BlobStart is called when a blob's bytes start to cross the wire from
	// offset off (> 0 when a transfer resumes where a registry holds bytes).
	BlobStart func(desc ocispec.Descriptor, off int64)
	// Progress reports bytes sent for a blob.
	Progress func(desc ocispec.Descriptor, n int64)
	// BlobEnd is called when a blob's byte stream closes, whether or not
	// the transfer succeeded.
	BlobEnd func(desc ocispec.Descriptor)
	// BlobPlaced is called when a blob is in its target repository, and how
	// it got there.
	BlobPlaced func(desc ocispec.Descriptor, how Outcome)
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
	// Held are the target repositories this run found or put each blob in,
	// for the next run's Options.Remembered.
	Held map[digest.Digest][]string
}

// engine is one copy run.
type engine struct {
	opts  Options
	slots chan struct{} // one token per concurrent blob transfer

	mu           sync.Mutex
	locks        map[digest.Digest]*sync.Mutex // serializes placements of one digest
	where        map[digest.Digest][]string    // target repositories known to hold a blob
	fromless     sync.Map                      // target host → whether it mounts without "from" (zot)
	counts       struct{ uploaded, mounted, skipped, restarted, docker atomic.Int64 }
	dockerReason atomic.Value // string: the first Docker refusal
	bytes        struct{ uploaded, mounted, resent atomic.Int64 }

	noChunks sync.Map // target host → true: it refused a chunked upload, send whole blobs
	noDocker sync.Map // target host → *dockerRefusal: it refuses Docker manifests
	// dockerCopies are the Docker-format images under way, by target host:
	// a refusal stops their transfers.
	dockerCopies map[string]map[*context.CancelCauseFunc]bool
}

// Copy copies every planned image of plan to its target, setting each
// image's Status, Reason, Digest, Bytes and Platforms. Images already at the
// target with the same digest become Present; the rest Copied, Missing or
// Failed. Each blob crosses the wire at most once; a blob already in another
// repository of the target is mounted.
func Copy(ctx context.Context, plan *targets.Plan, opts Options) Stats {
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
	all := e.resolveAll(ctx, plan)
	if h := e.opts.Hooks.Planned; h != nil {
		h(totals(all))
	}
	var g errgroup.Group
	// Metadata requests of many images overlap; blob bytes are bounded by slots.
	g.SetLimit(opts.Jobs * 4)
	// The provider image is first in the plan; charts come after images.
	for _, c := range all {
		g.Go(func() error {
			e.copyImage(ctx, c)
			c.im.Reason = targets.Notes(c.im.Note, c.im.Reason)
			if h := e.opts.Hooks.ImageDone; h != nil {
				h(c.im)
			}
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
	st.Held = e.where // every goroutine is done with it
	return st
}

// copyImage places one resolved image and records the outcome on it.
func (e *engine) copyImage(ctx context.Context, c *rootCopy) {
	im, err := c.im, c.err
	if err == nil && !c.done {
		err = e.place(ctx, c)
	}
	switch {
	case err == nil:
	case errors.Is(err, errSourceMissing):
		im.Status, im.Reason = targets.Missing, transport.Redact(err.Error())
	default:
		if reason, ok := refusedDocker(err); ok {
			e.counts.docker.Add(1)
			e.dockerReason.CompareAndSwap(nil, reason)
		}
		im.Status, im.Reason = targets.Failed, transport.Describe(err)
	}
}

// errSourceMissing marks an image that is not at the source.
var errSourceMissing = errors.New("not found at the source")

// stopped says why nothing new starts: the run was aborted or stopped.
func (e *engine) stopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-e.opts.Stop:
		return registryclient.ErrStopped
	default:
		return nil
	}
}

// place copies the image of c to its target.
func (e *engine) place(ctx context.Context, c *rootCopy) error {
	if err := e.stopped(ctx); err != nil {
		return err
	}
	im := c.im
	if c.present {
		im.Status, im.Digest, im.Bytes, im.Reason = targets.Present, c.root.Digest.String(), 0, ""
		// Referrers may have been added at the source since the image was
		// copied: bring them over.
		j := e.newJob(c)
		if err := e.copyReferrers(ctx, j, c.root); err != nil {
			return err
		}
		if j.referrers > 0 {
			im.Reason = fmt.Sprintf("%d referrer(s) checked or copied", j.referrers)
		}
		return nil
	}
	if refusal := e.dockerRefused(im.TargetName, c.root); refusal != nil {
		if err := e.convert(ctx, c, refusal); err != nil {
			return err
		}
	}
	cctx := ctx
	if isDocker(c.root.MediaType) {
		var stop func()
		cctx, stop = e.stopOnDockerRefusal(ctx, im.TargetName)
		defer stop()
	}
	err := e.copyRoot(cctx, c)
	if cause := context.Cause(cctx); err != nil && ctx.Err() == nil && cctx.Err() != nil {
		err = cause // another image's manifest was refused: this one's too
	}
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

// copyRoot copies the image below c.root to the target and records the
// outcome on the image.
func (e *engine) copyRoot(ctx context.Context, c *rootCopy) error {
	im, root, raw, notes := c.im, c.root, c.raw, c.notes
	if c.existing.Digest == root.Digest && !c.filtering {
		im.Status, im.Digest, im.Bytes, im.Reason = targets.Present, root.Digest.String(), 0, targets.Notes(notes...)
		e.inPlace(c)
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
			im.Status, im.Digest, im.Reason = targets.Present, root.Digest.String(), targets.Notes(notes...)
			e.inPlace(c)
			return nil
		}
	}
	if im.PinnedDigest != "" && len(e.opts.Platforms) > 0 && isIndex(root.MediaType) {
		notes = append(notes, "digest-pinned: every platform copied, the node pulls the index by digest")
	}
	if c.existing.Digest != "" {
		notes = append(notes, fmt.Sprintf("replaced %s, which pointed at %s", c.tgtRef, c.existing.Digest))
	}
	j := e.newJob(c)
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
	im.Status, im.Digest, im.Bytes, im.Platforms = targets.Copied, root.Digest.String(), j.total, j.platforms
	im.Reason = targets.Notes(notes...)
	return nil
}

// inPlace reports the blobs of c placed: the image turned out to be at the
// target (its filtered or converted form, which only the copy computes),
// and the totals counted them.
func (e *engine) inPlace(c *rootCopy) {
	if h := e.opts.Hooks.BlobPlaced; h != nil {
		for _, b := range c.blobs {
			h(b, Skipped)
		}
	}
}

// archiveDigester is a chart from an HTTP(S) Helm repository that knows
// its archive's digest before downloading it (helmrepo.OCIChart, from
// index.yaml).
type archiveDigester interface {
	ArchiveDigest() (digest.Digest, bool)
}

// chartPresent reports whether the chart im is at its target already: the
// target's chart manifest has the archive the repository's index names as
// its layer. The archive is then not downloaded at all. Any doubt (no
// digest in the index, no such tag, another layer) leaves it to the usual
// comparison of manifest digests.
func chartPresent(ctx context.Context, im *targets.Image, src oras.ReadOnlyTarget, dst oras.Target) (bool, error) {
	ad, ok := src.(archiveDigester)
	if !ok || im.Chart == nil || im.Tag == "" {
		return false, nil
	}
	want, ok := ad.ArchiveDigest()
	if !ok {
		return false, nil
	}
	existing, err := dst.Resolve(ctx, im.Tag)
	if err != nil {
		return false, nil
	}
	raw, err := registryclient.FetchManifest(ctx, dst, existing)
	if err != nil {
		return false, nil
	}
	blobs, err := manifestBlobs(existing, raw)
	if err != nil {
		return false, nil
	}
	for _, b := range blobs {
		if b.Digest == want {
			im.Status, im.Digest, im.Bytes, im.Reason = targets.Present, existing.Digest.String(), 0, ""
			return true, nil
		}
	}
	return false, nil
}
