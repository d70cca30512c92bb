package endtoend

import (
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// TestDayTwoSendsOnlyWhatTheSiteLacks: every other image is at the site
// already (day 1); mirroring the whole profile on day 2 sends exactly the
// bytes of the blobs the site lacks. Layers that new images share with the
// images already there are mounted from their repositories, not uploaded
// again.
func TestDayTwoSendsOnlyWhatTheSiteLacks(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		c, src, tgt := setup(t, registry.Options{Kind: kind})
		proxy := proxied(t, tgt, faultproxy.Faults{})
		day1 := &corpus{}
		for i, ci := range c.images {
			if i%2 == 0 {
				day1.images = append(day1.images, ci)
			}
		}
		day1.profile = day1.writeProfile(t, "day1")
		if r := run(t, "", mirrorArgs(day1, src, proxy.Host(), "--plain-http")...); r.code != 0 {
			t.Fatalf("day 1: exit %d\n%s", r.code, r.stderr)
		}

		proxy.Reset()
		r := run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http")...)
		if r.code != 0 {
			t.Fatalf("day 2: exit %d\n%s", r.code, r.stderr)
		}
		c.checkTarget(t, tgt, external)
		missing := imagebuild.SumUniqueBlobBytes(c.builts()...) - imagebuild.SumUniqueBlobBytes(day1.builts()...)
		st := proxy.Stats()
		if st.BytesUploaded != missing {
			t.Errorf("day 2 uploaded %d bytes; the site lacked %d (mounts: %d)", st.BytesUploaded, missing, st.MountsSucceeded)
		}
		if st.MountsSucceeded == 0 {
			t.Error("no blob was mounted from the images already at the site")
		}
	})
}

// TestUpgradeMountsWhatEarlierRunsPlaced: the site was prepared with
// profile version 1; version 2 drops an image and adds one that shares its
// base layers, in another repository. Mirroring version 2 with the state
// directory of the first run sends exactly the bytes the site lacks: the
// base layers are mounted from the dropped image's repository, which no
// tag of the new plan names. With a fresh state directory (another
// machine) they are uploaded again.
func TestUpgradeMountsWhatEarlierRunsPlaced(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		src := registry.StartT(t, registry.Options{})
		base := imagebuild.Layers(200, 400*kib, 300*kib)
		image := func(seed uint64) *imagebuild.Image {
			return &imagebuild.Image{Format: imagebuild.OCI, Layers: append(append([]imagebuild.Layer(nil), base...), imagebuild.Layers(seed, 60*kib)...)}
		}
		v1 := &corpus{images: []*corpusImage{{ref: "quay.io/acme/ingest:1.0", path: "quay.io/acme/ingest:1.0", layer: "addon", image: image(201)}}}
		v2 := &corpus{images: []*corpusImage{{ref: "quay.io/acme/collector:2.0", path: "quay.io/acme/collector:2.0", layer: "addon", image: image(202)}}}
		v1.seed(t, src)
		v2.seed(t, src)
		missing := imagebuild.SumUniqueBlobBytes(append(v1.builts(), v2.builts()...)...) - imagebuild.SumUniqueBlobBytes(v1.builts()...)
		for _, c := range []struct {
			name     string
			sameDir  bool
			uploaded int64
		}{
			{"same state dir", true, missing},
			{"fresh state dir", false, imagebuild.SumUniqueBlobBytes(v2.builts()...)},
		} {
			tgt := registry.StartT(t, registry.Options{Kind: kind})
			proxy := proxied(t, tgt, faultproxy.Faults{})
			state := t.TempDir()
			if r := run(t, "", mirrorArgs(v1, src, proxy.Host(), "--plain-http", "--state-dir", state)...); r.code != 0 {
				t.Fatalf("%s: version 1: exit %d\n%s", c.name, r.code, r.stderr)
			}
			if !c.sameDir {
				state = t.TempDir()
			}
			proxy.Reset()
			if r := run(t, "", mirrorArgs(v2, src, proxy.Host(), "--plain-http", "--state-dir", state)...); r.code != 0 {
				t.Fatalf("%s: version 2: exit %d\n%s", c.name, r.code, r.stderr)
			}
			v2.checkTarget(t, tgt, external)
			if st := proxy.Stats(); st.BytesUploaded != c.uploaded {
				t.Errorf("%s: version 2 uploaded %d bytes, want %d (the site lacked %d; mounts: %d)", c.name, st.BytesUploaded, c.uploaded, missing, st.MountsSucceeded)
			}
		}
	})
}
