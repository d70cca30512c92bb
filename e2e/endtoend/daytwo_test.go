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
