package endtoend

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/helmrepo"
)

// chartArchive builds a Helm chart archive as `helm package` lays it out.
func chartArchive(t *testing.T, name, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	files := map[string]string{
		name + "/Chart.yaml":                "apiVersion: v2\nname: " + name + "\nversion: " + version + "\nappVersion: \"2.4.0\"\ndescription: An edge gateway\ntype: application\n",
		name + "/values.yaml":               "image:\n  repository: quay.io/example/edge-gateway\n  tag: 2.4.0\n",
		name + "/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n",
	}
	for _, f := range []string{name + "/Chart.yaml", name + "/values.yaml", name + "/templates/deployment.yaml"} {
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(files[f])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[f])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// helmRepo serves a Helm HTTP repository under /charts with the given
// archives (NAME -> VERSION -> bytes).
func helmRepo(t *testing.T, charts map[string]map[string][]byte) *httptest.Server {
	t.Helper()
	index := "apiVersion: v1\nentries:\n"
	files := map[string][]byte{}
	for name, versions := range charts {
		index += "  " + name + ":\n"
		for v, data := range versions {
			file := fmt.Sprintf("%s-%s.tgz", name, v)
			files["/charts/"+file] = data
			index += fmt.Sprintf("    - apiVersion: v2\n      name: %s\n      version: %s\n      digest: %x\n      urls: [%s]\n", name, v, sha256.Sum256(data), file)
		}
	}
	files["/charts/index.yaml"] = []byte(index)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// chartProfile writes a profile with one add-on pack that lists charts.
func chartProfile(t *testing.T, charts ...[3]string) string {
	t.Helper()
	values := "pack:\n  content:\n    charts:\n"
	for _, c := range charts {
		values += fmt.Sprintf("      - repo: %q\n        name: %s\n        version: %q\n", c[0], c[1], c[2])
	}
	doc := map[string]any{"metadata": map[string]any{"name": "charts"}, "spec": map[string]any{"template": map[string]any{
		"packs": []any{map[string]any{"name": "gateway", "type": "helm", "layer": "addon", "version": "1.0.0", "values": values}}}}}
	raw, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "charts.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmPull reads a chart from a registry as Helm does: the tag's manifest,
// its Helm config, and the chart archive layer.
func helmPull(t *testing.T, ref string) (config map[string]any, archive []byte) {
	t.Helper()
	ctx := context.Background()
	name, tag, _ := cutTag(ref)
	repo, err := imagebuild.Target{PlainHTTP: true}.Repository(name)
	if err != nil {
		t.Fatal(err)
	}
	desc, rc, err := repo.FetchReference(ctx, tag)
	if err != nil {
		t.Fatalf("helm pull %s: %v", ref, err)
	}
	raw, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != helmrepo.ConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != helmrepo.ChartMediaType {
		t.Fatalf("%s is not an OCI Helm chart: config %s, layers %+v", ref, m.Config.MediaType, m.Layers)
	}
	cfg, err := content.FetchAll(ctx, repo, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cfg, &config); err != nil {
		t.Fatal(err)
	}
	if archive, err = content.FetchAll(ctx, repo, m.Layers[0]); err != nil {
		t.Fatal(err)
	}
	return config, archive
}

// TestCharts: a chart from an HTTP Helm repository and an oci:// chart are
// mirrored where Helm pulls them, audited, saved and pushed; a tarball URL
// is reported unresolved.
func TestCharts(t *testing.T) {
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{})
	gateway := chartArchive(t, "edge-gateway", "1.2.0+build.7")
	ociChart := chartArchive(t, "edge-agent", "0.9.1")
	repoSrv := helmRepo(t, map[string]map[string][]byte{"edge-gateway": {"1.2.0+build.7": gateway}, "edge-agent": {"0.9.1": ociChart}})
	repoURL := repoSrv.URL + "/charts"
	repoHost := strings.TrimPrefix(repoSrv.URL, "http://")

	// The oci:// chart: put edge-agent into the source registry as an OCI chart.
	ctx := context.Background()
	store, err := helmrepo.Chart(ctx, nil, repoURL, "edge-agent", "0.9.1", "0.9.1")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := imagebuild.Target{PlainHTTP: true}.Repository(src.Host() + "/charts.example.io/stable/edge-agent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oras.Copy(ctx, store, "0.9.1", dst, "0.9.1", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}

	profile := chartProfile(t,
		[3]string{repoURL, "edge-gateway", "1.2.0+build.7"},
		[3]string{"oci://charts.example.io/stable", "edge-agent", "0.9.1"},
		[3]string{"https://example.com/charts/old-1.0.0.tgz", "old", "1.0.0"})
	// The Helm repository's host has a port, so a mapping names its target.
	args := []string{"mirror", "-p", profile, "-r", tgt.Host() + external, "--plain-http", "--source-plain-http", "--progress", "none", "-o", "json",
		"--source-mirror", "charts.example.io=" + src.Host() + "/charts.example.io",
		"--mapping", repoHost + "/charts=" + tgt.Host() + external + "/charts.local"}
	r := run(t, "", args...)
	rep := decode(t, r)
	if r.code != 3 || len(rep.Charts) != 3 {
		t.Fatalf("mirror: exit %d (want 3: one chart is a tarball URL), %d charts\n%s", r.code, len(rep.Charts), r.stderr)
	}
	want := map[string]string{"edge-gateway": "copied", "edge-agent": "copied", "old": "unresolved"}
	for _, c := range rep.Charts {
		name := c.Source[strings.LastIndex(c.Source, "/")+1:]
		name = name[:strings.Index(name, ":")]
		if string(c.Status) != want[name] {
			t.Errorf("chart %s: %s (%s), want %s", c.Source, c.Status, c.Reason, want[name])
		}
	}

	config, archive := helmPull(t, tgt.Host()+external+"/charts.local/edge-gateway:1.2.0_build.7")
	if !bytes.Equal(archive, gateway) || config["name"] != "edge-gateway" || config["version"] != "1.2.0+build.7" || config["appVersion"] != "2.4.0" {
		t.Errorf("pulled edge-gateway: config %v, archive equal %v", config, bytes.Equal(archive, gateway))
	}
	if _, archive := helmPull(t, tgt.Host()+external+"/charts.example.io/stable/edge-agent:0.9.1"); !bytes.Equal(archive, ociChart) {
		t.Errorf("the oci:// chart's archive changed on the way")
	}

	audit := append([]string{"audit"}, args[1:]...)
	r = run(t, "", audit...)
	for _, c := range decode(t, r).Charts {
		if c.Status != "present" && c.Status != "unresolved" {
			t.Errorf("audit: chart %s is %s", c.Source, c.Status)
		}
	}

	// save and push carry the charts too.
	dir := filepath.Join(t.TempDir(), "bundle")
	save := []string{"save", "-p", profile, "-O", dir, "--source-plain-http", "--progress", "none", "-o", "json",
		"--source-mirror", "charts.example.io=" + src.Host() + "/charts.example.io"}
	if r = run(t, "", save...); r.code != 3 {
		t.Fatalf("save: exit %d\n%s", r.code, r.stderr)
	}
	tgt2 := registry.StartT(t, registry.Options{})
	r = run(t, "", "push", "--bundle", dir, "-r", tgt2.Host()+external, "--plain-http", "--progress", "none", "-o", "json",
		"--mapping", repoHost+"/charts="+tgt2.Host()+external+"/charts.local")
	if r.code != 0 {
		t.Fatalf("push: exit %d\n%s", r.code, r.stderr)
	}
	if _, archive := helmPull(t, tgt2.Host()+external+"/charts.local/edge-gateway:1.2.0_build.7"); !bytes.Equal(archive, gateway) {
		t.Errorf("the chart pushed from the bundle differs")
	}
}

// TestChartsOnlyTargetIsChecked: a profile that lists only charts still
// has its target registry checked before anything moves, so a wrong
// password is one line and exit 1, not a failure per chart.
func TestChartsOnlyTargetIsChecked(t *testing.T) {
	repo := helmRepo(t, map[string]map[string][]byte{"edge-agent": {"0.9.1": chartArchive(t, "edge-agent", "0.9.1")}})
	profile := chartProfile(t, [3]string{repo.URL + "/charts", "edge-agent", "0.9.1"})
	tgt := registry.StartT(t, registry.Options{Users: map[string]string{"edge": "right-Pa55"}})
	repoHost := strings.TrimPrefix(repo.URL, "http://")
	r := run(t, "wrong-Pa55\n", "mirror", "-p", profile, "-r", tgt.Host()+external, "--plain-http", "--source-plain-http",
		"-u", "edge", "--password-stdin", "-o", "json", "--mapping", repoHost+"/charts="+tgt.Host()+external+"/charts.local")
	line := strings.TrimSpace(r.stderr)
	if r.code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "unauthorized") || r.stdout != "" {
		t.Fatalf("exit %d, want 1 with one line saying unauthorized\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
