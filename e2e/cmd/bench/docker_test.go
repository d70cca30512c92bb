package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
)

// TestDockerTracker feeds the tracker the requests of a run in which a
// Docker-only blob is uploaded in two chunks around the first refusal, a
// shared blob is committed after it, and a session is abandoned: only the
// Docker-only bytes after the refusal, and the abandoned ones, count.
func TestDockerTracker(t *testing.T) {
	const repo = "/v2/spectro-images/docker.io/rancher/pause"
	dockerBlob, shared := digest.FromString("docker"), digest.FromString("shared")
	tr := newDockerTracker(faultproxy.RefuseDockerManifests())
	send := func(method, target, contentType string, n int) bool {
		r := httptest.NewRequest(method, target, strings.NewReader(strings.Repeat("x", n)))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		_, refused := tr.hook(r, faultproxy.Info{Kind: faultproxy.Classify(r)})
		return refused
	}
	send(http.MethodPost, repo+"/blobs/uploads/", "", 0)
	send(http.MethodPatch, repo+"/blobs/uploads/a", "", 100)
	if !send(http.MethodPut, repo+"/manifests/3.6", "application/vnd.docker.distribution.manifest.v2+json", 10) {
		t.Fatal("the Docker manifest was not refused")
	}
	if send(http.MethodPut, repo+"/manifests/oci", "application/vnd.oci.image.manifest.v1+json", 10) {
		t.Fatal("the OCI manifest was refused")
	}
	send(http.MethodPatch, repo+"/blobs/uploads/a", "", 40)
	send(http.MethodPut, repo+"/blobs/uploads/a?digest="+dockerBlob.String(), "", 0)
	send(http.MethodPut, repo+"/blobs/uploads/b?digest="+shared.String(), "", 70)
	send(http.MethodPatch, repo+"/blobs/uploads/c", "", 5)

	refusals, got := tr.result(map[digest.Digest]int64{dockerBlob: 140})
	want := dockerBlobs{sent: 140, after: 40, blobsAfter: 1, uncommittedAfter: 5}
	if refusals != 1 || got != want {
		t.Errorf("got %d refusals, %+v; want 1, %+v", refusals, got, want)
	}
}
