package helmrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

// helmTestTime is the modification time of every file in the test archives.
var helmTestTime = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

type helmTestFile struct{ name, body string }

// helmTestArchive packs files as `helm package` does: a gzipped tar.
func helmTestArchive(t *testing.T, files ...helmTestFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: helmTestTime, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func helmTestChartYAML(name, version string) string {
	return `apiVersion: v2
name: ` + name + `
version: ` + version + `
appVersion: "2.3.4"
description: |
  A chart for
  tests
home: https://example.com/mychart
sources:
  - https://github.com/example/mychart
keywords: [web, test]
maintainers:
  - name: Jane Doe
    email: jane@example.com
  - name: Bob
type: application
annotations:
  category: Testing
  org.opencontainers.image.title: not the title
`
}

// helmTestChart is a complete chart archive: Chart.yaml, values.yaml and a
// template.
func helmTestChart(t *testing.T, dir, name, version string) []byte {
	return helmTestArchive(t,
		helmTestFile{dir + "/Chart.yaml", helmTestChartYAML(name, version)},
		helmTestFile{dir + "/values.yaml", "replicaCount: 1\nimage:\n  repository: nginx\n  tag: \"1.25\"\n"},
		helmTestFile{dir + "/templates/deployment.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n"},
	)
}

func helmSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// helmTestRepo serves Helm HTTP repositories on 127.0.0.1: /stable (YAML
// index), /json (JSON index), /private (basic auth user:s3cret), /bad
// (broken entries), /html (not an index); anything else is 404. Under
// /chunked/... the same files come without a Content-Length.
type helmTestRepo struct {
	url      string // http://127.0.0.1:PORT
	files    map[string][]byte
	archives map[string][]byte // by "name-version"
}

func newHelmTestRepo(t *testing.T) *helmTestRepo {
	t.Helper()
	r := &helmTestRepo{files: map[string][]byte{}, archives: map[string][]byte{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/private/") {
			if u, p, ok := req.BasicAuth(); !ok || u != "user" || p != "s3cret" {
				http.Error(w, "who are you", http.StatusUnauthorized)
				return
			}
		}
		p, chunked := strings.CutPrefix(req.URL.Path, "/chunked")
		b, ok := r.files[p]
		if !ok {
			http.NotFound(w, req)
			return
		}
		if chunked { // no Content-Length: the size is known only by reading
			w.(http.Flusher).Flush()
		}
		_, _ = w.Write(b)
	}))
	// The files name the server's address; fill them before it starts.
	r.url = "http://" + srv.Listener.Addr().String()

	c100 := helmTestChart(t, "mychart", "mychart", "1.0.0")
	c110 := helmTestChart(t, "mychart", "mychart", "1.1.0")
	other := helmTestChart(t, "other", "other", "v2.0.0")
	r.archives["mychart-1.0.0"], r.archives["mychart-1.1.0"], r.archives["other-v2.0.0"] = c100, c110, other
	r.files["/stable/charts/mychart-1.0.0.tgz"] = c100
	r.files["/stable/charts/mychart-1.1.0.tgz"] = c110
	r.files["/stable/other-v2.0.0.tgz"] = other
	r.files["/stable/index.yaml"] = []byte(`apiVersion: v1
entries:
  mychart:
  - apiVersion: v2
    appVersion: 2.3.4
    created: "2024-05-02T00:00:00Z"
    description: From the index, not the chart
    digest: ` + helmSHA(c110) + `
    name: mychart
    urls:
    - ` + r.url + `/stable/charts/mychart-1.1.0.tgz
    version: 1.1.0
  - apiVersion: v2
    appVersion: 2.3.4
    created: "2024-05-01T00:00:00Z"
    digest: ` + helmSHA(c100) + `
    name: mychart
    type: application
    urls:
    - charts/mychart-1.0.0.tgz
    version: 1.0.0
  other:
  - apiVersion: v2
    digest: ` + helmSHA(other) + `
    name: other
    urls: [other-v2.0.0.tgz]
    version: v2.0.0
generated: "2024-05-02T00:00:00Z"
`)

	idx, err := json.Marshal(map[string]any{"apiVersion": "v1", "entries": map[string]any{
		"mychart": []map[string]any{{"name": "mychart", "version": "1.0.0", "digest": helmSHA(c100), "urls": []string{"mychart-1.0.0.tgz"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.files["/json/index.yaml"] = idx
	r.files["/json/mychart-1.0.0.tgz"] = c100

	r.files["/private/index.yaml"] = []byte(`apiVersion: v1
entries:
  mychart:
  - {name: mychart, version: 1.0.0, urls: [mychart-1.0.0.tgz], digest: ` + helmSHA(c100) + `}
`)
	r.files["/private/mychart-1.0.0.tgz"] = c100

	noChartYAML := helmTestArchive(t,
		helmTestFile{"nochart/values.yaml", "a: 1\n"},
		helmTestFile{"nochart/templates/cm.yaml", "kind: ConfigMap\n"})
	mismatch := helmTestChart(t, "mismatch", "someone-else", "9.0.0")
	notGzip := []byte("this is not a chart\n")
	r.files["/bad/baddigest-1.0.0.tgz"] = c100
	r.files["/bad/nochart-1.0.0.tgz"] = noChartYAML
	r.files["/bad/mismatch-1.0.0.tgz"] = mismatch
	r.files["/bad/notgzip-1.0.0.tgz"] = notGzip
	r.files["/bad/index.yaml"] = []byte(`apiVersion: v1
entries:
  baddigest:
  - {name: baddigest, version: 1.0.0, urls: [baddigest-1.0.0.tgz], digest: ` + helmSHA([]byte("another archive")) + `}
  nochart:
  - {name: nochart, version: 1.0.0, urls: [nochart-1.0.0.tgz], digest: ` + helmSHA(noChartYAML) + `}
  mismatch:
  - {name: mismatch, version: 1.0.0, urls: [mismatch-1.0.0.tgz], digest: ` + helmSHA(mismatch) + `}
  notgzip:
  - {name: notgzip, version: 1.0.0, urls: [notgzip-1.0.0.tgz]}
  gone:
  - {name: gone, version: 1.0.0, urls: [gone-1.0.0.tgz]}
  nourl:
  - {name: nourl, version: 1.0.0, urls: []}
`)
	r.files["/html/index.yaml"] = []byte("<html><body>Sign in</body></html>\n")

	srv.Start()
	t.Cleanup(srv.Close)
	return r
}

// helmRead fetches a blob whole.
func helmRead(t *testing.T, s oras.ReadOnlyTarget, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.FetchAll(context.Background(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHelmChart(t *testing.T) {
	repo := newHelmTestRepo(t)
	hostURL := strings.TrimPrefix(repo.url, "http://")
	wantConfig110 := `{"name":"mychart","home":"https://example.com/mychart","sources":["https://github.com/example/mychart"],` +
		`"version":"1.1.0","description":"A chart for tests ","keywords":["web","test"],` +
		`"maintainers":[{"name":"Jane Doe","email":"jane@example.com"},{"name":"Bob"}],"apiVersion":"v2","appVersion":"2.3.4",` +
		`"annotations":{"category":"Testing","org.opencontainers.image.title":"not the title"},"type":"application"}`
	tests := []struct {
		name, repo, chart, version, tag string
		archive                         string // key of repo.archives
		wantVersion                     string // in the config
		wantTag                         string
	}{
		{name: "relative url", repo: repo.url + "/stable", chart: "mychart", version: "1.0.0", tag: "1.0.0", archive: "mychart-1.0.0", wantVersion: "1.0.0"},
		{name: "absolute url", repo: repo.url + "/stable/", chart: "mychart", version: "1.1.0", tag: "1.1.0", archive: "mychart-1.1.0", wantVersion: "1.1.0"},
		{name: "v asked, plain in index", repo: repo.url + "/stable", chart: "mychart", version: "v1.1.0", tag: "v1.1.0", archive: "mychart-1.1.0", wantVersion: "1.1.0"},
		{name: "plain asked, v in index", repo: repo.url + "/stable", chart: "other", version: "2.0.0", tag: "2.0.0", archive: "other-v2.0.0", wantVersion: "v2.0.0"},
		{name: "json index", repo: repo.url + "/json", chart: "mychart", version: "1.0.0", tag: "1.0.0", archive: "mychart-1.0.0", wantVersion: "1.0.0"},
		{name: "basic auth from userinfo", repo: "http://user:s3cret@" + hostURL + "/private", chart: "mychart", version: "1.0.0", tag: "1.0.0", archive: "mychart-1.0.0", wantVersion: "1.0.0"},
		{name: "empty tag is the version", repo: repo.url + "/stable", chart: "mychart", version: "1.0.0", archive: "mychart-1.0.0", wantVersion: "1.0.0", wantTag: "1.0.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store, err := Chart(ctx, nil, tc.repo, tc.chart, tc.version, tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			tag := tc.tag
			if tc.wantTag != "" {
				tag = tc.wantTag
			}
			desc, err := store.Resolve(ctx, tag)
			if err != nil {
				t.Fatalf("resolve %s: %v", tag, err)
			}
			if desc.MediaType != ocispec.MediaTypeImageManifest {
				t.Fatalf("manifest media type %s", desc.MediaType)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(helmRead(t, store, desc), &m); err != nil {
				t.Fatal(err)
			}
			if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("schemaVersion %d mediaType %q", m.SchemaVersion, m.MediaType)
			}
			if m.Config.MediaType != ConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != ChartMediaType {
				t.Fatalf("not a Helm chart manifest: %+v", m)
			}
			if got, want := helmRead(t, store, m.Layers[0]), repo.archives[tc.archive]; !bytes.Equal(got, want) {
				t.Errorf("layer is not the served archive (%d bytes, want %d)", len(got), len(want))
			}
			config := helmRead(t, store, m.Config)
			var cfg map[string]any
			if err := json.Unmarshal(config, &cfg); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"urls", "digest", "created", "generated"} {
				if _, ok := cfg[k]; ok {
					t.Errorf("config has index field %q: %s", k, config)
				}
			}
			if cfg["name"] != tc.chart || cfg["version"] != tc.wantVersion || cfg["appVersion"] != "2.3.4" || cfg["apiVersion"] != "v2" {
				t.Errorf("config %s", config)
			}
			if m.Annotations[ocispec.AnnotationTitle] != tc.chart || m.Annotations[ocispec.AnnotationVersion] != tc.wantVersion {
				t.Errorf("annotations %v", m.Annotations)
			}
			// The graph is complete: it copies by tag like any image.
			if _, err := oras.Copy(ctx, store, tag, memory.New(), tag, oras.DefaultCopyOptions); err != nil {
				t.Errorf("copy: %v", err)
			}
			// Same chart, same bytes: the manifest digest is stable.
			again, err := Chart(ctx, nil, tc.repo, tc.chart, tc.version, tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			if d2, err := again.Resolve(ctx, tag); err != nil || d2.Digest != desc.Digest {
				t.Errorf("second fetch: %v %v, want %v", d2.Digest, err, desc.Digest)
			}
			if tc.archive != "mychart-1.1.0" {
				return
			}
			// As helm push writes it: json.Marshal(chart.Metadata) and generateOCIAnnotations.
			if string(config) != wantConfig110 {
				t.Errorf("config\n got %s\nwant %s", config, wantConfig110)
			}
			wantAnn := map[string]string{
				ocispec.AnnotationTitle:       "mychart",
				ocispec.AnnotationVersion:     "1.1.0",
				ocispec.AnnotationDescription: "A chart for tests ",
				ocispec.AnnotationURL:         "https://example.com/mychart",
				ocispec.AnnotationSource:      "https://github.com/example/mychart",
				ocispec.AnnotationAuthors:     "Jane Doe (jane@example.com), Bob",
				ocispec.AnnotationCreated:     "2024-05-01T10:00:00Z",
				"category":                    "Testing",
			}
			if !maps.Equal(m.Annotations, wantAnn) {
				t.Errorf("annotations\n got %v\nwant %v", m.Annotations, wantAnn)
			}
		})
	}
}

func TestHelmChartErrors(t *testing.T) {
	repo := newHelmTestRepo(t)
	host := strings.TrimPrefix(repo.url, "http://")
	small := defaultHelmLimits
	small.index = 100
	tiny := defaultHelmLimits
	tiny.archive = 64
	tests := []struct {
		name, repo, chart, version string
		lim                        *helmLimits
		want                       string   // the whole message when exact, else a part
		exact                      bool     //
		never                      []string // must not appear
	}{
		{name: "index 404", repo: repo.url + "/missing", chart: "hello-universe", version: "1.1.0", exact: true,
			want: "chart hello-universe 1.1.0 from " + repo.url + "/missing: index.yaml: 404 Not Found"},
		{name: "no such version", repo: repo.url + "/stable", chart: "mychart", version: "9.9.9", exact: true,
			want: "chart mychart 9.9.9 from " + repo.url + "/stable: no version 9.9.9 (the repository has 1.0.0, 1.1.0)"},
		{name: "no such chart", repo: repo.url + "/stable", chart: "x", version: "1.0.0", exact: true,
			want: "chart x 1.0.0 from " + repo.url + "/stable: no chart named x in the repository"},
		{name: "chart name case", repo: repo.url + "/stable", chart: "MyChart", version: "1.0.0",
			want: "no chart named MyChart in the repository (did you mean mychart?)"},
		{name: "digest mismatch", repo: repo.url + "/bad", chart: "baddigest", version: "1.0.0",
			want: "chart baddigest 1.0.0 from " + repo.url + "/bad: archive digest mismatch: index.yaml says " + helmSHA([]byte("another archive")) + ", the archive is sha256:" + helmSHA(repo.archives["mychart-1.0.0"]), exact: true},
		{name: "no Chart.yaml", repo: repo.url + "/bad", chart: "nochart", version: "1.0.0", exact: true,
			want: "chart nochart 1.0.0 from " + repo.url + "/bad: Chart.yaml not found in the archive"},
		{name: "name and version mismatch", repo: repo.url + "/bad", chart: "mismatch", version: "1.0.0",
			want: "chart mismatch 1.0.0 from " + repo.url + "/bad: the archive's Chart.yaml says name=someone-else version=9.0.0"},
		{name: "archive not gzip", repo: repo.url + "/bad", chart: "notgzip", version: "1.0.0", want: ": the archive is not a gzip file"},
		{name: "archive 404", repo: repo.url + "/bad", chart: "gone", version: "1.0.0", exact: true,
			want: "chart gone 1.0.0 from " + repo.url + "/bad: archive " + repo.url + "/bad/gone-1.0.0.tgz: 404 Not Found"},
		{name: "entry without url", repo: repo.url + "/bad", chart: "nourl", version: "1.0.0", want: ": index.yaml lists no URL for version 1.0.0"},
		{name: "not an index", repo: repo.url + "/html", chart: "mychart", version: "1.0.0", want: ": index.yaml: not a Helm chart repository index"},
		{name: "tgz url", repo: repo.url + "/stable/charts/mychart-1.0.0.tgz", chart: "mychart", version: "1.0.0",
			want: ": the repository URL is a chart archive; give the chart repository URL"},
		{name: "tar.gz url", repo: "https://charts.example.com/mychart-1.0.0.tar.gz", chart: "mychart", version: "1.0.0",
			want: "chart mychart 1.0.0 from https://charts.example.com/mychart-1.0.0.tar.gz: the repository URL is a chart archive"},
		{name: "index.yaml url", repo: repo.url + "/stable/index.yaml", chart: "mychart", version: "1.0.0", want: ": the repository URL names index.yaml; give the directory holding it"},
		{name: "oci url", repo: "oci://registry.example.com/charts", chart: "mychart", version: "1.0.0", want: "is an OCI registry, not a Helm HTTP repository"},
		{name: "no scheme", repo: "charts.example.com/stable", chart: "mychart", version: "1.0.0", want: "must start with http:// or https://"},
		{name: "userinfo and query hidden", repo: "http://user:s3cret@" + host + "/private?token=abc", chart: "mychart", version: "9.9.9", exact: true,
			want:  "chart mychart 9.9.9 from " + repo.url + "/private?xxxxx: no version 9.9.9 (the repository has 1.0.0)",
			never: []string{"s3cret", "user", "token", "abc"}},
		{name: "wrong password hidden", repo: "http://user:wrong-pw@" + host + "/private", chart: "mychart", version: "1.0.0", exact: true,
			want:  "chart mychart 1.0.0 from " + repo.url + "/private: index.yaml: 401 Unauthorized",
			never: []string{"wrong-pw", "user"}},
		{name: "unreachable, credentials hidden", repo: "http://user:s3cret@" + closedAddr(t) + "/x?sig=abc", chart: "mychart", version: "1.0.0",
			want: "index.yaml: ", never: []string{"s3cret", "user", "sig", "abc"}},
		{name: "index too large", repo: repo.url + "/stable", chart: "mychart", version: "1.0.0", lim: &small,
			want: ": index.yaml: larger than the 100 bytes allowed"},
		{name: "index too large, chunked", repo: repo.url + "/chunked/stable", chart: "mychart", version: "1.0.0", lim: &small, exact: true,
			want: "chart mychart 1.0.0 from " + repo.url + "/chunked/stable: index.yaml: larger than the 100 bytes allowed"},
		{name: "archive too large", repo: repo.url + "/stable", chart: "mychart", version: "1.0.0", lim: &tiny,
			want: "/stable/charts/mychart-1.0.0.tgz: larger than the 64 bytes allowed ("},
		{name: "archive too large, chunked", repo: repo.url + "/chunked/json", chart: "mychart", version: "1.0.0", lim: &tiny, exact: true,
			want: "chart mychart 1.0.0 from " + repo.url + "/chunked/json: archive " + repo.url + "/chunked/json/mychart-1.0.0.tgz: larger than the 64 bytes allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := defaultHelmLimits
			if tc.lim != nil {
				lim = *tc.lim
			}
			_, err := helmChart(context.Background(), nil, tc.repo, tc.chart, tc.version, tc.version, lim)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if tc.exact && msg != tc.want || !strings.Contains(msg, tc.want) {
				t.Errorf("error\n got %s\nwant %s", msg, tc.want)
			}
			for _, s := range tc.never {
				if strings.Contains(msg, s) {
					t.Errorf("error shows %q: %s", s, msg)
				}
			}
		})
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

func TestHelmChartCancelled(t *testing.T) {
	repo := newHelmTestRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Chart(ctx, nil, repo.url+"/stable", "mychart", "1.0.0", "1.0.0")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// TestHelmMetadata checks Chart.yaml → config JSON; every want is what
// Helm v3.22.0 (loader.LoadArchive, then json.Marshal(chart.Metadata), as
// `helm push` does) printed for the same Chart.yaml, apiVersion aside.
func TestHelmMetadata(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"field order and omitempty", "version: 1.2.3\nname: a\napiVersion: v2\ntype: library\nkubeVersion: '>=1.25'\ndeprecated: true\nicon: https://i/x.png\n",
			`{"name":"a","version":"1.2.3","icon":"https://i/x.png","apiVersion":"v2","deprecated":true,"kubeVersion":"\u003e=1.25","type":"library"}`},
		{"float appVersion as YAML 1.1 float32", "name: a\nversion: 1.0.0\nappVersion: 1.10\n",
			`{"name":"a","version":"1.0.0","appVersion":"1.1"}`},
		{"numbers and booleans become text", "name: a\nversion: 1.0.0\nappVersion: 7\nkeywords: [on, \"on\", 3]\nannotations: {a: 1, b: true, c: x}\n",
			`{"name":"a","version":"1.0.0","keywords":["true","on","3"],"appVersion":"7","annotations":{"a":"1","b":"true","c":"x"}}`},
		{"YAML 1.1 booleans", "name: a\nversion: 1.0.0\ndeprecated: yes\nicon: n\nhome: 'n'\n", `{"name":"a","home":"n","version":"1.0.0","icon":"false","deprecated":true}`},
		{"unquoted date stays text", "name: a\nversion: 1.0.0\nappVersion: 2024-01-15\n", `{"name":"a","version":"1.0.0","appVersion":"2024-01-15"}`},
		{"keys match case-insensitively", "NAME: a\nVersion: 1.0.0\nappversion: '1'\n", `{"name":"a","version":"1.0.0","appVersion":"1"}`},
		{"unknown keys dropped", "name: a\nversion: 1.0.0\nurls: [x]\ndigest: abc\ncreated: '2024-01-01'\n", `{"name":"a","version":"1.0.0"}`},
		{"strings sanitized", "name: a\nversion: 1.0.0\ndescription: \"two\\nlines\\ttab\\u0007\"\nmaintainers:\n- name: \"J\\nD\"\n",
			`{"name":"a","version":"1.0.0","description":"two lines tab","maintainers":[{"name":"J D"}]}`},
		{"dependencies", "name: a\nversion: 1.0.0\ndependencies:\n- name: b\n  version: ~1.2\n  repository: https://r\n  enabled: yes\n  import-values: [x, {child: c, parent: p}]\n  alias: bee\n",
			`{"name":"a","version":"1.0.0","dependencies":[{"name":"b","version":"~1.2","repository":"https://r","enabled":true,"import-values":["x",{"child":"c","parent":"p"}],"alias":"bee"}]}`},
		{"anchors and merge keys", "name: &n a\nversion: 1.0.0\nhome: *n\nmaintainers:\n- &m {name: x, email: e}\n- {<<: *m, name: z}\n",
			`{"name":"a","home":"a","version":"1.0.0","maintainers":[{"name":"x","email":"e"},{"name":"z","email":"e"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m helmMetadata
			if err := helmUnmarshalYAML([]byte(tc.yaml), &m); err != nil {
				t.Fatal(err)
			}
			if err := m.sanitize(); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(&m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestHelmReadArchive(t *testing.T) {
	chart := "apiVersion: v1\nname: old\nversion: 0.1.0\n"
	tests := []struct {
		name    string
		files   []helmTestFile
		want    string // config JSON
		wantErr string
	}{
		{name: "any directory name, requirements.yaml merged",
			files: []helmTestFile{{"whatever/Chart.yaml", chart}, {"whatever/requirements.yaml", "dependencies:\n- name: dep\n  repository: https://r\n"}, {"whatever/charts/dep/Chart.yaml", "name: dep\nversion: 9.9.9\n"}},
			want:  `{"name":"old","version":"0.1.0","apiVersion":"v1","dependencies":[{"name":"dep","repository":"https://r"}]}`},
		{name: "apiVersion defaults to v1, BOM dropped", files: []helmTestFile{{"c/Chart.yaml", "\xef\xbb\xbfname: c\nversion: 1.0.0\n"}},
			want: `{"name":"c","version":"1.0.0","apiVersion":"v1"}`},
		{name: "windows separators", files: []helmTestFile{{`c\Chart.yaml`, "name: c\nversion: 1.0.0\napiVersion: v2\n"}},
			want: `{"name":"c","version":"1.0.0","apiVersion":"v2"}`},
		{name: "Chart.yaml at the top", files: []helmTestFile{{"Chart.yaml", chart}}, wantErr: "Chart.yaml is at the top of the archive"},
		{name: "only a subchart's Chart.yaml", files: []helmTestFile{{"c/charts/sub/Chart.yaml", chart}}, wantErr: "Chart.yaml not found in the archive"},
		{name: "bad YAML", files: []helmTestFile{{"c/Chart.yaml", "name: [\n"}}, wantErr: "the archive's Chart.yaml: yaml: "},
		{name: "wrong type", files: []helmTestFile{{"c/Chart.yaml", "name: c\nversion: 1.0.0\nmaintainers: jane\n"}}, wantErr: "the archive's Chart.yaml: maintainers: a string where a list is expected"},
		{name: "null maintainer", files: []helmTestFile{{"c/Chart.yaml", "name: c\nversion: 1.0.0\nmaintainers: [~]\n"}}, wantErr: "maintainers must not contain empty or null nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta, created, err := helmReadArchive(helmTestArchive(t, tc.files...), defaultHelmLimits)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !created.Equal(helmTestTime) {
				t.Errorf("created %v", created)
			}
			if got, _ := json.Marshal(meta); string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}

	t.Run("unpacked size bounded", func(t *testing.T) {
		lim := defaultHelmLimits
		lim.unpacked = 4 << 10
		a := helmTestArchive(t, helmTestFile{"c/Chart.yaml", chart}, helmTestFile{"c/big", strings.Repeat("x", 64<<10)})
		if _, _, err := helmReadArchive(a, lim); err == nil || !strings.Contains(err.Error(), "more than the allowed size") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("truncated archive", func(t *testing.T) {
		a := helmTestChart(t, "c", "c", "1.0.0")
		if _, _, err := helmReadArchive(a[:len(a)-6], defaultHelmLimits); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestHelmRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://charts.example.com/stable", "https://charts.example.com/stable"},
		{"https://user:pw@charts.example.com/stable/?token=x", "https://charts.example.com/stable/?xxxxx"},
		{"https://tok@charts.example.com/s#frag", "https://charts.example.com/s"},
		{"https://u:p/w@host/x", "https://host/x"},
		{"https://u:1?s@host/x", "https://host/x"},
		{"https://u:p?s#@host/x?q", "https://host/x?xxxxx"},
	}
	for _, tc := range tests {
		if got := helmRedact(tc.in); got != tc.want {
			t.Errorf("helmRedact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHelmAvailable(t *testing.T) {
	entries := func(vs ...string) []*helmIndexEntry {
		var es []*helmIndexEntry
		for _, v := range vs {
			es = append(es, &helmIndexEntry{Version: helmString(v)})
		}
		return append(es, nil)
	}
	tests := []struct {
		versions []string
		want     string
	}{
		{[]string{"1.10.0", "1.2.0", "v1.9.0", "1.2.0-rc.10", "1.2.0-rc.2", "weird", "1.2.0"}, "(the repository has weird, 1.2.0-rc.2, 1.2.0-rc.10, 1.2.0, v1.9.0, 1.10.0)"},
		{nil, "(the repository lists no versions of it)"},
	}
	var many []string // newest first, as Helm sorts an index
	for i := range 12 {
		many = append(many, fmt.Sprintf("1.%d.0", 11-i))
	}
	tests = append(tests, struct {
		versions []string
		want     string
	}{many, "(the repository has 12 versions, the newest 1.2.0, 1.3.0, 1.4.0, 1.5.0, 1.6.0, 1.7.0, 1.8.0, 1.9.0, 1.10.0, 1.11.0)"})
	for _, tc := range tests {
		if got := helmAvailable(entries(tc.versions...)); got != tc.want {
			t.Errorf("helmAvailable(%v)\n got %s\nwant %s", tc.versions, got, tc.want)
		}
	}
}

// TestHelmChartCredentialsStayHome checks that the repository's credentials
// go to its own host only, not to an absolute chart URL elsewhere.
func TestHelmChartCredentialsStayHome(t *testing.T) {
	archive := helmTestChart(t, "mychart", "mychart", "1.0.0")
	var sawAuth []string
	var mu sync.Mutex
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		sawAuth = append(sawAuth, req.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write(archive)
	}))
	t.Cleanup(elsewhere.Close)
	index := []byte(`apiVersion: v1
entries:
  mychart:
  - {name: mychart, version: 1.0.0, urls: ["` + elsewhere.URL + `/mychart-1.0.0.tgz"], digest: ` + helmSHA(archive) + `}
`)
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "user" || p != "s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(index)
	}))
	t.Cleanup(home.Close)
	repoURL := "http://user:s3cret@" + strings.TrimPrefix(home.URL, "http://") + "/charts"
	if _, err := Chart(context.Background(), nil, repoURL, "mychart", "1.0.0", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sawAuth) != 1 || sawAuth[0] != "" {
		t.Errorf("the other host got Authorization %q", sawAuth)
	}
}
