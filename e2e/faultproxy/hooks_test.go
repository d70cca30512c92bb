package faultproxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// zotRefusal is zot's answer to a Docker manifest PUT without
// http.compat ["docker2s2"], for the media type mt.
func zotRefusal(mt string) string {
	return `{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"description":` +
		`"During upload, manifests undergo several checks ensuring validity. If those checks fail, this error ` +
		`MAY be returned, unless a more specific error is included. The detail will contain information the ` +
		`failed validation.","mediaType":"` + mt + `"}}]}`
}

// TestRefuseDockerManifests: Docker schema 2 manifests and manifest lists
// are refused with zot's 415 MANIFEST_INVALID; OCI images and indexes pass
// to the registry.
func TestRefuseDockerManifests(t *testing.T) {
	r, p := setup(t, registry.Options{}, faultproxy.Options{Hook: faultproxy.RefuseDockerManifests()})
	ctx := ctxT(t)
	tgt := imagebuild.Target{PlainHTTP: true}

	if _, err := imagebuild.PushImage(ctx, tgt, p.Host()+"/zot/oci:1", imagebuild.SingleArch(imagebuild.OCI, 51, 1000)); err != nil {
		t.Fatalf("OCI image: %v", err)
	}
	if _, err := imagebuild.PushIndex(ctx, tgt, p.Host()+"/zot/oci:2",
		imagebuild.MultiArch(imagebuild.OCI, 52, []string{"linux/amd64", "linux/arm64"}, 1000)); err != nil {
		t.Fatalf("OCI index: %v", err)
	}
	if _, err := imagebuild.PushImage(ctx, tgt, p.Host()+"/zot/docker:1", imagebuild.SingleArch(imagebuild.Docker, 53, 1000)); err == nil ||
		!strings.Contains(err.Error(), "415") {
		t.Fatalf("Docker image: %v, want a 415 refusal", err)
	}

	// The exact answers, to a Docker manifest and to a manifest list
	// (whose children the registry has, pushed directly).
	idx, err := imagebuild.PushIndex(ctx, tgt, r.Host()+"/zot/list:1",
		imagebuild.MultiArch(imagebuild.Docker, 54, []string{"linux/amd64", "linux/arm64"}, 1000))
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range []string{imagebuild.MediaTypeDockerManifest, imagebuild.MediaTypeDockerManifestList} {
		resp, body, err := send(t, http.MethodPut, p.URL()+"/v2/zot/list/manifests/2", strings.NewReader(string(idx.Manifest)),
			map[string]string{"Content-Type": mt})
		if err != nil || resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Content-Type") != "application/json" ||
			string(body) != zotRefusal(mt) {
			t.Fatalf("PUT %s: %v %v\n%s\nwant 415 application/json\n%s", mt, resp, err, body, zotRefusal(mt))
		}
	}
	s := p.Stats()
	if s.Faults["respond-415"] != 3 || s.ByStatus[http.StatusUnsupportedMediaType] != 3 {
		t.Fatalf("faults %v, statuses %v: want 3 refusals", s.Faults, s.ByStatus)
	}
	// The same manifest list as an OCI index type passes the hook (and
	// the registry judges it).
	resp, _, err := send(t, http.MethodPut, p.URL()+"/v2/zot/list/manifests/3", strings.NewReader(string(idx.Manifest)),
		map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"})
	if err != nil || resp.StatusCode == http.StatusUnsupportedMediaType {
		t.Fatalf("OCI index type: %v %v", resp, err)
	}
}

// TestChain: the first hook that answers ok wins; hooks after it are not
// asked; nil hooks are skipped; no answer leaves the random faults.
func TestChain(t *testing.T) {
	var mu sync.Mutex // the proxy calls hooks on its own goroutines
	var asked []string
	askedList := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(asked, " ")
	}
	hook := func(name string, kind faultproxy.Kind, f faultproxy.Fault) faultproxy.Hook {
		return func(_ *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, name)
			return f, info.Kind == kind
		}
	}
	_, p := setup(t, registry.Options{}, faultproxy.Options{
		Faults: faultproxy.Faults{Rate429: 1, Kinds: []faultproxy.Kind{faultproxy.KindTags}},
		Hook: faultproxy.Chain(nil,
			hook("a", faultproxy.KindManifestPut, faultproxy.Status503()),
			faultproxy.RefuseDockerManifests(),
			hook("b", faultproxy.KindBase, faultproxy.Respond(http.StatusTeapot, nil, nil))),
	})
	for _, c := range []struct {
		method, path, ct string
		want             int
		asked            string
	}{
		{http.MethodPut, "/v2/x/manifests/1", imagebuild.MediaTypeDockerManifest, http.StatusServiceUnavailable, "a"},
		{http.MethodGet, "/v2/", "", http.StatusTeapot, "a b"},
		{http.MethodGet, "/v2/x/tags/list", "", http.StatusTooManyRequests, "a b"},
	} {
		mu.Lock()
		asked = nil
		mu.Unlock()
		resp, _, err := send(t, c.method, p.URL()+c.path, strings.NewReader("{}"), map[string]string{"Content-Type": c.ct})
		if got := askedList(); err != nil || resp.StatusCode != c.want || got != c.asked {
			t.Fatalf("%s %s: %v %v, hooks asked %q; want %d, asked %q", c.method, c.path, resp, err, got, c.want, c.asked)
		}
	}
	// A Docker manifest PUT that the first hook lets pass meets the zot
	// refusal.
	p.SetHook(faultproxy.Chain(hook("none", faultproxy.KindOther, faultproxy.Drop()), faultproxy.RefuseDockerManifests()))
	resp, _, err := send(t, http.MethodPut, p.URL()+"/v2/x/manifests/1", strings.NewReader("{}"),
		map[string]string{"Content-Type": imagebuild.MediaTypeDockerManifestList})
	if err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("chained refusal: %v %v", resp, err)
	}
}
