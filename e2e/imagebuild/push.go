package imagebuild

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Target says how to reach a registry. The zero value is HTTPS with the
// system CAs and no credentials.
type Target struct {
	// PlainHTTP talks plain HTTP.
	PlainHTTP bool
	// RootCAs are the CAs trusted for HTTPS; nil means CAFile, or the
	// system pool.
	RootCAs *x509.CertPool
	// CAFile is a PEM file of CAs trusted for HTTPS (used when RootCAs is
	// nil).
	CAFile string
	// Insecure skips TLS verification.
	Insecure bool
	// Username and Password are basic-auth credentials, sent when the
	// registry asks; empty Username means anonymous.
	Username, Password string
	// Client, when non-nil, is the HTTP client used (its transport then
	// decides TLS); nil means a fresh client without retries.
	Client *http.Client
	// Reupload pushes blobs even when the registry already has them;
	// by default existing blobs (HEAD) are skipped.
	Reupload bool
	// Concurrency is the number of blobs pushed at once; <= 0 means 4.
	Concurrency int
}

// httpClient returns the client described by t.
func (t Target) httpClient() (*http.Client, error) {
	if t.Client != nil {
		return t.Client, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // loopback registries only; never an environment proxy
	pool := t.RootCAs
	if pool == nil && t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("imagebuild: CA file %s: no PEM certificate", t.CAFile)
		}
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, InsecureSkipVerify: t.Insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // Insecure is the caller's explicit choice
	return &http.Client{Transport: tr}, nil
}

// Repository returns an oras remote repository for ref ("HOST/REPO",
// optionally with ":TAG" or "@DIGEST", which are ignored) set up as t says.
func (t Target) Repository(ref string) (*remote.Repository, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	r.Reference = ""
	repo, err := remote.NewRepository(r.String())
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	hc, err := t.httpClient()
	if err != nil {
		return nil, err
	}
	ac := &auth.Client{Client: hc, Cache: auth.NewCache()}
	if t.Username != "" {
		ac.Credential = auth.StaticCredential(r.Registry, auth.Credential{Username: t.Username, Password: t.Password})
	}
	repo.Client = ac
	repo.PlainHTTP = t.PlainHTTP
	return repo, nil
}

// Push pushes b to ref, "HOST/REPO:TAG" (tagged) or "HOST/REPO" (by digest
// only; "HOST/REPO@DIGEST" too, when DIGEST is b's): the blobs first
// (skipping those present, unless t.Reupload), then the manifests, children
// before their index.
func Push(ctx context.Context, t Target, ref string, b *Built) error {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	tag := ""
	if r.Reference != "" {
		if d, err := r.Digest(); err == nil {
			if d != b.Descriptor.Digest {
				return fmt.Errorf("imagebuild: %s: built digest is %s", ref, b.Descriptor.Digest)
			}
		} else {
			tag = r.Reference
		}
	}
	repo, err := t.Repository(ref)
	if err != nil {
		return err
	}
	if err := pushBlobs(ctx, t, repo, b.Blobs(), b); err != nil {
		return fmt.Errorf("imagebuild: push %s: %w", ref, err)
	}
	ms := b.Manifests()
	for i, d := range ms {
		body := bytes.NewReader(manifestBytes(b, d.Digest))
		if i == len(ms)-1 && tag != "" {
			err = repo.PushReference(ctx, d, body, tag)
		} else {
			err = repo.Manifests().Push(ctx, d, body)
		}
		if err != nil {
			return fmt.Errorf("imagebuild: push %s: manifest %s: %w", ref, d.Digest, err)
		}
	}
	return nil
}

func manifestBytes(b *Built, d digest.Digest) []byte {
	data, _, _ := b.find(d)
	return data
}

// pushBlobs pushes blobs concurrently; the first error cancels the rest.
func pushBlobs(ctx context.Context, t Target, repo *remote.Repository, blobs []ocispec.Descriptor, src *Built) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := t.Concurrency
	if n <= 0 {
		n = 4
	}
	sem := make(chan struct{}, n)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for _, d := range blobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if !t.Reupload {
				ok, err := repo.Blobs().Exists(ctx, d)
				if err != nil {
					fail(fmt.Errorf("blob %s: %w", d.Digest, err))
					return
				}
				if ok {
					return
				}
			}
			rc, err := src.Fetch(ctx, d)
			if err != nil {
				fail(err)
				return
			}
			defer rc.Close()
			if err := repo.Blobs().Push(ctx, d, rc); err != nil {
				fail(fmt.Errorf("blob %s: %w", d.Digest, err))
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// PushImage builds img and pushes it to ref (see Push).
func PushImage(ctx context.Context, t Target, ref string, img Image) (*Built, error) {
	b, err := img.Build()
	if err != nil {
		return nil, err
	}
	return b, Push(ctx, t, ref, b)
}

// PushIndex builds idx and pushes it to ref (see Push).
func PushIndex(ctx context.Context, t Target, ref string, idx Index) (*Built, error) {
	b, err := idx.Build()
	if err != nil {
		return nil, err
	}
	return b, Push(ctx, t, ref, b)
}

// ManifestDigests resolves each of refs ("REPO:TAG" or "REPO@DIGEST", on
// registry host, e.g. "127.0.0.1:5000") with a manifest HEAD and returns
// the digests by ref. A ref the registry does not have is left out of the
// map; any other failure is an error.
func ManifestDigests(ctx context.Context, t Target, host string, refs ...string) (map[string]digest.Digest, error) {
	out := make(map[string]digest.Digest, len(refs))
	for _, ref := range refs {
		full := host + "/" + ref
		repo, err := t.Repository(full)
		if err != nil {
			return nil, err
		}
		r, err := registry.ParseReference(full)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
		d, err := repo.Resolve(ctx, r.Reference)
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("imagebuild: resolve %s: %w", full, err)
		}
		out[ref] = d.Digest
	}
	return out, nil
}

// FetchManifest fetches the manifest at ref ("HOST/REPO:TAG" or
// "HOST/REPO@DIGEST") and returns its descriptor and exact bytes.
func FetchManifest(ctx context.Context, t Target, ref string) (ocispec.Descriptor, []byte, error) {
	repo, err := t.Repository(ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("imagebuild: %w", err)
	}
	d, rc, err := repo.FetchReference(ctx, r.Reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("imagebuild: fetch %s: %w", ref, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 4<<20+1))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("imagebuild: fetch %s: %w", ref, err)
	}
	if digest.FromBytes(data) != d.Digest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("imagebuild: fetch %s: content does not match digest %s", ref, d.Digest)
	}
	return d, data, nil
}
