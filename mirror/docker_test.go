package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// pushDockerImage stores a Docker schema 2 image whose layers are the
// given strings, tagged tag, and returns its layers' descriptors.
func pushDockerImage(t *testing.T, repo oras.Target, tag string, layers ...string) []ocispec.Descriptor {
	t.Helper()
	cfg := pushBlob(t, repo, "application/vnd.docker.container.image.v1+json", []byte(fmt.Sprintf(`{"docker":%q}`, layers)))
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: dockerManifest, Config: cfg}
	for _, l := range layers {
		m.Layers = append(m.Layers, pushBlob(t, repo, "application/vnd.docker.image.rootfs.diff.tar.gzip", []byte(l)))
	}
	raw, _ := json.Marshal(m)
	d := pushBlob(t, repo, dockerManifest, raw)
	if err := repo.Tag(context.Background(), d, tag); err != nil {
		t.Fatal(err)
	}
	return append(m.Layers, cfg)
}

// TestCopyDockerRefusal copies Docker and OCI images to a zot that refuses
// Docker manifests: the first Docker image fails at its manifest, the
// later ones at once without a blob sent, and the OCI image (its large
// layer in chunks) is copied.
func TestCopyDockerRefusal(t *testing.T) {
	sim := newRegistrySim(t, simZot)
	src := newMemRegistry()
	pushDockerImage(t, src.repo("quay.io/a/first"), "1", "first-layer")
	var later []ocispec.Descriptor
	later = append(later, pushDockerImage(t, src.repo("quay.io/a/second"), "1", "second-layer")...)
	later = append(later, pushDockerImage(t, src.repo("quay.io/a/third"), "1", "third-layer")...)
	big, _ := testBlob(testSize)
	pushImage(t, src.repo("quay.io/a/oci"), "1", nil, string(big), "small-layer")

	// The other images wait until the first one is done, so that its
	// refusal comes first.
	firstDone := make(chan struct{})
	var once sync.Once
	ep := Endpoint{Client: sim.repo(t, "x", nil).Client, PlainHTTP: true}
	opts := Options{
		Jobs:           2,
		ChunkThreshold: testSize / 2,
		ChunkSize:      testChunk,
		Source:         func(name string) (oras.ReadOnlyTarget, error) { return src.repo(name), nil },
		Target: func(name string) (oras.Target, error) {
			if !strings.HasSuffix(name, "/a/first") {
				<-firstDone
			}
			return ep.Repository(sim.host() + "/" + repoPath(name))
		},
		Hooks: Hooks{ImageDone: func(im *Image) {
			if strings.HasSuffix(im.Name, "/a/first") {
				once.Do(func() { close(firstDone) })
			}
		}},
	}
	p := planOf(Rules{Registry: "zot.local:5000/edge"}, "quay.io/a/first:1", "quay.io/a/second:1", "quay.io/a/oci:1", "quay.io/a/third:1")
	st := Copy(context.Background(), p, opts)

	if got := statuses(p); got != "failed,failed,copied,failed" {
		t.Fatalf("statuses %s; reasons %q", got, []string{p.Images[0].Reason, p.Images[1].Reason, p.Images[2].Reason, p.Images[3].Reason})
	}
	for _, im := range []*Image{p.Images[0], p.Images[1], p.Images[3]} {
		if !strings.Contains(im.Reason, "refuses Docker-format manifests") || !strings.Contains(im.Reason, "docker2s2") {
			t.Errorf("%s: reason %q", im.Name, im.Reason)
		}
	}
	if st.DockerRefused != 3 || !strings.Contains(st.DockerRefusal, "415") {
		t.Errorf("DockerRefused %d, DockerRefusal %q", st.DockerRefused, st.DockerRefusal)
	}
	for _, d := range later {
		if _, ok := sim.blob(repoPath(p.Images[1].TargetName), d.Digest); ok {
			t.Errorf("blob %s of a later Docker image was sent", d.Digest)
		}
		if _, ok := sim.blob(repoPath(p.Images[3].TargetName), d.Digest); ok {
			t.Errorf("blob %s of a later Docker image was sent", d.Digest)
		}
	}
	// One manifest refused, then none tried: the OCI image's manifest is
	// the only other manifest PUT.
	if n := sim.count(http.MethodPut, "manifest"); n != 2 {
		t.Errorf("%d manifest PUTs, want 2", n)
	}
	checkStored(t, sim, repoPath(p.Images[2].TargetName), big)
	// The large layer (and the config, which quotes it) went in chunks.
	if n := sim.received(); n < testSize {
		t.Errorf("%d bytes sent in chunks, want at least the large layer's %d", n, testSize)
	}
}
