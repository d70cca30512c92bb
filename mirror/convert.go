package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
)

// convert turns the image of c into OCI format for a target that refused
// Docker manifests (refusal): the source is read through an ociView and the
// root becomes its converted form. Without Options.ConvertDocker, or for an
// image pinned by digest (the node pulls it by that digest, which the
// conversion changes), it returns why the image cannot be placed.
func (e *engine) convert(ctx context.Context, c *rootCopy, refusal error) error {
	if !e.opts.ConvertDocker {
		return refusal
	}
	if c.im.PinnedDigest != "" {
		return fmt.Errorf("%w; the image is pinned by digest, which converting it to OCI would change", refusal)
	}
	view := &ociView{ReadOnlyTarget: c.src, converted: map[digest.Digest][]byte{}, original: map[digest.Digest]ocispec.Descriptor{}}
	root, err := view.convert(ctx, c.root)
	if err != nil {
		return fmt.Errorf("converting %s to OCI: %w", c.root.Digest, err)
	}
	c.notes = append(c.notes, fmt.Sprintf("converted from Docker to OCI format for a target that refuses Docker manifests (source digest %s)", c.root.Digest))
	c.src, c.root, c.raw = view, root, view.converted[root.Digest]
	return nil
}

// ociView reads a Docker-format image as OCI: its manifests and manifest
// list with OCI media types (new bytes, new digests), its blobs as they are.
type ociView struct {
	oras.ReadOnlyTarget

	mu        sync.Mutex
	converted map[digest.Digest][]byte             // manifests, as OCI
	original  map[digest.Digest]ocispec.Descriptor // blobs, as the source describes them
}

// ociMediaTypes maps Docker media types to their OCI equivalents.
var ociMediaTypes = map[string]string{
	dockerManifest: ocispec.MediaTypeImageManifest,
	dockerList:     ocispec.MediaTypeImageIndex,
	"application/vnd.docker.container.image.v1+json":    ocispec.MediaTypeImageConfig,
	"application/vnd.docker.image.rootfs.diff.tar.gzip": ocispec.MediaTypeImageLayerGzip,
	"application/vnd.docker.image.rootfs.diff.tar":      ocispec.MediaTypeImageLayer,
	// image-spec deprecates non-distributable layers but names the type.
	dockerForeignLayer: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}

func ociType(mt string) string {
	if o, ok := ociMediaTypes[mt]; ok {
		return o
	}
	return mt
}

// convert returns the OCI form of desc (itself when it is not Docker),
// keeping the converted bytes for Fetch.
func (v *ociView) convert(ctx context.Context, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	if !isDocker(desc.MediaType) {
		return desc, nil
	}
	raw, err := registryclient.FetchManifest(ctx, v.ReadOnlyTarget, desc)
	if err != nil {
		return desc, err
	}
	var out any
	if desc.MediaType == dockerList {
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return desc, fmt.Errorf("index %s is not valid JSON: %w", desc.Digest, err)
		}
		for i, child := range idx.Manifests {
			if idx.Manifests[i], err = v.convert(ctx, child); err != nil {
				return desc, err
			}
		}
		idx.MediaType = ocispec.MediaTypeImageIndex
		out = idx
	} else {
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return desc, fmt.Errorf("manifest %s is not valid JSON: %w", desc.Digest, err)
		}
		m.MediaType = ocispec.MediaTypeImageManifest
		v.mu.Lock()
		for _, b := range append([]*ocispec.Descriptor{&m.Config}, pointers(m.Layers)...) {
			v.original[b.Digest] = *b
			b.MediaType = ociType(b.MediaType)
		}
		v.mu.Unlock()
		out = m
	}
	conv, err := json.Marshal(out)
	if err != nil {
		return desc, err
	}
	d := content.NewDescriptorFromBytes(ociType(desc.MediaType), conv)
	d.Platform, d.Annotations = desc.Platform, desc.Annotations
	v.mu.Lock()
	v.converted[d.Digest] = conv
	v.mu.Unlock()
	return d, nil
}

func pointers(ds []ocispec.Descriptor) []*ocispec.Descriptor {
	out := make([]*ocispec.Descriptor, len(ds))
	for i := range ds {
		out[i] = &ds[i]
	}
	return out
}

// lookup returns the converted bytes of a manifest, or the source's own
// descriptor of a blob (some stores find a blob by its media type too).
func (v *ociView) lookup(desc ocispec.Descriptor) ([]byte, ocispec.Descriptor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if o, ok := v.original[desc.Digest]; ok {
		desc = o
	}
	return v.converted[desc.Digest], desc
}

// Fetch serves converted manifests from memory and blobs from the source.
func (v *ociView) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	raw, desc := v.lookup(desc)
	if raw != nil {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	return v.ReadOnlyTarget.Fetch(ctx, desc)
}

// Exists reports converted manifests as present.
func (v *ociView) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	raw, desc := v.lookup(desc)
	if raw != nil {
		return true, nil
	}
	return v.ReadOnlyTarget.Exists(ctx, desc)
}

// FetchRange reads a blob from an offset as the source does.
func (v *ociView) FetchRange(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	_, desc = v.lookup(desc)
	return fetchFrom(ctx, v.ReadOnlyTarget, desc, off)
}
