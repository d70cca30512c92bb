package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
)

// Sizes in bytes.
const (
	kib = 1 << 10
	mib = 1 << 20
)

// benchImage is one image of the corpus: seeded at SOURCE/<ref>, expected
// at TARGET/spectro-images/<ref>.
type benchImage struct {
	// ref is the canonical reference with its tag.
	ref string
	// layer is the profile layer ("os", "k8s", "cni", "csi", "addon").
	layer string
	// image or index describes the content; exactly one is set.
	image *imagebuild.Image
	index *imagebuild.Index
}

// corpus is the benchmark's synthetic edge profile.
type corpus struct {
	images []benchImage
	built  []*imagebuild.Built
	// unique is the size of the unique config and layer blobs: what a copy
	// that sends every blob once uploads.
	unique int64
	blobs  int
}

// shape makes image descriptions with every size multiplied by its
// value, the -scale flag.
type shape float64

// size returns m MiB scaled, at least 4 KiB.
func (s shape) size(m float64) int64 { return max(int64(m*float64(s)*mib), 4*kib) }

// layer returns a layer of m MiB (scaled) whose content is seeded by seed.
func (s shape) layer(seed uint64, m float64) imagebuild.Layer {
	return imagebuild.Layer{Seed: seed, Size: s.size(m)}
}

// image returns an image of format f; name labels its config, so that
// images with equal layers stay distinct.
func image(f imagebuild.Format, name string, layers ...imagebuild.Layer) *imagebuild.Image {
	return &imagebuild.Image{Format: f, Layers: layers, Labels: map[string]string{"org.opencontainers.image.title": name}}
}

// newCorpus returns the corpus with every size multiplied by scale: at 1.0
// about 1 GiB of unique blobs, shaped like an edge profile: the OS provider
// image with one 512 MiB layer, 20 images sharing three base layers and a
// two-platform index, on six source registries. The provider image comes
// first, as edgemirror copies it first.
func newCorpus(scale float64) *corpus {
	s := shape(scale)
	layer := s.layer
	bases := []imagebuild.Layer{layer(101, 60), layer(102, 40), layer(103, 30)}
	c := &corpus{images: []benchImage{{
		ref:   "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-bench",
		layer: "os",
		image: image(imagebuild.OCI, "provider", layer(1, 512), layer(2, 6), layer(3, 1), layer(4, 0.25)),
	}}}
	shared := []struct{ layer, ref string }{
		{"k8s", "docker.io/rancher/mirrored-pause:3.6"},
		{"k8s", "docker.io/rancher/mirrored-coredns-coredns:1.10.1"},
		{"k8s", "docker.io/rancher/klipper-helm:v0.8.2-build20230815"},
		{"k8s", "docker.io/rancher/local-path-provisioner:v0.0.24"},
		{"k8s", "docker.io/rancher/mirrored-metrics-server:v0.6.3"},
		{"cni", "quay.io/cilium/operator-generic:v1.14.4"},
		{"cni", "quay.io/cilium/hubble-relay:v1.14.4"},
		{"cni", "quay.io/cilium/hubble-ui:v0.12.1"},
		{"cni", "quay.io/cilium/hubble-ui-backend:v0.12.1"},
		{"csi", "registry.k8s.io/sig-storage/csi-provisioner:v3.6.0"},
		{"csi", "registry.k8s.io/sig-storage/csi-attacher:v4.4.0"},
		{"csi", "registry.k8s.io/sig-storage/csi-snapshotter:v6.3.0"},
		{"csi", "registry.k8s.io/sig-storage/livenessprobe:v2.11.0"},
		{"csi", "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.9.0"},
		{"addon", "ghcr.io/spectrocloud/hello-universe:1.1.0"},
		{"addon", "ghcr.io/spectrocloud/hello-universe-api:1.0.1"},
		{"addon", "gcr.io/spectro-images-public/kube-vip/kube-vip:v0.6.4"},
		{"addon", "quay.io/prometheus/node-exporter:v1.6.1"},
		{"addon", "quay.io/prometheus/prometheus:v2.47.0"},
		{"addon", "docker.io/grafana/grafana:10.1.5"},
	}
	for i, s := range shared {
		var ls []imagebuild.Layer
		switch i % 3 {
		case 0:
			ls = []imagebuild.Layer{bases[0]}
		case 1:
			ls = []imagebuild.Layer{bases[0], bases[1]}
		default:
			ls = []imagebuild.Layer{bases[2]}
		}
		seed := uint64(1000 + 10*i)
		ls = append(ls, layer(seed, float64(6+3*(i%5))), layer(seed+1, 0.5))
		f := imagebuild.OCI
		if strings.HasPrefix(s.ref, "docker.io/") {
			f = imagebuild.Docker
		}
		c.images = append(c.images, benchImage{ref: s.ref, layer: s.layer, image: image(f, s.ref, ls...)})
	}
	amd64, arm64 := imagebuild.Platform("linux/amd64"), imagebuild.Platform("linux/arm64")
	cilium := func(p *ocispec.Platform, layers ...imagebuild.Layer) imagebuild.Image {
		img := *image(imagebuild.OCI, "cilium", layers...)
		img.Platform = p
		return img
	}
	c.images = append(c.images, benchImage{ref: "quay.io/cilium/cilium:v1.14.4", layer: "cni",
		index: &imagebuild.Index{Images: []imagebuild.Image{
			cilium(&amd64, bases[0], layer(201, 20)),
			cilium(&arm64, layer(202, 60), layer(203, 20)),
		}}})
	return c
}

// build builds every image and computes the unique sizes.
func (c *corpus) build() error {
	for _, im := range c.images {
		b, err := imagebuild.BuildEither(im.image, im.index)
		if err != nil {
			return fmt.Errorf("build %s: %w", im.ref, err)
		}
		c.built = append(c.built, b)
	}
	c.count()
	return nil
}

// count computes the unique sizes of the built images.
func (c *corpus) count() {
	c.unique = imagebuild.SumUniqueBlobBytes(c.built...)
	c.blobs = len(imagebuild.UniqueBlobs(c.built...))
}

// newSet returns the images with their built content as a corpus of its
// own, e.g. a part of the benchmark corpus. The slices are not copied.
func newSet(images []benchImage, built []*imagebuild.Built) *corpus {
	c := &corpus{images: images, built: built}
	c.count()
	return c
}

// plus returns a new set of c's images followed by o's.
func (c *corpus) plus(o *corpus) *corpus {
	return newSet(append(slices.Clip(c.images), o.images...), append(slices.Clip(c.built), o.built...))
}

// refs returns the references of the images, in order.
func (c *corpus) refs() []string {
	refs := make([]string, len(c.images))
	for i, im := range c.images {
		refs[i] = im.ref
	}
	return refs
}

// largestLayer returns the size of the largest layer of the set.
func (c *corpus) largestLayer() int64 {
	var n int64
	for _, d := range imagebuild.UniqueBlobs(c.built...) {
		n = max(n, d.Size)
	}
	return n
}

// dockerOnly returns the blobs that only Docker-format images of the set
// use, by digest, with their sizes: what a registry refusing Docker
// manifests never needs.
func (c *corpus) dockerOnly() map[digest.Digest]int64 {
	var docker, other []*imagebuild.Built
	for i, im := range c.images {
		if im.isDocker() {
			docker = append(docker, c.built[i])
		} else {
			other = append(other, c.built[i])
		}
	}
	out := map[digest.Digest]int64{}
	for _, d := range imagebuild.UniqueBlobs(docker...) {
		out[d.Digest] = d.Size
	}
	for _, d := range imagebuild.UniqueBlobs(other...) {
		delete(out, d.Digest)
	}
	return out
}

// isDocker reports whether the image has Docker media types.
func (im benchImage) isDocker() bool {
	return (im.image != nil && im.image.Format == imagebuild.Docker) || (im.index != nil && im.index.Format == imagebuild.Docker)
}

// realProvider returns an OS provider image with one 256 MiB layer
// (scaled), built, as a set: the image of the real-registries figures,
// distinct from the corpus's own provider image.
func realProvider(scale float64) (*corpus, error) {
	s := shape(scale)
	im := benchImage{
		ref:   "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-real",
		layer: "os",
		image: image(imagebuild.OCI, "provider-real", s.layer(11, 256), s.layer(12, 6), s.layer(13, 1), s.layer(14, 0.25)),
	}
	b, err := imagebuild.BuildEither(im.image, im.index)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", im.ref, err)
	}
	return newSet([]benchImage{im}, []*imagebuild.Built{b}), nil
}

// writeSingleProfile writes a profile whose pack in the given profile
// layer lists refs as content images.
func writeSingleProfile(path, layer string, refs []string) error {
	values := "pack:\n  content:\n    images:\n"
	for _, r := range refs {
		values += fmt.Sprintf("      - image: %q\n", r)
	}
	doc := map[string]any{
		"metadata": map[string]any{"name": "bench-" + layer},
		"spec": map[string]any{"version": "1.0.0", "template": map[string]any{"type": "cluster", "cloudType": "edge-native",
			"packs": []any{map[string]any{"name": "pack-" + layer, "layer": layer, "version": "1.0.0", "values": values}}}},
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// registries returns the source registries of the corpus, in order of
// first appearance.
func (c *corpus) registries() []string {
	var out []string
	seen := map[string]bool{}
	for _, im := range c.images {
		host, _, _ := strings.Cut(im.ref, "/")
		if !seen[host] {
			seen[host] = true
			out = append(out, host)
		}
	}
	return out
}

// writeProfile writes the corpus as an exported Palette cluster profile:
// an edge-native OS layer whose provider image comes from the CanvOS
// system.uri macro chain, then one pack per layer listing its images as
// content tags.
func (c *corpus) writeProfile(path string) error {
	type meta struct {
		UID  string `json:"uid,omitempty"`
		Name string `json:"name"`
		Kind string `json:"kind"`
	}
	type registry struct {
		Metadata meta `json:"metadata"`
	}
	type pack struct {
		Name     string   `json:"name"`
		Type     string   `json:"type"`
		Layer    string   `json:"layer"`
		Version  string   `json:"version"`
		Tag      string   `json:"tag"`
		Values   string   `json:"values"`
		Registry registry `json:"registry"`
	}
	public := registry{meta{UID: "5eecc89d0b150045ae661cef", Name: "Public Repo", Kind: "pack"}}
	contentTags := func(layer string) string {
		var b strings.Builder
		b.WriteString("pack:\n  content:\n    images:\n")
		for _, im := range c.images {
			if im.layer == layer {
				fmt.Fprintf(&b, "      - image: %s\n", im.ref)
			}
		}
		return b.String()
	}
	provider := c.images[0].ref
	reg, rest, _ := strings.Cut(provider, "/")
	repo, tag, _ := strings.Cut(rest, ":")
	if tag != "k3s-1.27.5-v4.1.2-bench" {
		return fmt.Errorf("provider image %s does not follow the CanvOS tag scheme", provider)
	}
	osValues := "pack:\n  content:\n    images:\n      - image: \"{{.spectro.pack.edge-native-byoi.options.system.uri}}\"\n" +
		"options:\n" +
		"  system.uri: \"{{ .spectro.pack.edge-native-byoi.options.system.registry }}/{{ .spectro.pack.edge-native-byoi.options.system.repo }}:{{ .spectro.pack.edge-native-byoi.options.system.k8sDistribution }}-{{ .spectro.system.kubernetes.version }}-{{ .spectro.pack.edge-native-byoi.options.system.peVersion }}-{{ .spectro.pack.edge-native-byoi.options.system.customTag }}\"\n" +
		"  system.registry: " + reg + "\n  system.repo: " + repo + "\n  system.k8sDistribution: k3s\n  system.peVersion: v4.1.2\n  system.customTag: bench\n"
	packs := []pack{
		{"edge-native-byoi", "spectro", "os", "2.0.0", "2.0.0", osValues, public},
		{"edge-k3s", "spectro", "k8s", "1.27.5", "1.27.x", contentTags("k8s"), public},
		{"cni-cilium-oss", "spectro", "cni", "1.14.4", "1.14.x", contentTags("cni"), public},
		{"csi-generic", "spectro", "csi", "1.0.0", "1.0.x", contentTags("csi"), public},
		{"edge-apps", "oci", "addon", "1.0.0", "1.0.0", contentTags("addon"), registry{meta{Name: "Palette Registry", Kind: "oci"}}},
	}
	profile := map[string]any{
		"metadata": map[string]any{"name": "edge-bench", "description": "edgemirror benchmark corpus", "labels": map[string]string{}},
		"spec": map[string]any{
			"version":  "1.0.0",
			"template": map[string]any{"type": "cluster", "cloudType": "edge-native", "packs": packs},
		},
	}
	b, err := json.MarshalIndent(profile, "", "  ")
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}
