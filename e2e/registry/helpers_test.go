package registry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"oras.land/oras-go/v2/content"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forKinds runs test once per registry kind, as parallel subtests named
// after the kind.
func forKinds(t *testing.T, test func(t *testing.T, kind registry.Kind)) {
	t.Helper()
	for _, kind := range registry.Kinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

// pushPull pushes img to ref, then pulls its manifest and every blob back
// and checks them against what was pushed.
func pushPull(t *testing.T, ctx context.Context, tgt imagebuild.Target, ref string, img imagebuild.Image) *imagebuild.Built {
	t.Helper()
	b, err := imagebuild.PushImage(ctx, tgt, ref, img)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, data, err := imagebuild.FetchManifest(ctx, tgt, ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if d.Digest != b.Descriptor.Digest || !bytes.Equal(data, b.Manifest) {
		t.Fatalf("pull %s: manifest %s, pushed %s", ref, d.Digest, b.Descriptor.Digest)
	}
	repo, err := tgt.Repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range b.Blobs() {
		rc, err := repo.Blobs().Fetch(ctx, desc)
		if err != nil {
			t.Fatalf("pull blob %s of %s: %v", desc.Digest, ref, err)
		}
		_, err = content.ReadAll(rc, desc) // checks size and digest
		rc.Close()
		if err != nil {
			t.Fatalf("pull blob %s of %s: %v", desc.Digest, ref, err)
		}
	}
	return b
}

// do sends one raw request and returns the response with its body read.
func do(t *testing.T, c *http.Client, method, u string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return resp, data
}
