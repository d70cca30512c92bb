// Package helmrepo reads a chart from a Helm HTTP(S) repository (through its
// index.yaml) and turns it into the OCI Helm chart `helm push` would store, so
// that charts named by profiles can be mirrored to a registry.
package helmrepo

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
)

// Media types of a Helm chart stored in an OCI registry, as `helm push`
// writes them (helm.sh/helm pkg/registry/constants.go).
const (
	// ConfigMediaType is the media type of the config blob: the
	// chart's metadata (Chart.yaml) as JSON.
	ConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	// ChartMediaType is the media type of the layer: the chart
	// archive (.tgz), byte for byte.
	ChartMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// helmLimits bounds what Chart reads; tests lower them.
type helmLimits struct {
	index    int64 // index.yaml as downloaded
	archive  int64 // the chart archive (.tgz) as downloaded
	file     int64 // Chart.yaml or requirements.yaml, unpacked
	unpacked int64 // the whole archive, decompressed (a gzip bomb guard)
}

var defaultHelmLimits = helmLimits{
	index:    64 << 20,
	archive:  256 << 20,
	file:     5 << 20, // Helm's own MaxDecompressedFileSize
	unpacked: 1 << 30,
}

// Chart fetches chart name at version from the Helm repository repoURL
// (http or https; through its index.yaml) and returns it as an OCI Helm
// chart in a read-only store: the manifest (tagged tag), its config
// (application/vnd.cncf.helm.config.v1+json: the chart's metadata as Helm
// writes it) and one layer, the chart archive
// (application/vnd.cncf.helm.chart.content.v1.tar+gzip), byte for byte.
//
// The version is matched exactly, with or without a leading "v" ("1.2.3"
// finds "v1.2.3" and the other way round). The first URL of the index entry
// is used, relative to repoURL unless absolute; the archive is checked
// against the entry's digest when the index has one. Credentials in the
// userinfo of repoURL are sent as basic auth to the repository's host only.
// An empty tag means the chart's version with "+" replaced by "_".
// index.yaml is read up to 64 MiB, the archive up to 256 MiB.
//
// Every error is one line, starts with "chart NAME VERSION from URL: " and
// shows URLs without userinfo or query. client nil means
// http.DefaultClient.
func Chart(ctx context.Context, client *http.Client, repoURL, name, version, tag string) (oras.ReadOnlyTarget, error) {
	return helmChart(ctx, client, repoURL, name, version, tag, defaultHelmLimits)
}

func helmChart(ctx context.Context, client *http.Client, repoURL, name, version, tag string, lim helmLimits) (oras.ReadOnlyTarget, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("chart %s %s from %s: "+format, append([]any{name, version, helmRedact(repoURL)}, args...)...)
	}
	if client == nil {
		client = http.DefaultClient
	}
	if name == "" || version == "" {
		return nil, fail("a chart needs a name and a version")
	}
	base, user, err := helmRepoBase(repoURL)
	if err != nil {
		return nil, fail("%w", err)
	}
	get := func(u *url.URL, limit int64, what string) ([]byte, error) {
		return helmGet(ctx, client, u, helmCredentials(base, user, u), limit, what)
	}

	// index.yaml, in the repository's directory (keeping its query, as Helm).
	indexURL, err := helmResolve(base, "index.yaml")
	if err != nil {
		return nil, fail("%w", err)
	}
	raw, err := get(indexURL, lim.index, "index.yaml")
	if err != nil {
		return nil, fail("%w", err)
	}
	idx, err := helmParseIndex(raw)
	if err != nil {
		return nil, fail("index.yaml: %w", err)
	}
	entries, ok := idx.Entries[name]
	if !ok {
		return nil, fail("no chart named %s in the repository%s", name, helmDidYouMean(idx, name))
	}
	entry := helmFindVersion(entries, version)
	if entry == nil {
		return nil, fail("no version %s %s", version, helmAvailable(entries))
	}
	if len(entry.URLs) == 0 || entry.URLs[0] == "" {
		return nil, fail("index.yaml lists no URL for version %s", entry.Version)
	}
	chartURL, err := helmResolve(base, string(entry.URLs[0]))
	if err != nil {
		return nil, fail("index.yaml: the URL of version %s is not valid", entry.Version)
	}

	archive, err := get(chartURL, lim.archive, "archive "+helmRedact(chartURL.String()))
	if err != nil {
		return nil, fail("%w", err)
	}
	sum := sha256.Sum256(archive)
	got := hex.EncodeToString(sum[:])
	if want := strings.ToLower(strings.TrimPrefix(string(entry.Digest), "sha256:")); want != "" && want != got {
		return nil, fail("archive digest mismatch: index.yaml says %s, the archive is sha256:%s", entry.Digest, got)
	}

	meta, created, err := helmReadArchive(archive, lim)
	if err != nil {
		return nil, fail("%w", err)
	}
	if string(meta.Name) != name || meta.Version != entry.Version {
		return nil, fail("the archive's Chart.yaml says name=%s version=%s (index.yaml: name=%s version=%s)",
			meta.Name, meta.Version, name, entry.Version)
	}
	if tag == "" {
		tag = strings.ReplaceAll(string(meta.Version), "+", "_")
	}
	if !helmTagRE.MatchString(tag) {
		return nil, fail("%q is not a valid OCI tag", tag)
	}
	store, err := helmStore(ctx, meta, created, archive, tag)
	if err != nil {
		return nil, fail("%w", err)
	}
	return store, nil
}

var helmTagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// helmStore lays the chart out as `helm push` does (pkg/registry Client.Push):
// config json.Marshal(metadata), the archive as the only layer, and a
// manifest annotated by generateOCIAnnotations.
func helmStore(ctx context.Context, meta *helmMetadata, created time.Time, archive []byte, tag string) (*memory.Store, error) {
	config, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encoding the chart metadata: %w", err)
	}
	configDesc := ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(config), Size: int64(len(config))}
	layerDesc := ocispec.Descriptor{MediaType: ChartMediaType, Digest: digest.FromBytes(archive), Size: int64(len(archive))}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		// Helm leaves mediaType out of the manifest body; the OCI image spec
		// asks for it, and registries rely on it for content negotiation.
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      configDesc,
		Layers:      []ocispec.Descriptor{layerDesc},
		Annotations: helmAnnotations(meta, created),
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest: %w", err)
	}
	manifestDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}

	store := memory.New()
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{configDesc, config}, {layerDesc, archive}, {manifestDesc, manifest}} {
		if err := store.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			return nil, fmt.Errorf("storing %s: %w", b.desc.MediaType, err)
		}
	}
	if err := store.Tag(ctx, manifestDesc, tag); err != nil {
		return nil, fmt.Errorf("tagging %s: %w", tag, err)
	}
	return store, nil
}

// helmAnnotations is Helm's generateOCIAnnotations (pkg/registry/chart.go):
// description, title, version, url, created, source, authors from the
// metadata, then every Chart.yaml annotation except title and version.
// created is the modification time of Chart.yaml in the archive: Helm uses
// the archive file's modification time, which is the moment `helm package`
// wrote both; the archive's own clock keeps the manifest digest stable.
func helmAnnotations(meta *helmMetadata, created time.Time) map[string]string {
	a := map[string]string{}
	add := func(k, v string) {
		if strings.TrimSpace(v) != "" {
			a[k] = v
		}
	}
	add(ocispec.AnnotationDescription, string(meta.Description))
	add(ocispec.AnnotationTitle, string(meta.Name))
	add(ocispec.AnnotationVersion, string(meta.Version))
	add(ocispec.AnnotationURL, string(meta.Home))
	add(ocispec.AnnotationCreated, created.UTC().Format(time.RFC3339))
	if len(meta.Sources) > 0 {
		add(ocispec.AnnotationSource, string(meta.Sources[0]))
	}
	if len(meta.Maintainers) > 0 {
		var sb strings.Builder
		for i, m := range meta.Maintainers {
			sb.WriteString(string(m.Name))
			if m.Email != "" {
				sb.WriteString(" (" + string(m.Email) + ")")
			}
			if i < len(meta.Maintainers)-1 {
				sb.WriteString(", ")
			}
		}
		add(ocispec.AnnotationAuthors, sb.String())
	}
	for k, v := range meta.Annotations {
		if k != ocispec.AnnotationTitle && k != ocispec.AnnotationVersion {
			a[k] = string(v)
		}
	}
	return a
}

// helmRepoBase checks repoURL and splits off its credentials.
func helmRepoBase(repoURL string) (*url.URL, *url.Userinfo, error) {
	u, err := url.Parse(repoURL)
	if err != nil || u.Opaque != "" {
		return nil, nil, errors.New("the repository is not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "oci":
		return nil, nil, errors.New("an oci:// repository is an OCI registry, not a Helm HTTP repository")
	default:
		return nil, nil, errors.New("a Helm repository URL must start with http:// or https://")
	}
	if u.Host == "" {
		return nil, nil, errors.New("the repository URL has no host")
	}
	if p := strings.ToLower(strings.TrimSuffix(u.Path, "/")); strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz") {
		return nil, nil, errors.New("the repository URL is a chart archive; give the chart repository URL (the directory holding index.yaml) instead")
	}
	if strings.HasSuffix(strings.ToLower(u.Path), "/index.yaml") {
		return nil, nil, errors.New("the repository URL names index.yaml; give the directory holding it")
	}
	user := u.User
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	return u, user, nil
}

// helmCredentials sends the repository's credentials to its own scheme and
// host only, as Helm does unless --pass-credentials.
func helmCredentials(base *url.URL, user *url.Userinfo, u *url.URL) *url.Userinfo {
	if u.User != nil {
		return u.User
	}
	if user != nil && strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Host, base.Host) {
		return user
	}
	return nil
}

// helmResolve is Helm's repo.ResolveReferenceURL: an absolute URL as is,
// else relative to the repository URL taken as a directory, with the
// repository URL's query.
func helmResolve(base *url.URL, ref string) (*url.URL, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	if r.IsAbs() {
		if s := strings.ToLower(r.Scheme); s != "http" && s != "https" {
			return nil, errors.New("not http(s)")
		}
		return r, nil
	}
	dir := *base
	dir.RawPath = strings.TrimSuffix(dir.RawPath, "/") + "/"
	dir.Path = strings.TrimSuffix(dir.Path, "/") + "/"
	if dir.RawPath == "/" {
		dir.RawPath = ""
	}
	res := dir.ResolveReference(r)
	res.RawQuery = base.RawQuery
	return res, nil
}

// helmGet reads u whole, at most limit bytes.
func helmGet(ctx context.Context, client *http.Client, u *url.URL, user *url.Userinfo, limit int64, what string) ([]byte, error) {
	target := *u
	target.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, helmURLError(err))
	}
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, helmURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", what, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%s: larger than the %s allowed (%d bytes)", what, helmSize(limit), resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading: %w", what, helmURLError(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than the %s allowed", what, helmSize(limit))
	}
	return b, nil
}

// helmURLError drops the *url.Error wrapper: its text repeats the URL,
// which may carry a query worth hiding.
func helmURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func helmSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// helmRedact shows a URL without its userinfo, query and fragment.
func helmRedact(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Opaque == "" && !strings.Contains(u.RawQuery+u.Fragment, "@") {
		q := u.RawQuery != "" || u.ForceQuery
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		s := u.String()
		if q {
			s += "?xxxxx"
		}
		return s
	}
	// Not a URL Go can read (a raw password with '/', '?' or '#' in it, say):
	// keep only what follows the last '@', and cut the query.
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i] + "?xxxxx"
	}
	return scheme + rest
}

// helmIndex is the part of a repository's index.yaml Chart reads
// (helm.sh/helm pkg/repo IndexFile).
type helmIndex struct {
	APIVersion helmString                   `json:"apiVersion" yaml:"apiVersion"`
	Entries    map[string][]*helmIndexEntry `json:"entries" yaml:"entries"`
}

type helmIndexEntry struct {
	Name    helmString   `json:"name" yaml:"name"`
	Version helmString   `json:"version" yaml:"version"`
	URLs    []helmString `json:"urls" yaml:"urls"`
	Digest  helmString   `json:"digest" yaml:"digest"`
}

// helmParseIndex reads an index as Helm's loadIndex does: JSON when it is
// valid JSON, YAML otherwise.
func helmParseIndex(b []byte) (*helmIndex, error) {
	var idx helmIndex
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty")
	}
	if json.Valid(b) {
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, helmJSONError(err)
		}
	} else {
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, helmOneLine(err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			return nil, errors.New("not a Helm chart repository index (not a YAML mapping)")
		}
		if err := doc.Content[0].Decode(&idx); err != nil {
			return nil, helmOneLine(err)
		}
	}
	if idx.APIVersion == "" && len(idx.Entries) == 0 {
		return nil, errors.New("not a Helm chart repository index (no apiVersion, no entries)")
	}
	return &idx, nil
}

// helmFindVersion finds version exactly, then ignoring a leading "v" on
// either side (what Helm's semver match amounts to for an exact version).
func helmFindVersion(entries []*helmIndexEntry, version string) *helmIndexEntry {
	for _, e := range entries {
		if e != nil && string(e.Version) == version {
			return e
		}
	}
	want := strings.TrimPrefix(version, "v")
	for _, e := range entries {
		if e != nil && strings.TrimPrefix(string(e.Version), "v") == want {
			return e
		}
	}
	return nil
}

// helmAvailable lists the versions an index has, oldest first; past 10, the
// newest 10.
func helmAvailable(entries []*helmIndexEntry) string {
	var vs []string
	for _, e := range entries {
		if e != nil && e.Version != "" && !slices.Contains(vs, string(e.Version)) {
			vs = append(vs, string(e.Version))
		}
	}
	if len(vs) == 0 {
		return "(the repository lists no versions of it)"
	}
	slices.SortStableFunc(vs, helmCompareVersions)
	const show = 10
	if len(vs) > show {
		return fmt.Sprintf("(the repository has %d versions, the newest %s)", len(vs), strings.Join(vs[len(vs)-show:], ", "))
	}
	return "(the repository has " + strings.Join(vs, ", ") + ")"
}

func helmDidYouMean(idx *helmIndex, name string) string {
	for n := range idx.Entries {
		if strings.EqualFold(n, name) {
			return " (did you mean " + n + "?)"
		}
	}
	return ""
}

// helmCompareVersions orders versions by semantic versioning (a leading "v"
// and build metadata ignored); what does not parse sorts first, by text.
func helmCompareVersions(a, b string) int {
	pa, oka := helmParseSemver(a)
	pb, okb := helmParseSemver(b)
	switch {
	case !oka && !okb:
		return strings.Compare(a, b)
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range 3 {
		if c := cmp.Compare(pa.core[i], pb.core[i]); c != 0 {
			return c
		}
	}
	switch {
	case pa.pre == nil && pb.pre == nil:
		return strings.Compare(a, b)
	case pa.pre == nil:
		return 1
	case pb.pre == nil:
		return -1
	}
	for i := 0; i < len(pa.pre) && i < len(pb.pre); i++ {
		x, y := pa.pre[i], pb.pre[i]
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		switch {
		case ex == nil && ey == nil && nx != ny:
			return cmp.Compare(nx, ny)
		case ex == nil && ey != nil:
			return -1
		case ex != nil && ey == nil:
			return 1
		case x != y:
			return strings.Compare(x, y)
		}
	}
	if c := cmp.Compare(len(pa.pre), len(pb.pre)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

type helmSemver struct {
	core [3]int64
	pre  []string
}

func helmParseSemver(s string) (helmSemver, bool) {
	var v helmSemver
	s = strings.TrimPrefix(s, "v")
	s, _, _ = strings.Cut(s, "+")
	s, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return v, false
		}
		v.core[i] = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
	}
	return v, true
}

// helmMetadata is Helm's chart.Metadata (pkg/chart/v2/metadata.go): the
// same fields, order and JSON names, so json.Marshal gives the bytes
// `helm push` writes as the config.
type helmMetadata struct {
	Name         helmString            `json:"name,omitempty"`
	Home         helmString            `json:"home,omitempty"`
	Sources      []helmString          `json:"sources,omitempty"`
	Version      helmString            `json:"version,omitempty"`
	Description  helmString            `json:"description,omitempty"`
	Keywords     []helmString          `json:"keywords,omitempty"`
	Maintainers  []*helmMaintainer     `json:"maintainers,omitempty"`
	Icon         helmString            `json:"icon,omitempty"`
	APIVersion   helmString            `json:"apiVersion,omitempty"`
	Condition    helmString            `json:"condition,omitempty"`
	Tags         helmString            `json:"tags,omitempty"`
	AppVersion   helmString            `json:"appVersion,omitempty"`
	Deprecated   bool                  `json:"deprecated,omitempty"`
	Annotations  map[string]helmString `json:"annotations,omitempty"`
	KubeVersion  helmString            `json:"kubeVersion,omitempty"`
	Dependencies []*helmDependency     `json:"dependencies,omitempty"`
	Type         helmString            `json:"type,omitempty"`
}

// helmMaintainer is Helm's chart.Maintainer.
type helmMaintainer struct {
	Name  helmString `json:"name,omitempty"`
	Email helmString `json:"email,omitempty"`
	URL   helmString `json:"url,omitempty"`
}

// helmDependency is Helm's chart.Dependency.
type helmDependency struct {
	Name         helmString   `json:"name"`
	Version      helmString   `json:"version,omitempty"`
	Repository   helmString   `json:"repository"`
	Condition    helmString   `json:"condition,omitempty"`
	Tags         []helmString `json:"tags,omitempty"`
	Enabled      bool         `json:"enabled,omitempty"`
	ImportValues []any        `json:"import-values,omitempty"`
	Alias        helmString   `json:"alias,omitempty"`
	DependsOn    []helmString `json:"depends-on,omitempty"`
}

// helmReadArchive streams through the chart archive and returns the chart's
// metadata as Helm's loader builds it (pkg/chart/v2/loader): Chart.yaml one
// directory deep (any directory name), apiVersion defaulted to v1,
// requirements.yaml merged in, strings sanitized as Metadata.Validate does.
// It also returns Chart.yaml's modification time. The whole archive is read,
// so a truncated or corrupt one fails here.
func helmReadArchive(archive []byte, lim helmLimits) (*helmMetadata, time.Time, error) {
	var created time.Time
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, created, fmt.Errorf("the archive is not a gzip file: %w", err)
	}
	body := &helmCapReader{r: zr, left: lim.unpacked}
	tr := tar.NewReader(body)
	var chartYAML, requirements [][]byte
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, created, fmt.Errorf("reading the archive: %w", err)
		}
		if hd.FileInfo().IsDir() || hd.Typeflag == tar.TypeXGlobalHeader || hd.Typeflag == tar.TypeXHeader {
			continue
		}
		// As Helm: a Windows-made archive may use '\'; the first element is
		// the chart's directory.
		delim := "/"
		if strings.ContainsRune(hd.Name, '\\') {
			delim = "\\"
		}
		parts := strings.Split(hd.Name, delim)
		if parts[0] == "Chart.yaml" {
			return nil, created, errors.New("Chart.yaml is at the top of the archive, not in the chart's directory")
		}
		n := path.Clean(strings.Join(parts[1:], "/"))
		if n != "Chart.yaml" && n != "requirements.yaml" {
			continue
		}
		if hd.Size > lim.file {
			return nil, created, fmt.Errorf("%s is larger than %s", n, helmSize(lim.file))
		}
		data, err := io.ReadAll(io.LimitReader(tr, lim.file+1))
		if err != nil {
			return nil, created, fmt.Errorf("reading %s from the archive: %w", n, err)
		}
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		if n == "Chart.yaml" {
			if chartYAML == nil {
				created = hd.ModTime
			}
			chartYAML = append(chartYAML, data)
		} else {
			requirements = append(requirements, data)
		}
	}
	// Read to the end of the gzip stream so its checksum is verified.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, created, fmt.Errorf("reading the archive: %w", err)
	}
	if len(chartYAML) == 0 {
		return nil, created, errors.New("Chart.yaml not found in the archive")
	}
	meta := &helmMetadata{}
	for _, data := range chartYAML {
		if err := helmUnmarshalYAML(data, meta); err != nil {
			return nil, created, fmt.Errorf("the archive's Chart.yaml: %w", err)
		}
	}
	if meta.APIVersion == "" {
		meta.APIVersion = "v1"
	}
	for _, data := range requirements {
		if err := helmUnmarshalYAML(data, meta); err != nil {
			return nil, created, fmt.Errorf("the archive's requirements.yaml: %w", err)
		}
	}
	if err := meta.sanitize(); err != nil {
		return nil, created, fmt.Errorf("the archive's Chart.yaml: %w", err)
	}
	return meta, created, nil
}

// sanitize is the string clean-up of Helm's Metadata.Validate (what `helm
// push` stores has been through it), with its checks for null list items.
func (m *helmMetadata) sanitize() error {
	s := func(p ...*helmString) {
		for _, v := range p {
			*v = helmString(helmSanitize(string(*v)))
		}
	}
	each := func(l []helmString) {
		for i := range l {
			s(&l[i])
		}
	}
	s(&m.Name, &m.Description, &m.Home, &m.Icon, &m.Condition, &m.Tags, &m.AppVersion, &m.KubeVersion)
	each(m.Sources)
	each(m.Keywords)
	for _, mt := range m.Maintainers {
		if mt == nil {
			return errors.New("maintainers must not contain empty or null nodes")
		}
		s(&mt.Name, &mt.Email, &mt.URL)
	}
	for _, d := range m.Dependencies {
		if d == nil {
			return errors.New("dependencies must not contain empty or null nodes")
		}
		s(&d.Name, &d.Version, &d.Repository, &d.Condition)
		each(d.Tags)
		each(d.DependsOn)
	}
	return nil
}

// helmSanitize is Helm's sanitizeString: white space becomes a space,
// other unprintable characters go.
func helmSanitize(str string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, str)
}

// helmCapReader fails once more than left bytes have been read.
type helmCapReader struct {
	r    io.Reader
	left int64
}

func (c *helmCapReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// Probe for one more byte: only data past the cap is an error.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, errors.New("the archive unpacks to more than the allowed size")
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// helmUnmarshalYAML decodes YAML into v the way sigs.k8s.io/yaml (which
// Helm uses) does: YAML 1.1 scalars, turned into JSON, decoded with
// encoding/json (so keys match JSON names case-insensitively and a number
// or boolean given for a string field becomes its text).
func helmUnmarshalYAML(data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return helmOneLine(err)
	}
	budget := 1 << 20
	obj, err := helmJSONable(&doc, &budget)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return helmOneLine(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return helmJSONError(err)
	}
	return nil
}

func helmJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Slice:
			want = "list"
		case reflect.Map, reflect.Struct, reflect.Pointer:
			want = "mapping"
		}
		field := te.Field
		if field == "" {
			field = "the document"
		}
		return fmt.Errorf("%s: a %s where a %s is expected", field, te.Value, want)
	}
	return helmOneLine(err)
}

func helmOneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// helmJSONable turns a YAML node into values encoding/json can write,
// spending budget on every node (aliases included) so that an alias bomb
// stops early.
func helmJSONable(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, errors.New("too many YAML nodes")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return helmJSONable(n.Content[0], budget)
	case yaml.AliasNode:
		return helmJSONable(n.Alias, budget)
	case yaml.ScalarNode:
		return helmScalar(n), nil
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := helmJSONable(c, budget)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			key, err := helmKey(k)
			if err != nil {
				return nil, err
			}
			if m[key], err = helmJSONable(v, budget); err != nil {
				return nil, err
			}
		}
		// "<<: *anchor" adds the keys the mapping does not set itself.
		for _, mv := range merges {
			src := []*yaml.Node{mv}
			if mv.Kind == yaml.SequenceNode {
				src = mv.Content
			}
			for _, s := range src {
				v, err := helmJSONable(s, budget)
				if err != nil {
					return nil, err
				}
				mm, ok := v.(map[string]any)
				if !ok {
					return nil, errors.New("a merge key (<<) must refer to a mapping")
				}
				for k, x := range mm {
					if _, set := m[k]; !set {
						m[k] = x
					}
				}
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("unsupported YAML node at line %d", n.Line)
}

// helmKey turns a mapping key into the string sigs.k8s.io/yaml makes of it.
func helmKey(k *yaml.Node) (string, error) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
	}
	if k.ShortTag() == "!!null" {
		return "", fmt.Errorf("line %d: a mapping key must not be null", k.Line)
	}
	return helmText(helmScalar(k)), nil
}

// helmYAML11Bools are the words YAML 1.1 (go-yaml v2, under
// sigs.k8s.io/yaml) reads as booleans where YAML 1.2 sees strings.
var helmYAML11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

// helmScalar resolves a scalar: nil, bool, int64, uint64, float64 or string
// (a timestamp stays text, as go-yaml v2 keeps it for an interface{}).
func helmScalar(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
		var u uint64
		if n.Decode(&u) == nil {
			return u
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			if math.IsInf(f, 0) || math.IsNaN(f) {
				return helmText(f)
			}
			return f
		}
	case "!!str":
		// Only a plain scalar: quoted or tagged "yes" stays a string.
		if b, ok := helmYAML11Bools[n.Value]; ok && n.Style == 0 {
			return b
		}
	}
	return n.Value
}

// helmText is the text sigs.k8s.io/yaml gives a scalar decoded into a string
// field (floats as float32, so 1.10 becomes "1.1", as Helm does).
func helmText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 32)
	}
	return fmt.Sprint(v)
}

// helmString is a string field that, like Helm's through sigs.k8s.io/yaml,
// also takes a number or a boolean, as its text.
type helmString string

// UnmarshalJSON takes a JSON string, number or boolean.
func (h *helmString) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch {
	case s == "null":
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*h = helmString(str)
	case s == "true" || s == "false":
		*h = helmString(s)
	case strings.HasPrefix(s, "{"):
		return &json.UnmarshalTypeError{Value: "mapping", Type: reflect.TypeFor[string]()}
	case strings.HasPrefix(s, "["):
		return &json.UnmarshalTypeError{Value: "list", Type: reflect.TypeFor[string]()}
	default:
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			*h = helmString(helmText(i))
		} else if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			*h = helmString(helmText(u))
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			*h = helmString(helmText(f))
		} else {
			return &json.UnmarshalTypeError{Value: "number " + s, Type: reflect.TypeFor[string]()}
		}
	}
	return nil
}

// UnmarshalYAML takes any scalar, as its text.
func (h *helmString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a string is expected", n.Line)
	}
	*h = helmString(helmText(helmScalar(n)))
	return nil
}
