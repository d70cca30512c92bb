package imagebuild_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLayerIsDeterministicAndSeekable(t *testing.T) {
	l := imagebuild.Layer{Seed: 1, Size: 200_003} // several blocks, ragged end
	all, err := io.ReadAll(l.Reader())
	if err != nil || int64(len(all)) != l.Size {
		t.Fatalf("read %d bytes, %v", len(all), err)
	}
	again, _ := io.ReadAll(imagebuild.Layer{Seed: 1, Size: l.Size}.Reader())
	if !bytes.Equal(all, again) {
		t.Fatal("same seed, different bytes")
	}
	if l.Digest() != digest.FromBytes(all) || l.Digest() != (imagebuild.Layer{Seed: 1, Size: l.Size}).Digest() {
		t.Fatal("digest does not match the content")
	}
	if (imagebuild.Layer{Seed: 2, Size: l.Size}).Digest() == l.Digest() {
		t.Fatal("different seeds, same digest")
	}
	// A shorter layer of the same seed is a prefix (a stream, not a hash).
	short, _ := io.ReadAll(imagebuild.Layer{Seed: 1, Size: 1000}.Reader())
	if !bytes.Equal(short, all[:1000]) {
		t.Fatal("shorter layer is not a prefix")
	}
	for _, off := range []int64{0, 1, 65535, 65536, 65537, 131072 + 5, l.Size - 1, l.Size} {
		rest, _ := io.ReadAll(l.ReaderFrom(off))
		if !bytes.Equal(rest, all[off:]) {
			t.Fatalf("ReaderFrom(%d) differs", off)
		}
		buf := make([]byte, 70_000)
		n, err := l.ReaderAt().ReadAt(buf, off)
		want := all[off:min(off+int64(len(buf)), l.Size)]
		if n != len(want) || !bytes.Equal(buf[:n], want) || (n < len(buf) && err != io.EOF) {
			t.Fatalf("ReadAt(%d): n=%d err=%v", off, n, err)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(l.ReaderAt(), 0, l.Size)); err != nil {
		t.Fatal(err)
	}
	if digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)) != l.Digest() {
		t.Fatal("section reader digest differs")
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	build := func(f imagebuild.Format) *imagebuild.Built {
		b, err := imagebuild.MultiArch(f, 77, nil, 1000, 2000).Build()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := build(imagebuild.OCI), build(imagebuild.OCI)
	if a.Descriptor.Digest != b.Descriptor.Digest || !bytes.Equal(a.Manifest, b.Manifest) {
		t.Fatal("same seed, different index")
	}
	d := build(imagebuild.Docker)
	if d.Descriptor.Digest == a.Descriptor.Digest || d.Descriptor.MediaType != imagebuild.MediaTypeDockerManifestList {
		t.Fatalf("docker list: %v", d.Descriptor)
	}
	if len(a.Manifests()) != 3 || a.Manifests()[2].Digest != a.Descriptor.Digest {
		t.Fatalf("Manifests order: %v", a.Manifests())
	}
	if got := a.Platforms(); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v", got)
	}
	// Each platform has its own 2 layers and a config: 6 blobs.
	if n := len(a.Blobs()); n != 6 || imagebuild.SumUniqueLayerBytes(a) != 2*(1000+2000) {
		t.Fatalf("blobs %d, layer bytes %d", n, imagebuild.SumUniqueLayerBytes(a))
	}
	if _, err := (imagebuild.Image{Format: imagebuild.Docker, Annotations: map[string]string{"a": "b"}}).Build(); err == nil {
		t.Fatal("docker image with annotations built")
	}
}

func TestSumUniqueBlobBytes(t *testing.T) {
	shared := imagebuild.Layer{Seed: 5, Size: 10_000}
	i1, err := imagebuild.Image{Layers: []imagebuild.Layer{shared, {Seed: 6, Size: 300}}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	i2, err := imagebuild.Image{Layers: []imagebuild.Layer{shared, {Seed: 7, Size: 50}}, Labels: map[string]string{"x": "y"}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := 10_000 + 300 + 50 + i1.Config.Size + i2.Config.Size
	if got := imagebuild.SumUniqueBlobBytes(i1, i2, i1); got != want {
		t.Fatalf("SumUniqueBlobBytes %d, want %d", got, want)
	}
	if len(imagebuild.UniqueBlobs(i1, i2)) != 5 {
		t.Fatalf("UniqueBlobs %v", imagebuild.UniqueBlobs(i1, i2))
	}
}

func TestPushKinds(t *testing.T) {
	r := registry.StartT(t, registry.Options{TLS: true, Users: map[string]string{"u": "p"}})
	ctx := ctxT(t)
	tgt := imagebuild.Target{RootCAs: r.CertPool, Username: "u", Password: "p"}
	h := r.Host()

	oci, err := imagebuild.PushIndex(ctx, tgt, h+"/multi/oci:v1", imagebuild.MultiArch(imagebuild.OCI, 1, []string{"linux/amd64", "linux/arm64/v8", "linux/s390x"}, 4096, 1))
	if err != nil {
		t.Fatal(err)
	}
	docker, err := imagebuild.PushIndex(ctx, tgt, h+"/multi/docker:v1", imagebuild.MultiArch(imagebuild.Docker, 2, nil, 2048))
	if err != nil {
		t.Fatal(err)
	}
	single, err := imagebuild.PushImage(ctx, tgt, h+"/single/docker:v1", imagebuild.SingleArch(imagebuild.Docker, 3, 100, 200))
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := imagebuild.PushImage(ctx, tgt, h+"/bydigest/x", imagebuild.SingleArch(imagebuild.OCI, 4, 10))
	if err != nil {
		t.Fatal(err)
	}

	// The index is readable, with its platforms, and so are its children.
	desc, data, err := imagebuild.FetchManifest(ctx, tgt, h+"/multi/oci:v1")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != oci.Descriptor.Digest || desc.MediaType != ocispec.MediaTypeImageIndex || !bytes.Equal(data, oci.Manifest) {
		t.Fatalf("index: %v", desc)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(data, &ix); err != nil {
		t.Fatal(err)
	}
	if len(ix.Manifests) != 3 || ix.Manifests[1].Platform.Variant != "v8" || ix.Manifests[2].Platform.Architecture != "s390x" {
		t.Fatalf("index manifests %+v", ix.Manifests)
	}
	for i, m := range ix.Manifests {
		cd, cdata, err := imagebuild.FetchManifest(ctx, tgt, h+"/multi/oci@"+m.Digest.String())
		if err != nil || cd.MediaType != ocispec.MediaTypeImageManifest || !bytes.Equal(cdata, oci.Children[i].Manifest) {
			t.Fatalf("child %d: %v %v", i, cd, err)
		}
	}

	for ref, want := range map[string]string{
		h + "/multi/docker:v1":  imagebuild.MediaTypeDockerManifestList,
		h + "/single/docker:v1": imagebuild.MediaTypeDockerManifest,
	} {
		d, data, err := imagebuild.FetchManifest(ctx, tgt, ref)
		if err != nil || d.MediaType != want {
			t.Fatalf("%s: %v %v", ref, d.MediaType, err)
		}
		if want == imagebuild.MediaTypeDockerManifest && !strings.Contains(string(data), imagebuild.MediaTypeDockerLayer) {
			t.Fatalf("docker manifest lacks the docker layer type: %s", data)
		}
	}

	got, err := imagebuild.ManifestDigests(ctx, tgt, h,
		"multi/oci:v1", "multi/docker:v1", "single/docker:v1",
		"bydigest/x@"+byDigest.Descriptor.Digest.String(), "bydigest/x:latest")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{
		"multi/oci:v1":     oci.Descriptor.Digest,
		"multi/docker:v1":  docker.Descriptor.Digest,
		"single/docker:v1": single.Descriptor.Digest,
		"bydigest/x@" + byDigest.Descriptor.Digest.String(): byDigest.Descriptor.Digest,
	}
	if len(got) != len(want) {
		t.Fatalf("digests %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("digest of %s: %s, want %s", k, got[k], v)
		}
	}
	// Pushed by digest only: no tag at all (distribution answers the tag
	// list of a repository without tags with 404 NAME_UNKNOWN).
	repo, err := tgt.Repository(h + "/bydigest/x")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	err = repo.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil })
	var er *errcode.ErrorResponse
	if len(tags) != 0 || (err != nil && (!errors.As(err, &er) || er.StatusCode != http.StatusNotFound)) {
		t.Fatalf("by-digest push left tags %v (%v)", tags, err)
	}
	// A second push skips the blobs the registry has; Reupload does not.
	if err := imagebuild.Push(ctx, tgt, h+"/multi/oci:v2", oci); err != nil {
		t.Fatal(err)
	}
	tgt.Reupload = true
	if err := imagebuild.Push(ctx, tgt, h+"/multi/oci@"+oci.Descriptor.Digest.String(), oci); err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.Push(ctx, tgt, h+"/multi/oci@"+single.Descriptor.Digest.String(), oci); err == nil {
		t.Fatal("push to a digest that is not the built one succeeded")
	}
}

// TestReferrerFallback pushes an artifact whose subject is an image:
// distribution v3 has no referrers API, so oras indexes it under the
// referrers tag schema ("sha256-<hex>").
func TestReferrerFallback(t *testing.T) {
	r := registry.StartT(t, registry.Options{})
	ctx := ctxT(t)
	tgt := imagebuild.Target{PlainHTTP: true}
	subj, err := imagebuild.PushImage(ctx, tgt, r.Host()+"/ref/app:1", imagebuild.SingleArch(imagebuild.OCI, 8, 100))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := imagebuild.PushImage(ctx, tgt, r.Host()+"/ref/app", imagebuild.Image{
		ArtifactType: "application/vnd.example.signature",
		Layers:       []imagebuild.Layer{{Seed: 9, Size: 64}},
		Subject:      &subj.Descriptor,
	})
	if err != nil {
		t.Fatal(err)
	}
	tag := strings.Replace(subj.Descriptor.Digest.String(), ":", "-", 1)
	_, data, err := imagebuild.FetchManifest(ctx, tgt, r.Host()+"/ref/app:"+tag)
	if err != nil {
		t.Fatalf("referrers tag: %v", err)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(data, &ix); err != nil {
		t.Fatal(err)
	}
	if len(ix.Manifests) != 1 || ix.Manifests[0].Digest != sig.Descriptor.Digest || ix.Manifests[0].ArtifactType != "application/vnd.example.signature" {
		t.Fatalf("referrers index %s", data)
	}
}

// BenchmarkLayerDigest measures generating and hashing layer content.
func BenchmarkLayerDigest(b *testing.B) {
	const size = 64 << 20
	b.SetBytes(size)
	for i := range b.N {
		h := sha256.New()
		if _, err := io.Copy(h, imagebuild.Layer{Seed: uint64(i), Size: size}.Reader()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLayerRead measures generating layer content alone.
func BenchmarkLayerRead(b *testing.B) {
	const size = 64 << 20
	b.SetBytes(size)
	for i := range b.N {
		if _, err := io.Copy(io.Discard, imagebuild.Layer{Seed: uint64(i), Size: size}.Reader()); err != nil {
			b.Fatal(err)
		}
	}
}
