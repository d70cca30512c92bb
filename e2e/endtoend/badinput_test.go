package endtoend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// The image every bad-answer case breaks, and its repository at the source
// (behind the --source-mirror for quay.io) and at the target.
const (
	badRef        = "quay.io/acme/bad:1"
	badSourceRepo = "quay.io/acme/bad"
	badTargetRepo = "spectro-images/quay.io/acme/bad"
)

// goodCorpus is what every bad-answer case must still copy: a provider
// image, a short name, an OCI index and a Docker image, none sharing a
// layer with the bad image.
func goodCorpus() *corpus {
	multi := imagebuild.MultiArch(imagebuild.OCI, 910, nil, 30*kib)
	return &corpus{images: []*corpusImage{
		{ref: "ttl.sh/ubuntu:k3s-bad-input", path: "ttl.sh/ubuntu:k3s-bad-input", layer: "os", provider: true, image: &imagebuild.Image{Layers: imagebuild.Layers(901, 200*kib, 8*kib)}},
		{ref: "busybox:1.36", path: "docker.io/library/busybox:1.36", layer: "k8s", image: &imagebuild.Image{Layers: imagebuild.Layers(902, 40*kib)}},
		{ref: "quay.io/acme/good:1", path: "quay.io/acme/good:1", layer: "addon", image: &imagebuild.Image{Layers: imagebuild.Layers(903, 60*kib)}},
		{ref: "ghcr.io/acme/legacy:2", path: "ghcr.io/acme/legacy:2", layer: "addon", image: &imagebuild.Image{Format: imagebuild.Docker, Layers: imagebuild.Layers(904, 20*kib)}},
		{ref: "gcr.io/acme/multi:3.1", path: "gcr.io/acme/multi:3.1", layer: "cni", index: &multi},
	}}
}

// badImage is the image at badRef when a case does not push its own.
func badImage() imagebuild.Image {
	return imagebuild.Image{Layers: imagebuild.Layers(920, 150*kib, 5*kib)}
}

// badCase is one wrong answer from a registry.
type badCase struct {
	name string
	// srcOpts configures the source registry.
	srcOpts registry.Options
	// seedBad pushes what sits at badRef in the source; nil pushes
	// badImage(). It returns what hooks need to know (may be nil).
	seedBad func(t *testing.T, src *registry.Registry) *imagebuild.Built
	// srcHook and tgtHook pick the faults of the proxies in front of the
	// source and the target (nil: none).
	srcHook func(bad *imagebuild.Built) faultproxy.Hook
	tgtHook func(bad *imagebuild.Built) faultproxy.Hook
	// status is the bad image's expected status; reason lists substrings
	// its reason must contain (case-insensitive).
	status string
	reason []string
	// names, when non-nil, gives the digest the reason must name.
	names func(bad *imagebuild.Built) string
}

// TestMirrorBadRegistryAnswers: a registry that answers wrongly for one
// image (invalid JSON, a corrupted blob, a missing child, a huge manifest,
// a missing blob, 401 at the source, 403 to a tag write) makes that image
// failed or missing with a clear one-line reason; every other image is
// copied, the run exits 3, and nothing panics.
func TestMirrorBadRegistryAnswers(t *testing.T) {
	invalidJSON := []byte(`{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {`)
	huge := hugeManifest(t, 5<<20)
	cases := []badCase{
		{
			// The registry serves a manifest that is not JSON, with a
			// consistent Docker-Content-Digest and Content-Length (the
			// digest of the bytes sent), on HEAD and GET alike: only
			// parsing can tell.
			name: "manifest is not valid JSON",
			srcHook: func(*imagebuild.Built) faultproxy.Hook {
				return manifestsOf(badSourceRepo, faultproxy.Respond(http.StatusOK, manifestHeader(ocispec.MediaTypeImageManifest, invalidJSON), invalidJSON))
			},
			status: "failed",
			reason: []string{"not valid JSON"},
		},
		{
			// HEAD is honest; the GET body is altered (same length) while
			// Docker-Content-Digest still names the original: the digest
			// check must catch it.
			name: "manifest body does not match its digest",
			srcHook: func(*imagebuild.Built) faultproxy.Hook {
				return func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
					if info.Kind == faultproxy.KindManifestGet && faultproxy.Repository(r) == badSourceRepo {
						return faultproxy.Rewrite(func(b []byte) []byte {
							b = bytes.Clone(b)
							b[0] = 'X'
							return b
						}), true
					}
					return faultproxy.Fault{}, false
				}
			},
			status: "failed",
			reason: []string{"digest"},
		},
		{
			// One byte of a layer flips on its way from the source: the
			// target registry refuses the digest.
			name: "blob bytes do not match the digest",
			srcHook: func(bad *imagebuild.Built) faultproxy.Hook {
				layer := bad.Layers[0].Digest.String()
				return func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
					if info.Kind == faultproxy.KindBlobGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
						return faultproxy.CorruptBody(-1), true
					}
					return faultproxy.Fault{}, false
				}
			},
			status: "failed",
			reason: []string{"digest"},
			names:  func(bad *imagebuild.Built) string { return bad.Layers[0].Digest.String() },
		},
		{
			// An index whose arm64 child was never pushed (the source
			// registry does not validate indexes).
			name:    "index points at a missing child",
			srcOpts: registry.Options{Configure: func(c *configuration.Configuration) { c.Validation.Manifests.Indexes.Platforms = "none" }},
			seedBad: seedIndexMissingChild,
			status:  "failed",
			reason:  []string{"missing"},
			names:   func(bad *imagebuild.Built) string { return bad.Children[1].Descriptor.Digest.String() },
		},
		{
			// A valid manifest of 5 MiB, over the 4 MiB manifest limit
			// (distribution and oras-go refuse those too).
			name: "manifest over the size limit",
			srcHook: func(*imagebuild.Built) faultproxy.Hook {
				return manifestsOf(badSourceRepo, faultproxy.Respond(http.StatusOK, manifestHeader(ocispec.MediaTypeImageManifest, huge), huge))
			},
			status: "failed",
			reason: []string{"limit"},
		},
		{
			// The manifest is there, a layer it references is not (deleted
			// at the source).
			name: "blob referenced by the manifest is missing",
			seedBad: func(t *testing.T, src *registry.Registry) *imagebuild.Built {
				b := pushBad(t, src, badImage())
				deleteAt(t, src, "/v2/"+badSourceRepo+"/blobs/"+b.Layers[0].Digest.String())
				return b
			},
			status: "failed",
			reason: []string{"not found", "blob"},
			names:  func(bad *imagebuild.Built) string { return bad.Layers[0].Digest.String() },
		},
		{
			// The source refuses anonymous access to one repository.
			name: "source answers 401 for one repository",
			srcHook: func(*imagebuild.Built) faultproxy.Hook {
				h := http.Header{"Content-Type": {"application/json"}, "Www-Authenticate": {`Basic realm="edgemirror-e2e"`}}
				return repoFault(badSourceRepo, nil, faultproxy.Respond(http.StatusUnauthorized, h, errorBody("UNAUTHORIZED", "authentication required")))
			},
			status: "failed",
			reason: []string{"unauthorized"},
		},
		{
			// The target accepts blobs but refuses to write one
			// repository's tag (as Harbor does for an immutable tag). A
			// repository refusing every push is found before any copy
			// (TestPushRightsCheckedFirst).
			name: "target answers 403 to one manifest write",
			tgtHook: func(*imagebuild.Built) faultproxy.Hook {
				h := http.Header{"Content-Type": {"application/json"}}
				writes := func(r *http.Request) bool {
					return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
				}
				return repoFault(badTargetRepo, writes, faultproxy.Respond(http.StatusForbidden, h, errorBody("DENIED", "requested access to the resource is denied")))
			},
			status: "failed",
			reason: []string{"forbidden"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := registry.StartT(t, tc.srcOpts)
			tgt := registry.StartT(t, registry.Options{})
			good := goodCorpus()
			good.seed(t, src)
			var bad *imagebuild.Built
			if tc.seedBad != nil {
				bad = tc.seedBad(t, src)
			} else {
				bad = pushBad(t, src, badImage())
			}
			all := &corpus{images: append(append([]*corpusImage(nil), good.images...), &corpusImage{ref: badRef, path: badRef, layer: "addon"})}
			all.profile = all.writeProfile(t, "bad-answers")

			srcProxy := proxied(t, src, faultproxy.Faults{})
			if tc.srcHook != nil {
				srcProxy.SetHook(tc.srcHook(bad))
			}
			tgtHost := tgt.Host()
			var tgtProxy *faultproxy.Proxy
			if tc.tgtHook != nil {
				tgtProxy = proxied(t, tgt, faultproxy.Faults{})
				tgtProxy.SetHook(tc.tgtHook(bad))
				tgtHost = tgtProxy.Host()
			}

			r := run(t, "", mirrorArgs(all, srcProxy, tgtHost, "--plain-http", "--progress", "none", "--state-dir", t.TempDir())...)
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Fatalf("panic on stderr:\n%s", r.stderr)
			}
			if r.code != 3 {
				t.Fatalf("exit %d, want 3\nstderr: %s", r.code, r.stderr)
			}
			rep := decode(t, r)
			copied := 0
			for _, im := range rep.Images {
				if im.Source != badRef {
					if im.Status == "copied" {
						copied++
					} else {
						t.Errorf("%s: %s (%s), want copied", im.Source, im.Status, im.Reason)
					}
					continue
				}
				if string(im.Status) != tc.status {
					t.Errorf("%s: status %s, want %s (reason %q)", badRef, im.Status, tc.status, im.Reason)
				}
				if strings.ContainsAny(im.Reason, "\r\n") || strings.TrimSpace(im.Reason) == "" {
					t.Errorf("%s: reason is not one clear line: %q", badRef, im.Reason)
				}
				for _, want := range tc.reason {
					if !strings.Contains(strings.ToLower(im.Reason), strings.ToLower(want)) {
						t.Errorf("%s: reason %q does not say %q", badRef, im.Reason, want)
					}
				}
				if tc.names != nil && !strings.Contains(im.Reason, tc.names(bad)) {
					t.Errorf("%s: reason %q does not name %s", badRef, im.Reason, tc.names(bad))
				}
				t.Logf("%s: %s: %s", badRef, im.Status, im.Reason)
			}
			if copied != len(good.images) || rep.Summary.Images != len(good.images)+1 {
				t.Errorf("copied %d of %d good images (%d rows): %v", copied, len(good.images), rep.Summary.Images, statusCounts(rep))
			}
			good.checkTarget(t, tgt, external)
			if tc.srcHook != nil && len(srcProxy.Stats().Faults) == 0 {
				t.Errorf("the source proxy injected nothing; the case did not exercise its fault")
			}
			if tgtProxy != nil && len(tgtProxy.Stats().Faults) == 0 {
				t.Errorf("the target proxy injected nothing; the case did not exercise its fault")
			}
		})
	}
}

// pushBad pushes img at badRef in src.
func pushBad(t *testing.T, src *registry.Registry, img imagebuild.Image) *imagebuild.Built {
	t.Helper()
	b, err := imagebuild.PushImage(context.Background(), imagebuild.Target{PlainHTTP: true}, src.Host()+"/"+badRef, img)
	if err != nil {
		t.Fatalf("pushing %s: %v", badRef, err)
	}
	return b
}

// seedIndexMissingChild pushes at badRef an index over linux/amd64 and
// linux/arm64 of which only the amd64 image exists.
func seedIndexMissingChild(t *testing.T, src *registry.Registry) *imagebuild.Built {
	t.Helper()
	idx, err := imagebuild.MultiArch(imagebuild.OCI, 930, nil, 25*kib).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	target := imagebuild.Target{PlainHTTP: true}
	if err := imagebuild.Push(ctx, target, src.Host()+"/"+badSourceRepo, idx.Children[0]); err != nil {
		t.Fatalf("pushing the amd64 child: %v", err)
	}
	req, err := http.NewRequest(http.MethodPut, src.URL()+"/v2/"+badSourceRepo+"/manifests/1", bytes.NewReader(idx.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", idx.Descriptor.MediaType)
	resp, err := src.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing the incomplete index: %s %s", resp.Status, body)
	}
	missing := badSourceRepo + "@" + idx.Children[1].Descriptor.Digest.String()
	if got, err := imagebuild.ManifestDigests(ctx, target, src.Host(), missing); err != nil || len(got) != 0 {
		t.Fatalf("the arm64 child should be missing: %v %v", got, err)
	}
	return idx
}

// deleteAt sends a DELETE to src and expects 202 Accepted.
func deleteAt(t *testing.T, src *registry.Registry, path string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, src.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := src.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s: %s", path, resp.Status)
	}
}

// manifestsOf answers every manifest HEAD and GET of repo with f.
func manifestsOf(repo string, f faultproxy.Fault) faultproxy.Hook {
	return func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if (info.Kind == faultproxy.KindManifestHead || info.Kind == faultproxy.KindManifestGet) && faultproxy.Repository(r) == repo {
			return f, true
		}
		return faultproxy.Fault{}, false
	}
}

// repoFault answers every request to repo that match accepts (nil: all)
// with f.
func repoFault(repo string, match func(*http.Request) bool, f faultproxy.Fault) faultproxy.Hook {
	return func(r *http.Request, _ faultproxy.Info) (faultproxy.Fault, bool) {
		if faultproxy.Repository(r) == repo && (match == nil || match(r)) {
			return f, true
		}
		return faultproxy.Fault{}, false
	}
}

// manifestHeader is what a registry sends with a manifest: its media type,
// length and digest.
func manifestHeader(mediaType string, body []byte) http.Header {
	return http.Header{
		"Content-Type":          {mediaType},
		"Content-Length":        {strconv.Itoa(len(body))},
		"Docker-Content-Digest": {digest.FromBytes(body).String()},
	}
}

// errorBody is a distribution-style error answer.
func errorBody(code, message string) []byte {
	return []byte(fmt.Sprintf(`{"errors":[{"code":%q,"message":%q}]}`+"\n", code, message))
}

// hugeManifest is a valid OCI image manifest of at least size bytes (an
// annotation pads it).
func hugeManifest(t *testing.T, size int) []byte {
	t.Helper()
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("{}"), Size: 2},
		Layers:    []ocispec.Descriptor{},
		Annotations: map[string]string{
			"org.example.padding": strings.Repeat("x", size),
		},
	}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
