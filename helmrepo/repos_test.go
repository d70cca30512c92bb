package helmrepo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingRepo serves one Helm repository under /charts and counts the GETs
// of every path. Its index lists chart0 … chart9 at 1.0.0 with digests, and
// nodigest at 1.0.0 without one.
type countingRepo struct {
	url      string // the repository: http://127.0.0.1:PORT/charts
	archives map[string][]byte

	mu    sync.Mutex
	gets  map[string]int
	fails map[string]int // answer 500 to the next so many GETs of a path
}

func newCountingRepo(t *testing.T) *countingRepo {
	t.Helper()
	r := &countingRepo{archives: map[string][]byte{}, gets: map[string]int{}, fails: map[string]int{}}
	files := map[string][]byte{}
	var index strings.Builder
	index.WriteString("apiVersion: v1\nentries:\n")
	for i := range 10 {
		name := fmt.Sprintf("chart%d", i)
		a := helmTestChart(t, name, name, "1.0.0")
		r.archives[name] = a
		files["/charts/"+name+"-1.0.0.tgz"] = a
		fmt.Fprintf(&index, "  %s:\n  - {name: %s, version: 1.0.0, urls: [%s-1.0.0.tgz], digest: %s}\n", name, name, name, helmSHA(a))
	}
	r.archives["nodigest"] = helmTestChart(t, "nodigest", "nodigest", "1.0.0")
	files["/charts/nodigest-1.0.0.tgz"] = r.archives["nodigest"]
	index.WriteString("  nodigest:\n  - {name: nodigest, version: 1.0.0, urls: [nodigest-1.0.0.tgz]}\n")
	files["/charts/index.yaml"] = []byte(index.String())

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.gets[req.URL.Path]++
		fail := r.fails[req.URL.Path] > 0
		if fail {
			r.fails[req.URL.Path]--
		}
		r.mu.Unlock()
		b, ok := files[req.URL.Path]
		switch {
		case fail:
			http.Error(w, "try again", http.StatusInternalServerError)
		case !ok:
			http.NotFound(w, req)
		default:
			_, _ = w.Write(b)
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/charts"
	return r
}

// count is how many GETs path has had.
func (r *countingRepo) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets[path]
}

// failNext makes the next n GETs of path fail.
func (r *countingRepo) failNext(path string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fails[path] = n
}

func TestReposFetchIndexOnce(t *testing.T) {
	repo := newCountingRepo(t)
	repos := NewRepos(nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range 10 {
		wg.Go(func() {
			_, errs[i] = repos.Chart(ctx, repo.url, fmt.Sprintf("chart%d", i), "1.0.0", "")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("chart%d: %v", i, err)
		}
	}
	// Later ones, another spelling of the URL included, use the same copy.
	for _, u := range []string{repo.url, repo.url + "/"} {
		if _, err := repos.Chart(ctx, u, "chart3", "1.0.0", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := repo.count("/charts/index.yaml"); n != 1 {
		t.Errorf("index.yaml fetched %d times, want 1", n)
	}
	// Another Repos fetches it again.
	if _, err := NewRepos(nil).Chart(ctx, repo.url, "chart0", "1.0.0", ""); err != nil {
		t.Fatal(err)
	}
	if n := repo.count("/charts/index.yaml"); n != 2 {
		t.Errorf("index.yaml fetched %d times, want 2", n)
	}
}

func TestReposIndexFailureNotKept(t *testing.T) {
	repo := newCountingRepo(t)
	repos := NewRepos(nil)
	ctx := context.Background()
	repo.failNext("/charts/index.yaml", 1)
	_, err := repos.Chart(ctx, repo.url, "chart0", "1.0.0", "")
	if want := "chart chart0 1.0.0 from " + repo.url + ": index.yaml: 500 Internal Server Error"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	for i := range 3 {
		if _, err := repos.Chart(ctx, repo.url, fmt.Sprintf("chart%d", i), "1.0.0", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := repo.count("/charts/index.yaml"); n != 2 {
		t.Errorf("index.yaml fetched %d times, want 2 (a failure, then one success)", n)
	}
}

func TestOCIChartDownloadsOnDemand(t *testing.T) {
	repo := newCountingRepo(t)
	repos := NewRepos(nil)
	ctx := context.Background()
	const archivePath = "/charts/chart5-1.0.0.tgz"
	c, err := repos.Chart(ctx, repo.url, "chart5", "1.0.0", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	d, ok := c.ArchiveDigest()
	if want := digest.FromBytes(repo.archives["chart5"]); !ok || d != want {
		t.Errorf("ArchiveDigest() = %s, %v; want %s, true", d, ok, want)
	}
	if n := repo.count(archivePath); n != 0 {
		t.Fatalf("archive fetched %d times before anything needed it", n)
	}

	desc, err := c.Resolve(ctx, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if n := repo.count(archivePath); n != 1 {
		t.Fatalf("archive fetched %d times by Resolve, want 1", n)
	}
	// The rest comes from what Resolve downloaded.
	var m ocispec.Manifest
	if err := json.Unmarshal(helmRead(t, c, desc), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != d {
		t.Errorf("layers %v, want the archive %s", m.Layers, d)
	}
	if ok, err := c.Exists(ctx, m.Layers[0]); !ok || err != nil {
		t.Errorf("Exists(layer) = %v, %v", ok, err)
	}
	helmRead(t, c, m.Config)
	if n := repo.count(archivePath); n != 1 {
		t.Errorf("archive fetched %d times, want 1", n)
	}

	t.Run("no digest in the index", func(t *testing.T) {
		c, err := repos.Chart(ctx, repo.url, "nodigest", "1.0.0", "")
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := c.ArchiveDigest(); ok || d != "" {
			t.Errorf("ArchiveDigest() = %q, %v; want none", d, ok)
		}
		if _, err := c.Resolve(ctx, "1.0.0"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("failed download tried again", func(t *testing.T) {
		const path = "/charts/chart7-1.0.0.tgz"
		c, err := repos.Chart(ctx, repo.url, "chart7", "1.0.0", "")
		if err != nil {
			t.Fatal(err)
		}
		repo.failNext(path, 1)
		_, err = c.Resolve(ctx, "1.0.0")
		if want := "chart chart7 1.0.0 from " + repo.url + ": archive " + repo.url + "/chart7-1.0.0.tgz: 500 Internal Server Error"; err == nil || err.Error() != want {
			t.Fatalf("got %v, want %s", err, want)
		}
		for range 2 {
			if _, err := c.Resolve(ctx, "1.0.0"); err != nil {
				t.Fatal(err)
			}
		}
		if n := repo.count(path); n != 2 {
			t.Errorf("archive fetched %d times, want 2 (a failure, then one success)", n)
		}
	})

	t.Run("concurrent readers share one download", func(t *testing.T) {
		const path = "/charts/chart8-1.0.0.tgz"
		c, err := repos.Chart(ctx, repo.url, "chart8", "1.0.0", "")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := c.Resolve(ctx, "1.0.0"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := repo.count(path); n != 1 {
			t.Errorf("archive fetched %d times, want 1", n)
		}
	})
}
