package endtoend

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// TestMirrorSurvivesFaults: on each kind of registry, a link that fails on
// average every 2 MiB (the registry keeps part of the cut body, then both
// sides drop), 3% of requests answered 503 and 2% 429 with Retry-After, on
// both sides. The run completes, every digest matches, and the report says
// what the registry could not resume. Distribution 3 resumes every cut
// chunk where it stands, so its bytes uploaded stay within 1.05x of the
// unique bytes; distribution 2.8 restarts a blob whose chunk was cut.
func TestMirrorSurvivesFaults(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		for _, seed := range []uint64{42, 7} {
			t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { testMirrorSurvivesFaults(t, kind, seed) })
		}
	})
}

func testMirrorSurvivesFaults(t *testing.T, kind registry.Kind, seed uint64) {
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{Kind: kind})
	c := bigCorpus(6 * mib)
	c.seed(t, src)
	faults := faultproxy.Faults{Seed: seed, Rate503: 0.03, Rate429: 0.02, RetryAfter: 1, CutEvery: 2 * mib}
	srcProxy := proxied(t, src, faults)
	tgtProxy := proxied(t, tgt, faults)

	args := append(mirrorArgs(c, srcProxy, tgtProxy.Host(), "--plain-http", "--state-dir", t.TempDir()), chunked...)
	r := run(t, "", args...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	rep := decode(t, r)
	c.checkTarget(t, tgt, external)
	st := tgtProxy.Stats()
	if st.Faults["link-cut"] == 0 || st.Faults["status-503"] == 0 || srcProxy.Stats().Faults["link-cut"] == 0 {
		t.Fatalf("faults not injected: target %v, source %v", st.Faults, srcProxy.Stats().Faults)
	}
	unique := imagebuild.SumUniqueBlobBytes(c.builts()...)
	ratio := float64(st.BytesUploaded) / float64(unique)
	if kind == registry.V3 && ratio > 1.05 {
		t.Errorf("uploaded %d bytes for %d unique (%.3fx, over 1.05x)", st.BytesUploaded, unique, ratio)
	}
	t.Logf("%s: uploaded %.3fx the unique bytes; %d blob(s) restarted, %d bytes resent; faults %v",
		kind, ratio, rep.Summary.BlobsRestarted, rep.Summary.BytesResent, st.Faults)
}

// TestChunkedUploadFallbacks: a registry that refuses PATCH gets whole-blob
// uploads; a journaled upload session the registry no longer knows starts a
// fresh session.
func TestChunkedUploadFallbacks(t *testing.T) { forKinds(t, testChunkedUploadFallbacks) }

func testChunkedUploadFallbacks(t *testing.T, kind registry.Kind) {
	t.Run("no PATCH", func(t *testing.T) {
		c, src, tgt := setup(t, registry.Options{Kind: kind})
		proxy := proxied(t, tgt, faultproxy.Faults{})
		proxy.SetHook(func(_ *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
			if info.Kind == faultproxy.KindUploadPatch {
				return faultproxy.Respond(http.StatusMethodNotAllowed, nil, nil), true
			}
			return faultproxy.Fault{}, false
		})
		r := run(t, "", append(mirrorArgs(c, src, proxy.Host(), "--plain-http", "--state-dir", t.TempDir()), chunked...)...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		// Uploads already under way when the first refusal comes each send
		// one PATCH (at most -j 4 of them); every later upload is whole.
		if n := proxy.Stats().ByKind[faultproxy.KindUploadPatch]; n < 1 || n > 4 {
			t.Errorf("%d PATCH requests, want 1 to 4: after the first refusal every upload should be whole", n)
		}
		c.checkTarget(t, tgt, external)
	})
	t.Run("unknown session", func(t *testing.T) {
		c, src, tgt := setup(t, registry.Options{Kind: kind})
		state := t.TempDir()
		// A journal entry for the provider layer whose session the registry
		// never had.
		layer := c.images[0].built.Layers[0]
		repo := tgt.Host() + external + "/" + strings.SplitN(c.images[0].path, ":", 2)[0]
		sum := sha256.Sum256([]byte(repo + "@" + layer.Digest.String()))
		entry := fmt.Sprintf(`{"repository":%q,"digest":%q,"location":"http://%s/v2/%s/blobs/uploads/0b6a2b39-0000-4000-8000-000000000000?_state=x","offset":1024}`,
			repo, layer.Digest, tgt.Host(), strings.TrimPrefix(repo, tgt.Host()+"/"))
		if err := os.WriteFile(filepath.Join(state, hex.EncodeToString(sum[:16])+".json"), []byte(entry), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, "", append(mirrorArgs(c, src, tgt.Host(), "--plain-http", "--state-dir", state), chunked...)...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		c.checkTarget(t, tgt, external)
		if rest, _ := filepath.Glob(filepath.Join(state, "*.json")); len(rest) != 0 {
			t.Errorf("journal entries left: %v", rest)
		}
	})
}
