package endtoend

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// corpusImage is one image of a test corpus: the reference a profile
// writes, and what is pushed for it at the source.
type corpusImage struct {
	ref      string // as written in the profile, e.g. busybox:1.36
	path     string // canonical repository:tag under the source mirror
	pin      bool   // write the reference pinned by digest
	layer    string // pack layer
	provider bool
	image    *imagebuild.Image
	index    *imagebuild.Index
	built    *imagebuild.Built
}

// corpus is a set of images seeded into a source registry, with a profile
// that references them.
type corpus struct {
	images  []*corpusImage
	profile string // path of the written profile
}

const kib = 1024

// standardCorpus is shaped like an edge profile: a provider image, images
// sharing base layers, a multi-arch index, a digest-pinned image and a
// Docker schema 2 image and manifest list.
func standardCorpus() *corpus {
	base := imagebuild.Layers(100, 300*kib, 200*kib)
	own := func(seed uint64, size int64) []imagebuild.Layer { return imagebuild.Layers(seed, size) }
	img := func(f imagebuild.Format, layers ...[]imagebuild.Layer) *imagebuild.Image {
		var all []imagebuild.Layer
		for _, l := range layers {
			all = append(all, l...)
		}
		return &imagebuild.Image{Format: f, Layers: all}
	}
	multi := imagebuild.MultiArch(imagebuild.OCI, 500, nil, 120*kib, 10*kib)
	dockerList := imagebuild.MultiArch(imagebuild.Docker, 600, nil, 60*kib)
	return &corpus{images: []*corpusImage{
		{ref: "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-demo", path: "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-demo", layer: "os", provider: true, image: img(imagebuild.OCI, own(1, 2048*kib), own(2, 64*kib))},
		{ref: "busybox:1.36", path: "docker.io/library/busybox:1.36", layer: "k8s", image: img(imagebuild.OCI, base, own(10, 50*kib))},
		{ref: "quay.io/acme/app:1.0", path: "quay.io/acme/app:1.0", layer: "addon", image: img(imagebuild.OCI, base, own(11, 70*kib))},
		{ref: "quay.io/acme/worker:1.0", path: "quay.io/acme/worker:1.0", layer: "addon", image: img(imagebuild.OCI, base[:1], own(12, 90*kib))},
		{ref: "ghcr.io/acme/legacy:2", path: "ghcr.io/acme/legacy:2", layer: "addon", image: img(imagebuild.Docker, base, own(13, 40*kib))},
		{ref: "registry.k8s.io/pause", path: "registry.k8s.io/pause:pinned", pin: true, layer: "k8s", image: img(imagebuild.OCI, own(14, 8*kib))},
		{ref: "quay.io/acme/pinned:2.0", path: "quay.io/acme/pinned:2.0", pin: true, layer: "addon", image: img(imagebuild.OCI, base[:1], own(15, 20*kib))},
		{ref: "gcr.io/acme/multi:3.1", path: "gcr.io/acme/multi:3.1", layer: "cni", index: &multi},
		{ref: "docker.io/acme/dockerlist:5", path: "docker.io/acme/dockerlist:5", layer: "addon", index: &dockerList},
	}}
}

// seed pushes the corpus into src under HOST/<canonical path> and writes a
// profile that references it.
func (c *corpus) seed(t *testing.T, src *registry.Registry) {
	t.Helper()
	ctx := context.Background()
	target := reach(src)
	for _, ci := range c.images {
		ref := src.Host() + "/" + ci.path
		var err error
		if ci.built, err = imagebuild.BuildEither(ci.image, ci.index); err == nil {
			err = imagebuild.Push(ctx, target, ref, ci.built)
		}
		if err != nil {
			t.Fatalf("seeding %s: %v", ref, err)
		}
		if ci.pin {
			ci.ref += "@" + ci.built.Descriptor.Digest.String()
		}
	}
	c.profile = c.writeProfile(t, "corpus")
}

// writeProfile writes an edge-native profile with one pack per layer.
func (c *corpus) writeProfile(t *testing.T, name string) string {
	t.Helper()
	byLayer := map[string][]string{}
	var order []string
	for _, ci := range c.images {
		if _, ok := byLayer[ci.layer]; !ok {
			order = append(order, ci.layer)
		}
		byLayer[ci.layer] = append(byLayer[ci.layer], ci.ref)
	}
	var packs []map[string]any
	for _, layer := range order {
		values := "pack:\n  content:\n    images:\n"
		for _, ref := range byLayer[layer] {
			values += fmt.Sprintf("      - image: %q\n", ref)
		}
		packs = append(packs, map[string]any{"name": "pack-" + layer, "type": "spectro", "layer": layer, "version": "1.0.0", "values": values})
	}
	doc := map[string]any{
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"version": "1.0.0", "template": map[string]any{"type": "cluster", "cloudType": "edge-native", "packs": packs}},
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// reach says how to reach r: its TLS and its credentials.
func reach(r *registry.Registry) imagebuild.Target {
	target := imagebuild.Target{PlainHTTP: r.PlainHTTP(), RootCAs: r.CertPool}
	for user, pass := range r.Options().Users {
		target.Username, target.Password = user, pass
	}
	return target
}

// builts lists every seeded image.
func (c *corpus) builts() []*imagebuild.Built {
	var out []*imagebuild.Built
	for _, ci := range c.images {
		out = append(out, ci.built)
	}
	return out
}

// hoster is a registry or a proxy in front of one.
type hoster interface{ Host() string }

// mirrors gives the --source-mirror flags that read every source registry
// of the corpus from src.
func mirrors(src hoster) []string {
	var out []string
	for _, h := range []string{"ttl.sh", "docker.io", "quay.io", "ghcr.io", "registry.k8s.io", "gcr.io"} {
		out = append(out, "--source-mirror", h+"="+src.Host()+"/"+h)
	}
	return out
}

// targetRef is where the agent pulls ci from under the external registry:
// by tag, or by digest for a digest-only reference.
func (ci *corpusImage) targetRef(registry string) string {
	if _, _, tagged := cutTag(strings.SplitN(ci.ref, "@", 2)[0]); ci.pin && !tagged {
		name, _, _ := cutTag(ci.path)
		return registry + "/" + name + "@" + ci.built.Descriptor.Digest.String()
	}
	return registry + "/" + ci.path
}

func cutTag(path string) (string, string, bool) {
	for i := len(path) - 1; i >= 0 && path[i] != '/'; i-- {
		if path[i] == ':' {
			return path[:i], path[i+1:], true
		}
	}
	return path, "", false
}

// checkTarget asserts that every image is at its target with its source
// digest.
func (c *corpus) checkTarget(t *testing.T, tgt *registry.Registry, externalPath string) {
	t.Helper()
	c.checkTargetAt(t, reach(tgt), tgt.Host()+externalPath)
}

// checkTargetAt asserts that every image is under registry (host and
// path), reached as target says, with its source digest.
func (c *corpus) checkTargetAt(t *testing.T, target imagebuild.Target, registry string) {
	t.Helper()
	ctx := context.Background()
	for _, ci := range c.images {
		ref := ci.targetRef(registry)
		desc, _, err := imagebuild.FetchManifest(ctx, target, ref)
		if err != nil {
			t.Errorf("target %s: %v", ref, err)
			continue
		}
		if desc.Digest != ci.built.Descriptor.Digest {
			t.Errorf("target %s has %s, source has %s", ref, desc.Digest, ci.built.Descriptor.Digest)
		}
	}
}
