package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/edgemirror/edgemirror/targets"
)

// pushDockerImage stores a Docker schema 2 image whose layers are the
// given strings, tagged tag, and returns its root and its blobs.
func pushDockerImage(t *testing.T, repo oras.Target, tag string, layers ...string) (ocispec.Descriptor, []ocispec.Descriptor) {
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
	return d, append(m.Layers, cfg)
}

// dockerHarness has three Docker images and one OCI image at the source,
// and a target that refuses Docker manifests; the blobs of the images
// after the first wait (before their target is asked for them) until it is
// done, so that its refusal comes first.
func dockerHarness(t *testing.T) (*harness, *targets.Plan, []ocispec.Descriptor) {
	h := newHarness()
	h.dst.refuseDocker = true
	h.opts.Jobs = 2
	pushDockerImage(t, h.src.repo("quay.io/a/first"), "1", "first-layer")
	_, second := pushDockerImage(t, h.src.repo("quay.io/a/second"), "1", "second-layer")
	_, third := pushDockerImage(t, h.src.repo("quay.io/a/third"), "1", "third-layer")
	pushImage(t, h.src.repo("quay.io/a/oci"), "1", nil, "oci-layer")
	firstDone := make(chan struct{})
	var once sync.Once
	target := h.opts.Target
	h.opts.Target = func(name string) (oras.Target, error) {
		t, err := target(name)
		if err != nil || strings.HasSuffix(name, "/a/first") {
			return t, err
		}
		return waitingTarget{Target: t, wait: firstDone}, nil
	}
	h.opts.Hooks.ImageDone = func(im *targets.Image) {
		if strings.HasSuffix(im.Name, "/a/first") {
			once.Do(func() { close(firstDone) })
		}
	}
	p := h.plan("quay.io/a/first:1", "quay.io/a/second:1", "quay.io/a/oci:1", "quay.io/a/third:1")
	return h, p, append(second, third...)
}

// waitingTarget asks whether it holds a blob only once wait is closed.
type waitingTarget struct {
	oras.Target
	wait <-chan struct{}
}

func (w waitingTarget) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	<-w.wait
	return w.Target.Exists(ctx, d)
}

// TestCopyDockerRefusal: the first Docker image fails at its manifest, the
// later ones at once without a blob sent, each with one short reason; the
// OCI image is copied.
func TestCopyDockerRefusal(t *testing.T) {
	h, p, later := dockerHarness(t)
	st := Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "failed,failed,copied,failed" {
		t.Fatalf("statuses %s; reasons %q", got, []string{p.Images[0].Reason, p.Images[1].Reason, p.Images[2].Reason, p.Images[3].Reason})
	}
	for _, im := range []*targets.Image{p.Images[0], p.Images[1], p.Images[3]} {
		if !strings.Contains(im.Reason, "refuses Docker-format manifests") || !strings.Contains(im.Reason, "docker2s2") || len(im.Reason) > 250 {
			t.Errorf("%s: reason %q", im.Name, im.Reason)
		}
	}
	if st.DockerRefused != 3 || !strings.Contains(st.DockerRefusal, "415") {
		t.Errorf("DockerRefused %d, DockerRefusal %q", st.DockerRefused, st.DockerRefusal)
	}
	for _, d := range later {
		for _, im := range []*targets.Image{p.Images[1], p.Images[3]} {
			if ok, _ := h.dst.repo(im.TargetName).Exists(context.Background(), d); ok {
				t.Errorf("blob %s of a later Docker image was sent", d.Digest)
			}
		}
	}
}

// TestCopyConvertDocker: with ConvertDocker, the refused images are copied
// as OCI (the first one again, after its refusal), their reason naming the
// source digest; a second run finds them present.
func TestCopyConvertDocker(t *testing.T) {
	h, p, _ := dockerHarness(t)
	h.opts.ConvertDocker = true
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "copied,copied,copied,copied" {
		t.Fatalf("statuses %s; reasons %q", got, []string{p.Images[0].Reason, p.Images[1].Reason, p.Images[3].Reason})
	}
	for _, im := range []*targets.Image{p.Images[0], p.Images[1], p.Images[3]} {
		src, _ := h.src.repo(im.Name).Resolve(context.Background(), im.Tag)
		dst, err := h.dst.repo(im.TargetName).Resolve(context.Background(), im.Tag)
		if err != nil || dst.MediaType != ocispec.MediaTypeImageManifest || dst.Digest.String() != im.Digest ||
			!strings.Contains(im.Reason, "converted from Docker to OCI") || !strings.Contains(im.Reason, src.Digest.String()) {
			t.Errorf("%s: target %s %s %v, report %s %q", im.Name, dst.MediaType, dst.Digest, err, im.Digest, im.Reason)
		}
	}
	p = h.plan("quay.io/a/first:1", "quay.io/a/second:1", "quay.io/a/oci:1", "quay.io/a/third:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "present,present,present,present" {
		t.Errorf("second run: %s", got)
	}
}

// manifestGate is a target whose Docker manifest pushes wait for open.
type manifestGate struct {
	oras.Target
	open <-chan struct{}
}

func (g manifestGate) Push(ctx context.Context, d ocispec.Descriptor, r io.Reader) error {
	if isDocker(d.MediaType) {
		<-g.open
	}
	return g.Target.Push(ctx, d, r)
}

// TestCopyDockerRefusalStopsTransfers: when the target refuses the first
// Docker manifest, the blob transfers of the other Docker images under way
// stop at once, and those images fail with the refusal.
func TestCopyDockerRefusalStopsTransfers(t *testing.T) {
	h := newHarness()
	h.dst.refuseDocker = true
	pushDockerImage(t, h.src.repo("quay.io/a/first"), "1", "first-layer")
	_, blobs := pushDockerImage(t, h.src.repo("quay.io/a/second"), "1", "second-layer")
	stalling := &stallingRepo{memRepo: h.src.repo("quay.io/a/second"), stall: blobs[0].Digest, started: make(chan struct{}), cancelled: make(chan bool, 1)}
	source, target := h.opts.Source, h.opts.Target
	h.opts.Source = func(name string) (oras.ReadOnlyTarget, error) {
		if strings.HasSuffix(name, "/a/second") {
			return stalling, nil
		}
		return source(name)
	}
	// The first image's manifest is refused only once the second image's
	// layer is in transfer.
	h.opts.Target = func(name string) (oras.Target, error) {
		tgt, err := target(name)
		return manifestGate{Target: tgt, open: stalling.started}, err
	}
	p := h.plan("quay.io/a/first:1", "quay.io/a/second:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "failed,failed" {
		t.Fatalf("statuses %s", got)
	}
	if !<-stalling.cancelled {
		t.Error("the second image's transfer ran on after the target refused Docker manifests")
	}
	if !strings.Contains(p.Images[1].Reason, "refuses Docker-format manifests") {
		t.Errorf("second image's reason %q, want the refusal", p.Images[1].Reason)
	}
}
