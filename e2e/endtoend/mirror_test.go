package endtoend

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/report"
)

const external = "/spectro-images"

// forKinds runs f as a subtest against each kind of target registry:
// distribution v3 and distribution 2.8 (what Harbor embeds).
func forKinds(t *testing.T, f func(t *testing.T, kind registry.Kind)) {
	t.Helper()
	for _, k := range registry.Kinds {
		t.Run(k.String(), func(t *testing.T) { f(t, k) })
	}
}

// openUploads lists the upload sessions a registry still holds in its
// storage: distribution 3 and 2.8 keep each under _uploads/ID, with a
// startedat file while it lives. (A cancelled session can leave its
// hashstates directory behind: distribution writes it again after the
// cancel. That is no session.)
func openUploads(t *testing.T, r *registry.Registry) []string {
	t.Helper()
	var open []string
	err := filepath.WalkDir(r.RootDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "startedat" && filepath.Base(filepath.Dir(filepath.Dir(p))) == "_uploads" {
			open = append(open, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return open
}

// setup starts a seeded source and a target registry.
func setup(t *testing.T, targetOpts registry.Options) (*corpus, *registry.Registry, *registry.Registry) {
	t.Helper()
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, targetOpts)
	c := standardCorpus()
	c.seed(t, src)
	return c, src, tgt
}

// mirrorArgs is a mirror command of the corpus into host.
func mirrorArgs(c *corpus, src hoster, host string, extra ...string) []string {
	args := []string{"mirror", "-p", c.profile, "-r", host + external, "--source-plain-http", "--progress", "plain", "-o", "json", "-j", "4"}
	args = append(args, mirrors(src)...)
	return append(args, extra...)
}

func decode(t *testing.T, r result) *report.Report {
	t.Helper()
	var rep report.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, stdout is not a JSON report: %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	return &rep
}

func statusCounts(rep *report.Report) map[string]int {
	out := map[string]int{}
	for _, im := range rep.Images {
		out[string(im.Status)]++
	}
	return out
}

// TestMirrorCopiesEveryImageOnceThenNothing is the main job: every image at
// its target with the source digest, unique bytes sent exactly once, shared
// layers mounted, and a second run that sends nothing.
func TestMirrorCopiesEveryImageOnceThenNothing(t *testing.T) {
	forKinds(t, testMirrorCopiesEveryImageOnceThenNothing)
}

func testMirrorCopiesEveryImageOnceThenNothing(t *testing.T, kind registry.Kind) {
	c, src, tgt := setup(t, registry.Options{Kind: kind})
	proxy := proxied(t, tgt, faultproxy.Faults{})

	dir := t.TempDir()
	reportFile := filepath.Join(dir, "report.csv")
	r := run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http", "--report", reportFile)...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	rep := decode(t, r)
	if n := statusCounts(rep)["copied"]; n != len(c.images) {
		t.Fatalf("copied %d of %d: %v\nstderr: %s", n, len(c.images), statusCounts(rep), r.stderr)
	}
	c.checkTarget(t, tgt, external)

	stats := proxy.Stats()
	unique := imagebuild.SumUniqueBlobBytes(c.builts()...)
	if stats.BytesUploaded != unique {
		t.Errorf("uploaded %d bytes through the proxy, the unique blobs are %d bytes", stats.BytesUploaded, unique)
	}
	if rep.Summary.BytesUploaded != unique {
		t.Errorf("report says %d bytes uploaded, unique blobs are %d", rep.Summary.BytesUploaded, unique)
	}
	for d, n := range stats.UploadsByDigest {
		if n != 1 {
			t.Errorf("blob %s uploaded %d times", d, n)
		}
	}
	if stats.MountsSucceeded == 0 || int64(rep.Summary.BlobsMounted) != stats.MountsSucceeded {
		t.Errorf("mounts: proxy saw %d, report says %d; shared layers should be mounted", stats.MountsSucceeded, rep.Summary.BlobsMounted)
	}
	if !strings.HasPrefix(rep.Images[0].Target, proxy.Host()+external+"/ttl.sh/ubuntu:") {
		t.Errorf("the provider image is not first: %s", rep.Images[0].Target)
	}
	for _, im := range rep.Images {
		if im.Target == proxy.Host()+external+"/gcr.io/acme/multi:3.1" && len(im.Platforms) != 2 {
			t.Errorf("multi-arch image platforms %v", im.Platforms)
		}
	}
	csv, err := os.ReadFile(reportFile)
	if err != nil || strings.Count(string(csv), "\nimage,copied,") != len(c.images) {
		t.Errorf("CSV report %v:\n%s", err, csv)
	}
	if !strings.Contains(r.stderr, "progress: ") || !strings.Contains(r.stderr, "[1/9] copied") {
		t.Errorf("plain progress lines missing from stderr:\n%s", r.stderr)
	}

	// Second run: everything present, no blob byte sent.
	proxy.Reset()
	r = run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http")...)
	rep = decode(t, r)
	if r.code != 0 || statusCounts(rep)["present"] != len(c.images) {
		t.Fatalf("second run: exit %d, %v\nstderr: %s", r.code, statusCounts(rep), r.stderr)
	}
	if s := proxy.Stats(); s.BytesUploaded != 0 || rep.Summary.BytesUploaded != 0 {
		t.Errorf("second run uploaded %d bytes (report %d)", s.BytesUploaded, rep.Summary.BytesUploaded)
	}
}

// TestMirrorMissingSourceImage: an image absent at the source is reported
// missing with exit 3 while every other image completes.
func TestMirrorMissingSourceImage(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{})
	c.images = append(c.images, &corpusImage{ref: "quay.io/acme/absent:9", path: "quay.io/acme/absent:9", layer: "addon"})
	c.profile = c.writeProfile(t, "with-absent")
	r := run(t, "", mirrorArgs(c, src, tgt.Host(), "--plain-http")...)
	rep := decode(t, r)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\nstderr: %s", r.code, r.stderr)
	}
	counts := statusCounts(rep)
	if counts["missing"] != 1 || counts["copied"] != len(c.images)-1 {
		t.Fatalf("statuses %v", counts)
	}
	for _, im := range rep.Images {
		if im.Status == "missing" && !strings.Contains(im.Reason, "quay.io/acme/absent:9") {
			t.Errorf("missing image reason %q does not name it", im.Reason)
		}
	}
	c.images = c.images[:len(c.images)-1]
	c.checkTarget(t, tgt, external)
}

// TestMirrorBasicAuth: the right password copies; a wrong one stops the run
// before copying with one line and exit 1; the password is never printed.
func TestMirrorBasicAuth(t *testing.T) { forKinds(t, testMirrorBasicAuth) }

func testMirrorBasicAuth(t *testing.T, kind registry.Kind) {
	const user, pass = "edge", "s3cret-Pa55word"
	c, src, tgt := setup(t, registry.Options{Kind: kind, Users: map[string]string{user: pass}})

	r := run(t, "wrong-"+pass+"\n", mirrorArgs(c, src, tgt.Host(), "--plain-http", "-u", user, "--password-stdin")...)
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "unauthorized") {
		t.Fatalf("wrong password: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout on an operational error: %s", r.stdout)
	}

	reportFile := filepath.Join(t.TempDir(), "report.json")
	r = run(t, pass+"\n", mirrorArgs(c, src, tgt.Host(), "--plain-http", "-u", user, "--password-stdin", "--debug", "--report", reportFile)...)
	if r.code != 0 {
		t.Fatalf("right password: exit %d\nstderr: %s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt, external)
	written, _ := os.ReadFile(reportFile)
	for what, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "report": string(written)} {
		if strings.Contains(s, pass) {
			t.Errorf("the password appears in %s", what)
		}
	}
}

// TestMirrorTLS: a TLS target is trusted with --ca-file, refused without it
// (a clear x509 line, exit 1), and reachable with --insecure.
func TestMirrorTLS(t *testing.T) { forKinds(t, testMirrorTLS) }

func testMirrorTLS(t *testing.T, kind registry.Kind) {
	c, src, tgt := setup(t, registry.Options{Kind: kind, TLS: true})

	r := run(t, "", mirrorArgs(c, src, tgt.Host())...)
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("without the CA: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = run(t, "", mirrorArgs(c, src, tgt.Host(), "--ca-file", tgt.CAFile)...)
	if r.code != 0 {
		t.Fatalf("with --ca-file: exit %d\nstderr: %s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt, external)

	tgt2 := registry.StartT(t, registry.Options{Kind: kind, TLS: true})
	r = run(t, "", mirrorArgs(c, src, tgt2.Host(), "--insecure")...)
	if r.code != 0 {
		t.Fatalf("with --insecure: exit %d\nstderr: %s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt2, external)
}

// TestMirrorRetriesTransientAnswers: 503 and 429 (with Retry-After) answers
// from the target are retried until every image is in place.
func TestMirrorRetriesTransientAnswers(t *testing.T) { forKinds(t, testMirrorRetriesTransientAnswers) }

func testMirrorRetriesTransientAnswers(t *testing.T, kind registry.Kind) {
	c, src, tgt := setup(t, registry.Options{Kind: kind})
	proxy := proxied(t, tgt, faultproxy.Faults{Seed: 7, Rate503: 0.08, Rate429: 0.05, RetryAfter: 1})
	r := run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	st := proxy.Stats()
	if st.Faults["status-503"] == 0 || st.Faults["status-429"] == 0 {
		t.Fatalf("no faults were injected: %v", st.Faults)
	}
	if !strings.Contains(r.stderr, "retry: ") {
		t.Errorf("retries are not reported on stderr:\n%s", r.stderr)
	}
	c.checkTarget(t, tgt, external)
}

// TestMirrorRegistryRefusingMounts: a registry that will not mount (here:
// every mount names a repository it does not have, as a cross-project mount
// without pull rights on Harbor does) answers with an upload session; the
// blobs are uploaded instead, still at most -j at a time, and no session
// is left open.
func TestMirrorRegistryRefusingMounts(t *testing.T) { forKinds(t, testMirrorRegistryRefusingMounts) }

func testMirrorRegistryRefusingMounts(t *testing.T, kind registry.Kind) {
	c, src, tgt := setup(t, registry.Options{Kind: kind})
	proxy := proxied(t, tgt, faultproxy.Faults{})
	proxy.SetHook(func(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
		if info.Kind == faultproxy.KindMount {
			q := r.URL.Query()
			q.Set("from", "nowhere/"+q.Get("from"))
			r.URL.RawQuery = q.Encode()
		}
		return faultproxy.Fault{}, false
	})
	r := run(t, "", mirrorArgs(c, src, proxy.Host(), "--plain-http")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	c.checkTarget(t, tgt, external)
	st := proxy.Stats()
	if st.ByKind[faultproxy.KindMount] == 0 || st.MountsSucceeded != 0 {
		t.Fatalf("mounts asked %d, succeeded %d: the test did not refuse mounts", st.ByKind[faultproxy.KindMount], st.MountsSucceeded)
	}
	if st.MaxInFlightTransfers > 4 {
		t.Errorf("%d uploads at once with -j 4", st.MaxInFlightTransfers)
	}
	if open := openUploads(t, tgt); len(open) != 0 {
		t.Errorf("%d upload sessions left open at the target after %d refused mounts: %v", len(open), st.ByKind[faultproxy.KindMount], open)
	}
}
