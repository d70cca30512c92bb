package bundle

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
)

// seedImage stores an image with one layer in src, tagged tag.
func seedImage(t *testing.T, src *memory.Store, tag string, layer []byte) (manifest, blob ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, b)
		if err := src.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","tag":"`+tag+`"}`))
	blob = push(ocispec.MediaTypeImageLayerGzip, layer)
	raw, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{blob}})
	manifest = push(ocispec.MediaTypeImageManifest, raw)
	if err := src.Tag(ctx, manifest, tag); err != nil {
		t.Fatal(err)
	}
	return manifest, blob
}

// TestRoundTrip: images saved into a layout (one by tag, one by digest
// only) with their profile, written as a tar and opened again, as a tar and
// as the directory, are found under their canonical references with their
// provenance and their bytes; the opened bundle takes no writes.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := memory.New()
	layer := bytes.Repeat([]byte("edge"), 4096)
	manifest, blob := seedImage(t, src, "1.0", layer)
	pinned, _ := seedImage(t, src, "pause", []byte("pause-layer"))
	// The memory store resolves tags only: name the manifest by its digest.
	if err := src.Tag(ctx, pinned, pinned.Digest.String()); err != nil {
		t.Fatal(err)
	}
	from := profile.Provenance{Profile: "infra", Pack: "apps", Layer: "addon", Origin: profile.OriginContent}
	pinnedRef := "registry.k8s.io/pause@" + pinned.Digest.String()
	res := &profile.Result{Images: []profile.Image{
		{Ref: "quay.io/acme/app:1.0", Raw: "quay.io/acme/app:1.0", From: from},
		{Ref: pinnedRef, Raw: pinnedRef, From: from},
	}}
	plan := targets.Build(res, targets.Rules{Bundle: true})
	profiles := []*profile.Profile{{File: "infra.json", Data: []byte(`{"metadata":{"name":"infra"}}`)}}

	dir := filepath.Join(t.TempDir(), "layout")
	layout, err := Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	mirror.Copy(ctx, plan, mirror.Options{
		Source:         func(string) (oras.ReadOnlyTarget, error) { return src, nil },
		Target:         func(name string) (oras.Target, error) { return layout.Repository(name), nil },
		ChunkThreshold: 1024, ChunkSize: 1024, // the layer goes through the partial file
	})
	for _, im := range plan.Images {
		if im.Status != targets.Copied {
			t.Fatalf("%s: %s %s", im.Source, im.Status, im.Reason)
		}
	}
	if err := layout.Finish(ctx, plan, profiles); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "bundle.tar")
	if err := WriteTar(dir, tarball); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{tarball, dir} {
		b, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Result.Images) != 2 || b.Result.Images[0].From.Pack != "apps" {
			t.Fatalf("%s: images in the bundle: %+v", path, b.Result.Images)
		}
		repo := b.Repository("quay.io/acme/app")
		got, err := repo.Resolve(ctx, "1.0")
		if err != nil || got.Digest != manifest.Digest {
			t.Fatalf("%s: resolved %s %v, want %s", path, got.Digest, err, manifest.Digest)
		}
		rc, err := repo.Fetch(ctx, blob)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(data, layer) {
			t.Errorf("%s: the layer read back differs", path)
		}
		if got, err := b.Repository("registry.k8s.io/pause").Resolve(ctx, pinned.Digest.String()); err != nil || got.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("%s: the digest-pinned image: %+v %v", path, got, err)
		}
		if err := repo.(oras.Target).Push(ctx, blob, bytes.NewReader(layer)); err == nil {
			t.Errorf("%s: an opened bundle took a push", path)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Errorf("index.json: %v", err)
	}
}

// TestLargeBlobAnyDigest: a large blob with a sha512 digest goes through
// the partial file like a sha256 one, and an interrupted write resumes.
func TestLargeBlobAnyDigest(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 8192)
	sum := sha512.Sum512(data)
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Size: int64(len(data)), Digest: digest.NewDigestFromBytes(digest.SHA512, sum[:])}
	dir := t.TempDir()
	layout, err := Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	up := layout.Repository("quay.io/acme/app").(registryclient.ChunkUploader)
	cut := errors.New("link cut")
	half := func(off int64) (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(data[off:len(data)/2]), errReader{cut})), nil
	}
	if _, err := up.UploadChunked(ctx, d, half, registryclient.ChunkOptions{}); !errors.Is(err, cut) {
		t.Fatalf("first write: %v", err)
	}
	var from int64 = -1
	rest := func(off int64) (io.ReadCloser, error) {
		from = off
		return io.NopCloser(bytes.NewReader(data[off:])), nil
	}
	if _, err := up.UploadChunked(ctx, d, rest, registryclient.ChunkOptions{}); err != nil {
		t.Fatal(err)
	}
	if from != int64(len(data)/2) {
		t.Errorf("the second write read from %d, want %d", from, len(data)/2)
	}
	stored, err := os.ReadFile(filepath.Join(dir, "blobs", "sha512", d.Digest.Encoded()))
	if err != nil || !bytes.Equal(stored, data) {
		t.Errorf("stored blob: %v, equal %v", err, bytes.Equal(stored, data))
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
