package helmrepo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
)

// OCIChart is a chart of a Helm HTTP(S) repository presented as the OCI
// chart `helm push` would store: a read-only target holding one manifest,
// under the chart's tag, its config and its one layer, the chart archive.
// Made by [Repos.Chart].
//
// The archive is downloaded by the first Resolve, Fetch or Exists, which
// also checks it (against index.yaml's digest, and its Chart.yaml against
// the index entry) and so may return any error of the chart; what they
// build is kept for the OCIChart's life. A download that fails is tried
// again by the next call. An OCIChart is safe for concurrent use.
type OCIChart struct {
	ref         chartRef
	client      *http.Client
	lim         limits
	archiveURL  *url.URL
	user        *url.Userinfo // credentials for archiveURL, if any
	version     looseString   // as index.yaml gives it
	indexDigest string        // the archive's digest as index.yaml gives it; "" when it gives none
	tag         string
	store       lazy[*memory.Store]
}

var _ oras.ReadOnlyTarget = (*OCIChart)(nil)

// Resolve returns the descriptor of the chart's manifest when ref is its
// tag or its digest, downloading the archive first if need be.
func (c *OCIChart) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	s, err := c.load(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return s.Resolve(ctx, ref)
}

// Fetch reads the chart's manifest, config or archive, downloading the
// archive first if need be.
func (c *OCIChart) Fetch(ctx context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	s, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	return s.Fetch(ctx, target)
}

// Exists tells whether target is the chart's manifest, config or archive,
// downloading the archive first if need be.
func (c *OCIChart) Exists(ctx context.Context, target ocispec.Descriptor) (bool, error) {
	s, err := c.load(ctx)
	if err != nil {
		return false, err
	}
	return s.Exists(ctx, target)
}

// ArchiveDigest returns the digest index.yaml gives the chart archive (the
// digest field of the version's entry), which is the digest of the
// manifest's one layer, without downloading anything; false when the entry
// has no digest, or one that is not a SHA-256. When it returns true, the
// archive this OCIChart serves has that digest (a download of other bytes
// fails). The config and the manifest are made from the archive alone, so
// the same archive always gives the same manifest here: a chart manifest at
// a target whose layer has this digest holds this chart (its manifest
// digest differs only if another tool, such as `helm push`, wrote it).
//
// A caller holding an oras.ReadOnlyTarget finds it through the interface
//
//	interface{ ArchiveDigest() (digest.Digest, bool) }
func (c *OCIChart) ArchiveDigest() (digest.Digest, bool) {
	hex := digestHex(c.indexDigest)
	if hex == "" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// load returns the chart as a store, downloading and checking the archive
// unless an earlier call did.
func (c *OCIChart) load(ctx context.Context) (*memory.Store, error) {
	s, err := c.store.get(ctx, c.build)
	if err != nil {
		return nil, c.ref.errorf("%w", err)
	}
	return s, nil
}

// build downloads the archive, checks it and lays the chart out.
func (c *OCIChart) build(ctx context.Context) (*memory.Store, error) {
	archive, err := fetchArchive(ctx, c.client, c.archiveURL, c.user, c.lim.archive, c.indexDigest)
	if err != nil {
		return nil, err
	}
	meta, created, err := readArchive(archive, c.lim)
	if err != nil {
		return nil, err
	}
	if string(meta.Name) != c.ref.name || meta.Version != c.version {
		return nil, fmt.Errorf("the archive's Chart.yaml says name=%s version=%s (index.yaml: name=%s version=%s)",
			meta.Name, meta.Version, c.ref.name, c.version)
	}
	return buildStore(ctx, meta, created, archive, c.tag)
}
