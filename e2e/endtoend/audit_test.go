package endtoend

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// auditArgs is an audit of the corpus against host.
func auditArgs(c *corpus, src string, host string, extra ...string) []string {
	args := []string{"audit", "-p", c.profile, "-r", host + external, "--plain-http", "--source-plain-http", "--progress", "none", "-o", "json"}
	for _, h := range []string{"ttl.sh", "docker.io", "quay.io", "ghcr.io", "registry.k8s.io", "gcr.io"} {
		args = append(args, "--source-mirror", h+"="+src+"/"+h)
	}
	return append(args, extra...)
}

// TestAuditAfterPartialAndFullMirror: after a partial mirror, audit names
// exactly the images not yet copied (the k8s layer's as warnings); after a
// full mirror it exits 0. Without --verify-source it sends no request to
// the source.
func TestAuditAfterPartialAndFullMirror(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{})
	srcProxy, err := faultproxy.New("http://"+src.Host(), faultproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srcProxy.Close() })

	// Mirror only the add-on images.
	partial := &corpus{}
	var notCopied []string
	for _, ci := range c.images {
		if ci.layer == "addon" {
			partial.images = append(partial.images, ci)
		} else {
			notCopied = append(notCopied, ci.targetRef(tgt.Host()+external))
		}
	}
	partial.profile = partial.writeProfile(t, "partial")
	if r := run(t, "", mirrorArgs(partial, src, tgt.Host(), "--plain-http")...); r.code != 0 {
		t.Fatalf("partial mirror: exit %d\n%s", r.code, r.stderr)
	}

	srcProxy.Reset()
	r := run(t, "", auditArgs(c, srcProxy.Host(), tgt.Host())...)
	rep := decode(t, r)
	if r.code != 3 {
		t.Fatalf("audit after a partial mirror: exit %d, want 3\n%s", r.code, r.stderr)
	}
	var missing []string
	for _, im := range rep.Images {
		switch im.Status {
		case "missing":
			missing = append(missing, im.Target)
			k8s := im.Origins[0].Layer == "k8s"
			if im.Optional != k8s {
				t.Errorf("%s: optional=%v, want %v (k8s layer images are warnings)", im.Target, im.Optional, k8s)
			}
		case "present":
			if im.Digest == "" {
				t.Errorf("%s present without a digest", im.Target)
			}
		default:
			t.Errorf("%s: status %s", im.Target, im.Status)
		}
	}
	sort.Strings(missing)
	sort.Strings(notCopied)
	if strings.Join(missing, "\n") != strings.Join(notCopied, "\n") {
		t.Errorf("audit names as missing:\n%s\nnot copied:\n%s", strings.Join(missing, "\n"), strings.Join(notCopied, "\n"))
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "provider image") {
		t.Errorf("no warning for the k8s layer images: %v", rep.Warnings)
	}
	if n := srcProxy.Stats().Requests; n != 0 {
		t.Errorf("audit sent %d requests to the source", n)
	}

	if r := run(t, "", mirrorArgs(c, src, tgt.Host(), "--plain-http")...); r.code != 0 {
		t.Fatalf("full mirror: exit %d\n%s", r.code, r.stderr)
	}
	r = run(t, "", auditArgs(c, srcProxy.Host(), tgt.Host())...)
	if rep = decode(t, r); r.code != 0 || rep.Summary.Present != len(c.images) {
		t.Fatalf("audit after a full mirror: exit %d, %+v\n%s", r.code, rep.Summary, r.stderr)
	}
	if n := srcProxy.Stats().Requests; n != 0 {
		t.Errorf("audit sent %d requests to the source", n)
	}
}

// TestAuditVerifySource: a retagged target image is a mismatch with
// --verify-source; with --platform the platform manifests are compared.
func TestAuditVerifySource(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{})
	if r := run(t, "", mirrorArgs(c, src, tgt.Host(), "--plain-http", "--platform", "linux/amd64")...); r.code != 0 {
		t.Fatalf("mirror: exit %d\n%s", r.code, r.stderr)
	}
	// Retag quay.io/acme/app:1.0 at the target to another image.
	other := imagebuild.SingleArch(imagebuild.OCI, 9999, 1*kib)
	if _, err := imagebuild.PushImage(context.Background(), imagebuild.Target{PlainHTTP: true}, tgt.Host()+external+"/quay.io/acme/app:1.0", other); err != nil {
		t.Fatal(err)
	}

	r := run(t, "", auditArgs(c, src.Host(), tgt.Host(), "--verify-source", "--platform", "linux/amd64")...)
	rep := decode(t, r)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	for _, im := range rep.Images {
		want := "present"
		if strings.HasSuffix(im.Target, "/quay.io/acme/app:1.0") {
			want = "mismatch"
		}
		if string(im.Status) != want {
			t.Errorf("%s: %s (%s), want %s", im.Target, im.Status, im.Reason, want)
		}
	}

	// Without --platform the filtered indexes differ from the source's.
	r = run(t, "", auditArgs(c, src.Host(), tgt.Host(), "--verify-source")...)
	rep = decode(t, r)
	mismatched := 0
	for _, im := range rep.Images {
		if im.Status == "mismatch" {
			mismatched++
		}
	}
	if mismatched != 3 { // the retagged image and both filtered indexes
		t.Errorf("%d mismatches, want 3: %+v", mismatched, rep.Summary)
	}
	// Without --verify-source the retagged image is simply present.
	r = run(t, "", auditArgs(c, src.Host(), tgt.Host())...)
	if rep = decode(t, r); r.code != 0 || rep.Summary.Present != len(c.images) {
		t.Errorf("audit without --verify-source: exit %d, %+v", r.code, rep.Summary)
	}
}
