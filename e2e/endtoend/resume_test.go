package endtoend

import (
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

const mib = 1 << 20

// bigCorpus is the standard corpus with a provider layer large enough to be
// uploaded in many chunks.
func bigCorpus(providerLayer int64) *corpus {
	c := standardCorpus()
	c.images[0].image = &imagebuild.Image{Format: imagebuild.OCI, Layers: imagebuild.Layers(77, providerLayer, 64*kib)}
	return c
}

// chunked makes every blob over 256 KiB go up in 256 KiB chunks.
var chunked = []string{"--chunk-threshold", "256KiB", "--chunk-size", "256KiB"}

// proxied puts a fault proxy in front of r.
func proxied(t *testing.T, r *registry.Registry, f faultproxy.Faults) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New("http://"+r.Host(), faultproxy.Options{Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestMirrorSurvivesFaults: 5% of requests answered 503, 5% 429 with
// Retry-After, 10% of blob transfers cut in the middle on both sides; the
// run completes, every digest matches, and the bytes uploaded stay within
// 1.25x of the unique bytes because cut uploads resume.
func TestMirrorSurvivesFaults(t *testing.T) {
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{})
	c := bigCorpus(6 * mib)
	c.seed(t, src)
	faults := faultproxy.Faults{Seed: 42, Rate503: 0.05, Rate429: 0.05, RetryAfter: 1, RateCut: 0.10}
	srcProxy := proxied(t, src, faults)
	tgtProxy := proxied(t, tgt, faults)

	args := append(mirrorArgs(c, srcProxy, tgtProxy.Host(), "--plain-http", "--state-dir", t.TempDir()), chunked...)
	r := run(t, "", args...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt, external)
	st := tgtProxy.Stats()
	if st.Faults["cut"] == 0 || st.Faults["status-503"] == 0 || st.Faults["status-429"] == 0 || srcProxy.Stats().Faults["cut"] == 0 {
		t.Fatalf("faults not injected: target %v, source %v", st.Faults, srcProxy.Stats().Faults)
	}
	unique := imagebuild.SumUniqueBlobBytes(c.builts()...)
	if ratio := float64(st.BytesUploaded) / float64(unique); ratio > 1.25 {
		t.Errorf("uploaded %d bytes for %d unique (%.2fx, over 1.25x)", st.BytesUploaded, unique, ratio)
	}
	t.Logf("uploaded %.3fx the unique bytes with faults %v", float64(st.BytesUploaded)/float64(unique), st.Faults)
}
