// Package imagebuild builds synthetic container images from deterministic
// pseudo-random layers and pushes them into a registry, for end-to-end
// tests, the demo and the benchmark.
//
// A Layer is (Seed, Size): the same pair always gives the same bytes and
// digest, and the content is generated while streamed, so layers of
// gigabytes cost no memory. Images share a layer by using the same Layer.
// Image and Index build OCI or Docker (schema 2) manifests; Build returns a
// Built, which describes every descriptor and serves the content (it is an
// oras content.ReadOnlyStorage); Push sends a Built to HOST/REPO[:TAG] with
// oras-go.
package imagebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// Docker media types (image manifest v2 schema 2).
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Format selects the media types of a built image.
type Format int

const (
	// OCI uses the OCI image-spec media types (the default).
	OCI Format = iota
	// Docker uses the Docker v2 schema 2 media types.
	Docker
)

// String returns "oci" or "docker".
func (f Format) String() string {
	if f == Docker {
		return "docker"
	}
	return "oci"
}

func (f Format) manifestType() string {
	if f == Docker {
		return MediaTypeDockerManifest
	}
	return ocispec.MediaTypeImageManifest
}

func (f Format) indexType() string {
	if f == Docker {
		return MediaTypeDockerManifestList
	}
	return ocispec.MediaTypeImageIndex
}

func (f Format) configType() string {
	if f == Docker {
		return MediaTypeDockerConfig
	}
	return ocispec.MediaTypeImageConfig
}

func (f Format) layerType() string {
	if f == Docker {
		return MediaTypeDockerLayer
	}
	return ocispec.MediaTypeImageLayerGzip
}

// Image describes a single-platform image.
type Image struct {
	// Format selects OCI or Docker media types.
	Format Format
	// Platform is the config's os/architecture (and the index entry's
	// platform); nil means linux/amd64.
	Platform *ocispec.Platform
	// Layers are the image's layers, in order.
	Layers []Layer
	// Labels go into the config; different labels make otherwise equal
	// images distinct.
	Labels map[string]string
	// Annotations go into the manifest (OCI only).
	Annotations map[string]string
	// ArtifactType is the manifest's artifactType (OCI only).
	ArtifactType string
	// Subject makes the manifest a referrer of another manifest (OCI only).
	Subject *ocispec.Descriptor
}

// Index describes a multi-platform image: an OCI index or a Docker
// manifest list.
type Index struct {
	// Format selects OCI or Docker media types; it overrides the
	// children's own Format.
	Format Format
	// Images are the platform images; each should have a Platform.
	Images []Image
	// Annotations go into the index (OCI only).
	Annotations map[string]string
}

// Built is a built image or index: its descriptors, its manifest bytes,
// and the content of every blob. It implements oras's
// content.ReadOnlyStorage (Fetch, Exists), so it can be a copy source.
type Built struct {
	// Descriptor describes the root manifest (image manifest or index).
	Descriptor ocispec.Descriptor
	// Manifest is the root manifest's exact bytes.
	Manifest []byte
	// Config describes the config blob (images only).
	Config ocispec.Descriptor
	// Layers describe the layers in order (images only).
	Layers []ocispec.Descriptor
	// Children are the platform images of an index, in order.
	Children []*Built

	config []byte
	layers map[digest.Digest]Layer
}

// Platform parses "os/arch[/variant]", e.g. "linux/arm64/v8".
func Platform(s string) ocispec.Platform {
	parts := strings.SplitN(s, "/", 3)
	p := ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p
}

// SingleArch returns an image of the given format with layers
// Layers(seed, sizes...) for linux/amd64.
func SingleArch(f Format, seed uint64, sizes ...int64) Image {
	return Image{Format: f, Layers: Layers(seed, sizes...)}
}

// MultiArch returns an index with one image per platform (nil platforms
// means linux/amd64 and linux/arm64); platform i has layers
// Layers(DeriveSeed(seed, i), sizes...), so no layer is shared between
// platforms.
func MultiArch(f Format, seed uint64, platforms []string, sizes ...int64) Index {
	if platforms == nil {
		platforms = []string{"linux/amd64", "linux/arm64"}
	}
	idx := Index{Format: f}
	for i, ps := range platforms {
		p := Platform(ps)
		idx.Images = append(idx.Images, Image{
			Format:   f,
			Platform: &p,
			Layers:   Layers(DeriveSeed(seed, i), sizes...),
		})
	}
	return idx
}

// configJSON is the image config written for both formats (the Docker
// config is a superset of these fields).
type configJSON struct {
	Architecture string            `json:"architecture"`
	OS           string            `json:"os"`
	Variant      string            `json:"variant,omitempty"`
	Config       configBody        `json:"config"`
	RootFS       ocispec.RootFS    `json:"rootfs"`
	History      []ocispec.History `json:"history,omitempty"`
}

type configBody struct {
	Labels map[string]string `json:"Labels,omitempty"`
}

// Build computes the image's config and manifest (reading each layer once
// to digest it, unless cached).
func (img Image) Build() (*Built, error) {
	if img.Format == Docker && (len(img.Annotations) > 0 || img.ArtifactType != "" || img.Subject != nil) {
		return nil, errors.New("imagebuild: annotations, artifactType and subject need the OCI format")
	}
	plat := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	if img.Platform != nil {
		plat = *img.Platform
	}
	b := &Built{layers: make(map[digest.Digest]Layer)}
	cfg := configJSON{
		Architecture: plat.Architecture,
		OS:           plat.OS,
		Variant:      plat.Variant,
		Config:       configBody{Labels: img.Labels},
		RootFS:       ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	for _, l := range img.Layers {
		if l.Size < 0 {
			return nil, fmt.Errorf("imagebuild: negative layer size %d", l.Size)
		}
		d := l.Digest()
		b.layers[d] = l
		b.Layers = append(b.Layers, ocispec.Descriptor{MediaType: img.Format.layerType(), Digest: d, Size: l.Size})
		// Synthetic layers are not tarballs: the diff ID is the
		// layer digest itself.
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
	}
	var err error
	if b.config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	b.Config = ocispec.Descriptor{MediaType: img.Format.configType(), Digest: digest.FromBytes(b.config), Size: int64(len(b.config))}
	if b.Layers == nil {
		b.Layers = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    img.Format.manifestType(),
		ArtifactType: img.ArtifactType,
		Config:       b.Config,
		Layers:       b.Layers,
		Subject:      img.Subject,
		Annotations:  img.Annotations,
	}
	if b.Manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	b.Descriptor = ocispec.Descriptor{
		MediaType:    m.MediaType,
		ArtifactType: img.ArtifactType,
		Digest:       digest.FromBytes(b.Manifest),
		Size:         int64(len(b.Manifest)),
	}
	return b, nil
}

// Build builds every platform image and the index over them.
func (idx Index) Build() (*Built, error) {
	if idx.Format == Docker && len(idx.Annotations) > 0 {
		return nil, errors.New("imagebuild: index annotations need the OCI format")
	}
	b := &Built{}
	ix := ocispec.Index{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   idx.Format.indexType(),
		Manifests:   []ocispec.Descriptor{},
		Annotations: idx.Annotations,
	}
	for _, img := range idx.Images {
		img.Format = idx.Format
		c, err := img.Build()
		if err != nil {
			return nil, err
		}
		b.Children = append(b.Children, c)
		d := c.Descriptor
		plat := ocispec.Platform{OS: "linux", Architecture: "amd64"}
		if img.Platform != nil {
			plat = *img.Platform
		}
		d.Platform = &plat
		ix.Manifests = append(ix.Manifests, d)
	}
	var err error
	if b.Manifest, err = json.Marshal(ix); err != nil {
		return nil, err
	}
	b.Descriptor = ocispec.Descriptor{MediaType: ix.MediaType, Digest: digest.FromBytes(b.Manifest), Size: int64(len(b.Manifest))}
	return b, nil
}

// IsIndex reports whether b is an index (or manifest list).
func (b *Built) IsIndex() bool {
	return b.Descriptor.MediaType == ocispec.MediaTypeImageIndex || b.Descriptor.MediaType == MediaTypeDockerManifestList
}

// Manifests returns the descriptors of every manifest in b, children
// before their index (the order to push them in).
func (b *Built) Manifests() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, c := range b.Children {
		out = append(out, c.Manifests()...)
	}
	return append(out, b.Descriptor)
}

// Blobs returns the unique config and layer descriptors of b and its
// children (deduplicated by digest, in order of first appearance).
func (b *Built) Blobs() []ocispec.Descriptor { return UniqueBlobs(b) }

// UniqueBlobs returns the config and layer descriptors of the given
// images, deduplicated by digest, in order of first appearance.
func UniqueBlobs(bs ...*Built) []ocispec.Descriptor {
	seen := map[digest.Digest]bool{}
	var out []ocispec.Descriptor
	var walk func(b *Built)
	walk = func(b *Built) {
		if !b.IsIndex() {
			for _, d := range append([]ocispec.Descriptor{b.Config}, b.Layers...) {
				if !seen[d.Digest] {
					seen[d.Digest] = true
					out = append(out, d)
				}
			}
		}
		for _, c := range b.Children {
			walk(c)
		}
	}
	for _, b := range bs {
		walk(b)
	}
	return out
}

// SumUniqueBlobBytes returns the total size of the unique blobs (configs
// and layers, deduplicated by digest) of the given images: the bytes a
// copy that sends each blob once must upload. Manifests are not counted.
func SumUniqueBlobBytes(bs ...*Built) int64 {
	var n int64
	for _, d := range UniqueBlobs(bs...) {
		n += d.Size
	}
	return n
}

// SumUniqueLayerBytes is SumUniqueBlobBytes without the config blobs.
func SumUniqueLayerBytes(bs ...*Built) int64 {
	var n int64
	for _, d := range UniqueBlobs(bs...) {
		if d.MediaType == ocispec.MediaTypeImageLayerGzip || d.MediaType == MediaTypeDockerLayer {
			n += d.Size
		}
	}
	return n
}

// find returns the content source for d within b's tree.
func (b *Built) find(d digest.Digest) (data []byte, layer *Layer, ok bool) {
	if b.Descriptor.Digest == d {
		return b.Manifest, nil, true
	}
	if !b.IsIndex() && b.Config.Digest == d {
		return b.config, nil, true
	}
	if l, ok := b.layers[d]; ok {
		return nil, &l, true
	}
	for _, c := range b.Children {
		if data, layer, ok := c.find(d); ok {
			return data, layer, true
		}
	}
	return nil, nil, false
}

// Fetch returns the content of a manifest or blob of b.
func (b *Built) Fetch(_ context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	data, layer, ok := b.find(target.Digest)
	if !ok {
		return nil, fmt.Errorf("%s: %w", target.Digest, errdef.ErrNotFound)
	}
	if layer != nil {
		return io.NopCloser(layer.Reader()), nil
	}
	return io.NopCloser(strings.NewReader(string(data))), nil
}

// Exists reports whether target is a manifest or blob of b.
func (b *Built) Exists(_ context.Context, target ocispec.Descriptor) (bool, error) {
	_, _, ok := b.find(target.Digest)
	return ok, nil
}

// LayerOf returns the Layer behind a layer digest of b, for reading it at
// an offset.
func (b *Built) LayerOf(d digest.Digest) (Layer, bool) {
	_, l, ok := b.find(d)
	if !ok || l == nil {
		return Layer{}, false
	}
	return *l, true
}

// Platforms returns the platforms of an index's children ("os/arch" or
// "os/arch/variant"), sorted; nil for an image.
func (b *Built) Platforms() []string {
	var ps []string
	var ix ocispec.Index
	if !b.IsIndex() || json.Unmarshal(b.Manifest, &ix) != nil {
		return nil
	}
	for _, m := range ix.Manifests {
		if m.Platform == nil {
			continue
		}
		s := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			s += "/" + m.Platform.Variant
		}
		ps = append(ps, s)
	}
	slices.Sort(ps)
	return ps
}

// BuildEither builds idx when it is set, else img: for corpora whose
// entries are one or the other.
func BuildEither(img *Image, idx *Index) (*Built, error) {
	if idx != nil {
		return idx.Build()
	}
	if img == nil {
		return nil, fmt.Errorf("imagebuild: neither an image nor an index")
	}
	return img.Build()
}
