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
	small := defaultLimits
	small.index = 100
	tiny := defaultLimits
	tiny.archive = 64
	tests := []struct {
		name, repo, chart, version string
		lim                        *limits
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
			want: "chart nochart 1.0.0 from " + repo.url + "/bad: the archive has no Chart.yaml in the chart's directory"},
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
			lim := defaultLimits
			if tc.lim != nil {
				lim = *tc.lim
			}
			ctx := context.Background()
			c, err := newRepos(nil, lim).Chart(ctx, tc.repo, tc.chart, tc.version, tc.version)
			if err == nil { // the archive's errors come with its download
				_, err = c.Resolve(ctx, tc.version)
			}
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
	c, err := Chart(context.Background(), nil, repoURL, "mychart", "1.0.0", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(context.Background(), "1.0.0"); err != nil { // downloads the archive
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sawAuth) != 1 || sawAuth[0] != "" {
		t.Errorf("the other host got Authorization %q", sawAuth)
	}
}
