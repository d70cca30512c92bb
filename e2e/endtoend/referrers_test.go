package endtoend

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// signCorpus attaches a synthetic signature, and an SBOM with its own
// signature, to the first add-on image of c at the source.
func signCorpus(t *testing.T, c *corpus, src *registry.Registry) (subject *corpusImage, referrers []digest.Digest) {
	t.Helper()
	for _, ci := range c.images {
		if ci.layer == "addon" && ci.index == nil {
			subject = ci
			break
		}
	}
	ctx := context.Background()
	target := imagebuild.Target{PlainHTTP: true}
	name, _, _ := cutTag(subject.path)
	push := func(artifactType string, seed uint64, of ocispec.Descriptor) ocispec.Descriptor {
		b, err := imagebuild.PushImage(ctx, target, src.Host()+"/"+name, imagebuild.Image{
			Format: imagebuild.OCI, ArtifactType: artifactType, Subject: &of, Layers: imagebuild.Layers(seed, 512),
		})
		if err != nil {
			t.Fatalf("pushing a %s: %v", artifactType, err)
		}
		referrers = append(referrers, b.Descriptor.Digest)
		return b.Descriptor
	}
	push("application/vnd.dev.cosign.artifact.sig.v1+json", 801, subject.built.Descriptor)
	sbom := push("application/spdx+json", 802, subject.built.Descriptor)
	push("application/vnd.dev.cosign.artifact.sig.v1+json", 803, sbom)
	return subject, referrers
}

// referrersAt lists, recursively, the referrers of desc in repo at host.
func referrersAt(t *testing.T, host, repo string, desc ocispec.Descriptor) []digest.Digest {
	t.Helper()
	r, err := imagebuild.Target{PlainHTTP: true}.Repository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	var walk func(d ocispec.Descriptor)
	walk = func(d ocispec.Descriptor) {
		err := r.Referrers(context.Background(), d, "", func(page []ocispec.Descriptor) error {
			for _, p := range page {
				out = append(out, p.Digest)
				walk(p)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("referrers of %s in %s: %v", d.Digest, repo, err)
		}
	}
	walk(desc)
	return out
}

func sameSet(a, b []digest.Digest) bool {
	seen := map[digest.Digest]int{}
	for _, d := range a {
		seen[d]++
	}
	for _, d := range b {
		seen[d]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

// TestIncludeReferrers: with --include-referrers a signature, an SBOM and
// the SBOM's signature reach the target, by mirror and through a bundle;
// without it they do not.
func TestIncludeReferrers(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{})
	subject, want := signCorpus(t, c, src)
	name, _, _ := cutTag(subject.path)
	repo := strings.TrimPrefix(external, "/") + "/" + name

	if r := run(t, "", mirrorArgs(c, src, tgt.Host(), "--plain-http")...); r.code != 0 {
		t.Fatalf("mirror: exit %d\n%s", r.code, r.stderr)
	}
	if got := referrersAt(t, tgt.Host(), repo, subject.built.Descriptor); len(got) != 0 {
		t.Fatalf("referrers copied without --include-referrers: %v", got)
	}
	r := run(t, "", mirrorArgs(c, src, tgt.Host(), "--plain-http", "--include-referrers")...)
	if r.code != 0 {
		t.Fatalf("mirror --include-referrers: exit %d\n%s", r.code, r.stderr)
	}
	if got := referrersAt(t, tgt.Host(), repo, subject.built.Descriptor); !sameSet(got, want) {
		t.Errorf("target referrers %v, want %v", got, want)
	}

	// Through a bundle.
	dir := filepath.Join(t.TempDir(), "bundle")
	if r := run(t, "", saveArgs(c, src, dir, "--include-referrers")...); r.code != 0 {
		t.Fatalf("save: exit %d\n%s", r.code, r.stderr)
	}
	tgt2 := registry.StartT(t, registry.Options{})
	r = run(t, "", "push", "--bundle", dir, "-r", tgt2.Host()+external, "--plain-http", "--include-referrers", "--progress", "none")
	if r.code != 0 {
		t.Fatalf("push: exit %d\n%s", r.code, r.stderr)
	}
	if got := referrersAt(t, tgt2.Host(), repo, subject.built.Descriptor); !sameSet(got, want) {
		t.Errorf("referrers pushed from the bundle %v, want %v", got, want)
	}
	c.checkTarget(t, tgt2, external)
}
