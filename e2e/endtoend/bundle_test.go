package endtoend

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"oras.land/oras-go/v2/content/oci"

	"github.com/edgemirror/edgemirror/bundle"
	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// saveArgs saves the corpus from src into out.
func saveArgs(c *corpus, src hoster, out string, extra ...string) []string {
	args := []string{"save", "-p", c.profile, "-O", out, "--source-plain-http", "--progress", "none", "-o", "json", "-j", "4"}
	args = append(args, mirrors(src)...)
	return append(args, extra...)
}

// checkLayout reads a bundle with oras-go's OCI store, as another OCI tool
// would, and checks every image is there under its canonical reference with
// the source digest, annotated with its origin.
func checkLayout(t *testing.T, c *corpus, store interface {
	Tags(context.Context, string, func([]string) error) error
}, resolve func(string) (string, map[string]string, error)) {
	t.Helper()
	for _, ci := range c.images {
		ref := ci.path
		if ci.pin {
			name, _, _ := cutTag(ci.path)
			ref = name + "@" + ci.built.Descriptor.Digest.String()
		}
		dgst, ann, err := resolve(ref)
		if err != nil {
			t.Errorf("bundle lacks %s: %v", ref, err)
			continue
		}
		if dgst != ci.built.Descriptor.Digest.String() {
			t.Errorf("bundle %s is %s, source %s", ref, dgst, ci.built.Descriptor.Digest)
		}
		if ann[bundle.AnnotationSource] != ci.ref || !strings.Contains(ann[bundle.AnnotationOrigins], `"layer":"`+ci.layer+`"`) {
			t.Errorf("bundle %s annotations %v", ref, ann)
		}
	}
	var tags []string
	_ = store.Tags(context.Background(), "", func(ts []string) error { tags = append(tags, ts...); return nil })
	if !strings.Contains(strings.Join(tags, " "), "edgemirror.local/profiles:bundle") {
		t.Errorf("the profiles are not in the bundle: %v", tags)
	}
}

// TestSaveAndPushBundle: save writes an OCI layout that other tools read;
// saving again reads no source blob; push puts every image at its target
// with each blob sent once; the same from a .tar read in place; plan and
// audit work from a bundle.
func TestSaveAndPushBundle(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{})
	srcProxy := proxied(t, src, faultproxy.Faults{})
	dir := filepath.Join(t.TempDir(), "bundle")

	r := run(t, "", saveArgs(c, srcProxy, dir)...)
	if r.code != 0 {
		t.Fatalf("save: exit %d\n%s", r.code, r.stderr)
	}
	if rep := decode(t, r); rep.Summary.Copied != len(c.images) {
		t.Fatalf("save: %+v", rep.Summary)
	}
	ctx := context.Background()
	store, err := oci.NewFromFS(ctx, os.DirFS(dir))
	if err != nil {
		t.Fatalf("oras-go cannot read the layout: %v", err)
	}
	checkLayout(t, c, store, func(ref string) (string, map[string]string, error) {
		d, err := store.Resolve(ctx, ref)
		return d.Digest.String(), d.Annotations, err
	})

	srcProxy.Reset()
	if r = run(t, "", saveArgs(c, srcProxy, dir)...); r.code != 0 || decode(t, r).Summary.Present != len(c.images) {
		t.Fatalf("second save: exit %d\n%s", r.code, r.stdout)
	}
	if n := srcProxy.Stats().ByKind[faultproxy.KindBlobGet]; n != 0 {
		t.Errorf("the second save fetched %d blobs", n)
	}

	tgtProxy := proxied(t, tgt, faultproxy.Faults{})
	push := []string{"push", "--bundle", dir, "-r", tgtProxy.Host() + external, "--plain-http", "--progress", "none", "-o", "json"}
	r = run(t, "", push...)
	if r.code != 0 || decode(t, r).Summary.Copied != len(c.images) {
		t.Fatalf("push: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	c.checkTarget(t, tgt, external)
	if up, unique := tgtProxy.Stats().BytesUploaded, imagebuild.SumUniqueBlobBytes(c.builts()...); up != unique {
		t.Errorf("push uploaded %d bytes, unique %d", up, unique)
	}
	if r = run(t, "", push...); r.code != 0 || decode(t, r).Summary.Present != len(c.images) {
		t.Errorf("second push: exit %d\n%s", r.code, r.stdout)
	}

	// The same through a .tar, read without unpacking.
	tarball := filepath.Join(t.TempDir(), "bundle.tar")
	if r = run(t, "", saveArgs(c, src, tarball)...); r.code != 0 {
		t.Fatalf("save .tar: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(tarball + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the working directory of the tar was left: %v", err)
	}
	ts, err := oci.NewFromTar(ctx, tarball)
	if err != nil {
		t.Fatalf("oras-go cannot read the tar: %v", err)
	}
	checkLayout(t, c, ts, func(ref string) (string, map[string]string, error) {
		d, err := ts.Resolve(ctx, ref)
		return d.Digest.String(), d.Annotations, err
	})
	tgt2 := registry.StartT(t, registry.Options{})
	r = run(t, "", "plan", "--bundle", tarball, "-r", tgt2.Host()+external, "-o", "json")
	if rep := decode(t, r); r.code != 0 || rep.Summary.Planned != len(c.images) {
		t.Errorf("plan --bundle: exit %d, %+v", r.code, rep.Summary)
	}
	r = run(t, "", "push", "--bundle", tarball, "-r", tgt2.Host()+external, "--plain-http", "--progress", "none", "-o", "json")
	if r.code != 0 {
		t.Fatalf("push .tar: exit %d\n%s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt2, external)
	r = run(t, "", "audit", "--bundle", tarball, "-r", tgt2.Host()+external, "--plain-http", "--verify-source", "--progress", "none", "-o", "json")
	if rep := decode(t, r); r.code != 0 || rep.Summary.Present != len(c.images) {
		t.Errorf("audit --bundle --verify-source: exit %d, %+v", r.code, rep.Summary)
	}
}

// TestSaveResumesPartialBlob: a save whose large blob download keeps being
// cut leaves a partial blob; the next save reads only the rest.
func TestSaveResumesPartialBlob(t *testing.T) {
	src := registry.StartT(t, registry.Options{})
	c := largeLayerCorpus()
	c.seed(t, src)
	big := c.images[0].built.Layers[0]
	proxy := proxied(t, src, faultproxy.Faults{})
	var reads atomic.Int64
	proxy.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindBlobGet && strings.HasSuffix(r.URL.Path, big.Digest.String()) {
			if reads.Add(1) == 1 {
				return faultproxy.Cut(big.Size / 4), true // the first read is cut after 16 MiB
			}
			return faultproxy.Respond(http.StatusForbidden, nil, nil), true // and the source then refuses it
		}
		return faultproxy.Fault{}, false
	})
	dir := filepath.Join(t.TempDir(), "bundle")
	r := run(t, "", saveArgs(c, proxy, dir)...)
	if r.code != 3 {
		t.Fatalf("save with cut reads: exit %d, want 3\n%s", r.code, r.stderr)
	}
	first := proxy.Stats().BytesDownloaded
	proxy.SetHook(nil)
	proxy.Reset()
	if r = run(t, "", saveArgs(c, proxy, dir)...); r.code != 0 {
		t.Fatalf("second save: exit %d\n%s", r.code, r.stderr)
	}
	second := proxy.Stats().BytesDownloaded
	if second > big.Size-first+1*mib {
		t.Errorf("the second save downloaded %d bytes; the first had %d of the %d-byte layer", second, first, big.Size)
	}
	t.Logf("first save read %.1f MiB before giving up, the second %.1f MiB", float64(first)/mib, float64(second)/mib)
}
