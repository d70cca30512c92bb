package endtoend

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/e2e/tokenserver"
)

// The account of the token-auth tests.
const tokenUser, tokenPass = "robot$edge", "T0ken-Pa55"

// tokenTarget starts a target registry of kind behind Bearer token auth,
// with tokens that live about 2 s; grant restricts them (nil: as asked).
func tokenTarget(t *testing.T, kind registry.Kind, grant tokenserver.Grant) (*registry.Registry, *tokenserver.Server) {
	t.Helper()
	ts := tokenserver.StartT(t, tokenserver.Options{Users: map[string]string{tokenUser: tokenPass}, Grant: grant})
	return registry.StartT(t, registry.Options{Kind: kind, Token: ts.RegistryAuth()}), ts
}

// TestBearerTokensExpireMidTransfer: tokens live about 2 s and the upload
// takes several times that, so tokens expire between chunks and during
// whole-blob uploads; each refused request is made again with a fresh
// token, every image arrives and no byte is sent twice.
func TestBearerTokensExpireMidTransfer(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		src := registry.StartT(t, registry.Options{})
		tgt, ts := tokenTarget(t, kind, nil)
		c := bigCorpus(16 * mib)
		c.seed(t, src)
		proxy := proxied(t, tgt, faultproxy.Faults{UploadBytesPerSec: 4 * mib})
		r := run(t, tokenPass+"\n", mirrorArgs(c, src, proxy.Host(), "--plain-http", "-u", tokenUser, "--password-stdin",
			"--state-dir", t.TempDir(), "--chunk-threshold", "1MiB", "--chunk-size", "1MiB")...)
		if r.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
		}
		c.checkTargetAt(t, imagebuild.Target{PlainHTTP: true, Username: tokenUser, Password: tokenPass}, tgt.Host()+external)
		unique := imagebuild.SumUniqueBlobBytes(c.builts()...)
		st := proxy.Stats()
		ratio := float64(st.BytesUploaded) / float64(unique)
		if ratio > 1.01 {
			t.Errorf("uploaded %.3fx the unique bytes with expiring tokens", ratio)
		}
		if ts.Issued() < 3 || st.ByStatus[401] < 2 {
			t.Errorf("%d tokens issued and %d requests refused with 401: tokens did not expire during the run", ts.Issued(), st.ByStatus[401])
		}
		if strings.Contains(r.stdout+r.stderr, tokenPass) {
			t.Error("the password is in the output")
		}
		t.Logf("%s: %d tokens, %d answers 401, %.4fx the unique bytes", kind, ts.Issued(), st.ByStatus[401], ratio)
	})
}

// TestPushRightsCheckedFirst: a target namespace that does not accept a
// push (a pull-only token scope, a read-only registry) stops the run before
// any blob moves: one line naming the registry and the namespace, exit 1,
// zero bytes sent.
func TestPushRightsCheckedFirst(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		for _, tc := range []struct {
			name  string
			start func(t *testing.T) *registry.Registry
			stdin string
			flags []string
		}{
			{"pull-only token scope", func(t *testing.T) *registry.Registry {
				tgt, _ := tokenTarget(t, kind, tokenserver.PullOnlyUnder(strings.TrimPrefix(external, "/")))
				return tgt
			}, tokenPass + "\n", []string{"-u", tokenUser, "--password-stdin"}},
			{"read-only registry", func(t *testing.T) *registry.Registry {
				return registry.StartT(t, registry.Options{Kind: kind, ReadOnly: true})
			}, "", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				src := registry.StartT(t, registry.Options{})
				c := standardCorpus()
				c.seed(t, src)
				tgt := tc.start(t)
				proxy := proxied(t, tgt, faultproxy.Faults{})
				r := run(t, tc.stdin, mirrorArgs(c, src, proxy.Host(), append([]string{"--plain-http"}, tc.flags...)...)...)
				line := strings.TrimSpace(r.stderr)
				if r.code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "target registry "+proxy.Host()) ||
					!strings.Contains(line, "cannot push to "+strings.TrimPrefix(external, "/")+"/") {
					t.Fatalf("exit %d, want 1 and one line naming the registry and the namespace:\n%s", r.code, r.stderr)
				}
				st := proxy.Stats()
				if st.BytesUploaded != 0 || st.ByKind[faultproxy.KindUploadPatch] != 0 || st.ByKind[faultproxy.KindUploadPut] != 0 || st.ByKind[faultproxy.KindManifestPut] != 0 {
					t.Errorf("data was sent before the refusal: %d bytes, requests %v", st.BytesUploaded, st.ByKind)
				}
				t.Logf("%s", line)
			})
		}
	})
}

// TestDockerManifestsRefused: a target that refuses Docker manifests (zot
// without http.compat docker2s2 answers 415) fails every Docker-format
// image with one short reason naming the cause and the fix; after the
// first refusal, the remaining Docker images send no blob; OCI images are
// copied; one summary line on stderr; exit 3.
func TestDockerManifestsRefused(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		src := registry.StartT(t, registry.Options{})
		tgt := registry.StartT(t, registry.Options{Kind: kind})
		c := &corpus{images: []*corpusImage{{ref: "ttl.sh/ubuntu:k3s-oci", path: "ttl.sh/ubuntu:k3s-oci", layer: "os", provider: true,
			image: &imagebuild.Image{Format: imagebuild.OCI, Layers: imagebuild.Layers(700, 200*kib)}}}}
		const docker = 8
		for i := 0; i < docker; i++ {
			path := fmt.Sprintf("quay.io/acme/docker%d:1", i)
			c.images = append(c.images, &corpusImage{ref: path, path: path, layer: "addon",
				image: &imagebuild.Image{Format: imagebuild.Docker, Layers: imagebuild.Layers(uint64(710+i), 100*kib)}})
		}
		c.images = append(c.images, &corpusImage{ref: "quay.io/acme/oci:1", path: "quay.io/acme/oci:1", layer: "addon",
			image: &imagebuild.Image{Format: imagebuild.OCI, Layers: imagebuild.Layers(790, 50*kib)}})
		c.seed(t, src)
		proxy := proxied(t, tgt, faultproxy.Faults{})
		proxy.SetHook(faultproxy.RefuseDockerManifests())

		r := run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http", "-j", "1")...)
		rep := decode(t, r)
		if r.code != 3 {
			t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
		}
		sent := 0 // Docker images whose own layer reached the target
		uploads := proxy.Stats().UploadsByDigest
		for i, im := range rep.Images {
			ci := c.images[i]
			if ci.image.Format != imagebuild.Docker {
				if im.Status != "copied" {
					t.Errorf("OCI image %s: %s (%s)", im.Source, im.Status, im.Reason)
				}
				continue
			}
			if im.Status != "failed" || !strings.Contains(im.Reason, "docker2s2") || len(im.Reason) > 300 {
				t.Errorf("Docker image %s: %s, reason (%d chars) %q; want failed with one short reason naming the fix", im.Source, im.Status, len(im.Reason), im.Reason)
			}
			if uploads[ci.built.Layers[0].Digest.String()] > 0 {
				sent++
			}
		}
		// With -j 1 at most four images are under way at once: those
		// already sending when the first refusal came.
		if sent > 4 {
			t.Errorf("%d of %d Docker images sent their layer; after the first refusal none should", sent, docker)
		}
		if n := strings.Count(r.stderr, "Docker-format image(s) not copied"); n != 1 {
			t.Errorf("%d summary lines on stderr, want 1:\n%s", n, r.stderr)
		}
		t.Logf("%d of %d Docker images sent a layer; reason: %s", sent, docker, rep.Images[1].Reason)
	})
}

// TestConvertDockerForZot: with --convert-docker, a target that refuses
// Docker manifests gets the Docker-format images (a manifest list too) as
// OCI: the same blobs under new manifests, tagged where the profile says,
// the report noting the source digest. A digest-pinned Docker image still
// fails, since the node pulls it by the digest the conversion changes. A
// second run finds the converted images present.
func TestConvertDockerForZot(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		src := registry.StartT(t, registry.Options{})
		tgt := registry.StartT(t, registry.Options{Kind: kind})
		list := imagebuild.MultiArch(imagebuild.Docker, 820, nil, 40*kib)
		c := &corpus{images: []*corpusImage{
			{ref: "ttl.sh/ubuntu:k3s-oci", path: "ttl.sh/ubuntu:k3s-oci", layer: "os", provider: true, image: &imagebuild.Image{Layers: imagebuild.Layers(800, 100*kib)}},
			{ref: "quay.io/acme/legacy:1", path: "quay.io/acme/legacy:1", layer: "addon", image: &imagebuild.Image{Format: imagebuild.Docker, Layers: imagebuild.Layers(810, 60*kib)}},
			{ref: "quay.io/acme/list:1", path: "quay.io/acme/list:1", layer: "addon", index: &list},
			{ref: "quay.io/acme/pinned:1", path: "quay.io/acme/pinned:1", pin: true, layer: "addon", image: &imagebuild.Image{Format: imagebuild.Docker, Layers: imagebuild.Layers(830, 30*kib)}},
		}}
		c.seed(t, src)
		proxy := proxied(t, tgt, faultproxy.Faults{})
		proxy.SetHook(faultproxy.RefuseDockerManifests())
		args := mirrorArgs(c, src, proxy.Host(), "--plain-http", "--convert-docker")

		r := run(t, "", args...)
		rep := decode(t, r)
		if r.code != 3 {
			t.Fatalf("exit %d, want 3 (the pinned image)\n%s", r.code, r.stderr)
		}
		target := reach(tgt)
		for i, im := range rep.Images {
			ci := c.images[i]
			switch {
			case ci.pin:
				if im.Status != "failed" || !strings.Contains(im.Reason, "pinned by digest") {
					t.Errorf("pinned Docker image: %s %q; want failed, saying the digest would change", im.Status, im.Reason)
				}
				continue
			case i == 0:
				if im.Status != "copied" || strings.Contains(im.Reason, "converted") {
					t.Errorf("OCI image: %s %q", im.Status, im.Reason)
				}
				continue
			}
			if im.Status != "copied" || !strings.Contains(im.Reason, "converted from Docker to OCI") || !strings.Contains(im.Reason, ci.built.Descriptor.Digest.String()) {
				t.Errorf("%s: %s %q; want copied, noting the conversion and the source digest", im.Source, im.Status, im.Reason)
			}
			desc, _, err := imagebuild.FetchManifest(context.Background(), target, ci.targetRef(tgt.Host()+external))
			if err != nil || !strings.HasPrefix(desc.MediaType, "application/vnd.oci.image.") || desc.Digest.String() != im.Digest {
				t.Errorf("%s at the target: %s %s %v; want the OCI form the report names (%s)", im.Source, desc.MediaType, desc.Digest, err, im.Digest)
			}
		}

		r = run(t, "", args...)
		rep = decode(t, r)
		if n := statusCounts(rep)["present"]; n != 3 || proxy.Stats().Faults["respond-415"] == 0 {
			t.Errorf("second run: %v; want the OCI image and both converted images present", statusCounts(rep))
		}
	})
}
