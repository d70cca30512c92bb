package helmrepo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"oras.land/oras-go/v2"
)

// limits bounds what is read from a repository; tests lower them.
type limits struct {
	index    int64 // index.yaml as downloaded
	archive  int64 // the chart archive (.tgz) as downloaded
	file     int64 // Chart.yaml or requirements.yaml, unpacked
	unpacked int64 // the whole archive, decompressed (a gzip bomb guard)
}

var defaultLimits = limits{
	index:    64 << 20,
	archive:  256 << 20,
	file:     5 << 20, // Helm's own MaxDecompressedFileSize
	unpacked: 1 << 30,
}

// Repos opens charts from Helm HTTP(S) repositories, fetching each
// repository's index.yaml once: the first [Repos.Chart] of a repository
// fetches and parses it, and the later ones, as well as those asking
// meanwhile, share that copy. A fetch that fails is not kept: the next
// Chart of that repository fetches the index again. Indexes are kept as
// long as the Repos, so make one Repos per run. A Repos is safe for
// concurrent use.
type Repos struct {
	client *http.Client
	lim    limits

	mu      sync.Mutex
	indexes map[string]*lazy[*repoIndex] // by index URL and credentials
}

// NewRepos returns a Repos that downloads through client; nil means
// http.DefaultClient.
func NewRepos(client *http.Client) *Repos {
	return newRepos(client, defaultLimits)
}

func newRepos(client *http.Client, lim limits) *Repos {
	if client == nil {
		client = http.DefaultClient
	}
	return &Repos{client: client, lim: lim, indexes: map[string]*lazy[*repoIndex]{}}
}

// Chart is [Repos.Chart] on a Repos of its own, so it fetches the
// repository's index.yaml at every call; a caller opening several charts
// should keep one Repos instead. The target it returns is an [OCIChart].
func Chart(ctx context.Context, client *http.Client, repoURL, name, version, tag string) (oras.ReadOnlyTarget, error) {
	c, err := NewRepos(client).Chart(ctx, repoURL, name, version, tag)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Chart finds chart name at version in the Helm repository repoURL (http
// or https; through its index.yaml, fetched unless r has it already) and
// returns it as an OCI Helm chart: the manifest (tagged tag), its config
// (ConfigMediaType: the chart's metadata as Helm writes it) and one layer,
// the chart archive (ChartMediaType), byte for byte. The archive is not
// downloaded here but by the first OCIChart method that needs it.
//
// The version is matched exactly, with or without a leading "v" ("1.2.3"
// finds "v1.2.3" and the other way round). The first URL of the index entry
// is used, relative to repoURL unless absolute; the archive is checked
// against the entry's digest when the index has one. Credentials in the
// userinfo of repoURL are sent as basic auth to the repository's host only.
// An empty tag means the chart's version with "+" replaced by "_".
// index.yaml is read up to 64 MiB, the archive up to 256 MiB.
//
// Every error, here or from the OCIChart, is one line, starts with
// "chart NAME VERSION from URL: " and shows URLs without userinfo or query.
func (r *Repos) Chart(ctx context.Context, repoURL, name, version, tag string) (*OCIChart, error) {
	ref := chartRef{name: name, version: version, repo: redact(repoURL)}
	if name == "" || version == "" {
		return nil, ref.errorf("a chart needs a name and a version")
	}
	base, user, err := repoBase(repoURL)
	if err != nil {
		return nil, ref.errorf("%w", err)
	}
	idx, err := r.index(ctx, base, user)
	if err != nil {
		return nil, ref.errorf("%w", err)
	}
	entries, ok := idx.Entries[name]
	if !ok {
		return nil, ref.errorf("no chart named %s in the repository%s", name, didYouMean(idx, name))
	}
	entry := findVersion(entries, version)
	if entry == nil {
		return nil, ref.errorf("no version %s %s", version, availableVersions(entries))
	}
	if len(entry.URLs) == 0 || entry.URLs[0] == "" {
		return nil, ref.errorf("index.yaml lists no URL for version %s", entry.Version)
	}
	archiveURL, err := resolveRef(base, string(entry.URLs[0]))
	if err != nil {
		return nil, ref.errorf("index.yaml: the URL of version %s is not valid", entry.Version)
	}
	// The archive's Chart.yaml must give this version (OCIChart checks), so
	// the default tag can be known before the download.
	if tag == "" {
		tag = strings.ReplaceAll(string(entry.Version), "+", "_")
	}
	if !tagPattern.MatchString(tag) {
		return nil, ref.errorf("%q is not a valid OCI tag", tag)
	}
	return &OCIChart{
		ref:         ref,
		client:      r.client,
		lim:         r.lim,
		archiveURL:  archiveURL,
		user:        credentialsFor(base, user, archiveURL),
		version:     entry.Version,
		indexDigest: string(entry.Digest),
		tag:         tag,
	}, nil
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// index returns the index of the repository at base, fetching it unless an
// earlier call did. Its errors start with "index.yaml: ".
func (r *Repos) index(ctx context.Context, base *url.URL, user *url.Userinfo) (*repoIndex, error) {
	// index.yaml, in the repository's directory (keeping its query, as Helm).
	u, err := resolveRef(base, "index.yaml")
	if err != nil {
		return nil, err
	}
	user = credentialsFor(base, user, u)
	key := u.String()
	if user != nil {
		key += " " + user.String() // other credentials may see another index
	}
	r.mu.Lock()
	l := r.indexes[key]
	if l == nil {
		l = new(lazy[*repoIndex])
		r.indexes[key] = l
	}
	r.mu.Unlock()
	return l.get(ctx, func(ctx context.Context) (*repoIndex, error) {
		return fetchIndex(ctx, r.client, u, user, r.lim.index)
	})
}

// chartRef names a chart in errors.
type chartRef struct {
	name, version string
	repo          string // the repository URL, redacted
}

// errorf is an error about the chart: "chart NAME VERSION from URL: ",
// then format.
func (c chartRef) errorf(format string, args ...any) error {
	return fmt.Errorf("chart %s %s from %s: "+format, append([]any{c.name, c.version, c.repo}, args...)...)
}
