package main

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
)

// demoImage is one synthetic image of the demo, seeded at
// SOURCE/<ref> and expected at TARGET/spectro-images/<ref>.
type demoImage struct {
	// ref is the canonical reference with its tag, without a digest.
	ref string
	// pinned says the profile pins the image's digest (ref@sha256:...).
	pinned bool
	// image or index describes the content; exactly one is set.
	image *imagebuild.Image
	index *imagebuild.Index
}

// build builds the image or index.
func (im demoImage) build() (*imagebuild.Built, error) {
	b, err := imagebuild.BuildEither(im.image, im.index)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", im.ref, err)
	}
	return b, nil
}

// digest returns the digest of the image's root manifest.
func (im demoImage) digest() (string, error) {
	b, err := im.build()
	if err != nil {
		return "", err
	}
	return b.Descriptor.Digest.String(), nil
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Base layers shared between images, as real images share their distro
// layers. Seeds are fixed, so every run seeds the same bytes and digests
// (the profile pins one of them).
var (
	ubuntuBase      = imagebuild.Layer{Seed: 1001, Size: 6 * mib}
	ubuntuBaseArm64 = imagebuild.Layer{Seed: 1002, Size: 6 * mib}
	distrolessBase  = imagebuild.Layer{Seed: 1003, Size: 2 * mib}
	alpineBase      = imagebuild.Layer{Seed: 1004, Size: 3 * mib}
)

// demoImages returns the images of fixtures/demo/profile.json, the OS
// provider image first: about 50 MiB of unique blobs in all.
func demoImages() []demoImage {
	image := func(f imagebuild.Format, name string, layers ...imagebuild.Layer) *imagebuild.Image {
		return &imagebuild.Image{Format: f, Layers: layers, Labels: map[string]string{"org.opencontainers.image.title": name}}
	}
	own := func(seed uint64, size int64) imagebuild.Layer { return imagebuild.Layer{Seed: seed, Size: size} }
	amd64, arm64 := imagebuild.Platform("linux/amd64"), imagebuild.Platform("linux/arm64")
	cilium := func(p *ocispec.Platform, layers ...imagebuild.Layer) imagebuild.Image {
		img := *image(imagebuild.OCI, "cilium", layers...)
		img.Platform = p
		return img
	}
	return []demoImage{
		{ref: "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-demo",
			image: image(imagebuild.OCI, "provider", ubuntuBase, own(2001, 12*mib), own(2002, 1*mib))},
		{ref: "docker.io/rancher/mirrored-pause:3.6",
			image: image(imagebuild.Docker, "pause", own(2003, 300*kib))},
		{ref: "docker.io/rancher/mirrored-coredns-coredns:1.10.1",
			image: image(imagebuild.Docker, "coredns", distrolessBase, own(2004, 5*mib))},
		{ref: "quay.io/cilium/cilium:v1.14.4",
			index: &imagebuild.Index{Format: imagebuild.OCI, Images: []imagebuild.Image{
				cilium(&amd64, ubuntuBase, own(2005, 4*mib)),
				cilium(&arm64, ubuntuBaseArm64, own(2006, 4*mib)),
			}}},
		{ref: "quay.io/cilium/operator-generic:v1.14.4",
			image: image(imagebuild.OCI, "cilium-operator", distrolessBase, own(2007, 3*mib))},
		{ref: "ghcr.io/spectrocloud/hello-universe:1.1.0",
			image: image(imagebuild.OCI, "hello-universe", alpineBase, own(2008, 2*mib))},
		{ref: "gcr.io/spectro-images-public/hello-universe-api:1.0.1", pinned: true,
			image: image(imagebuild.OCI, "hello-universe-api", alpineBase, own(2009, 3*mib))},
		{ref: "docker.io/library/busybox:1.36",
			image: image(imagebuild.Docker, "busybox", own(2010, 2*mib))},
		{ref: "quay.io/example/edge-gateway:2.4.0",
			image: image(imagebuild.OCI, "edge-gateway", alpineBase, own(2011, 4*mib))},
	}
}
