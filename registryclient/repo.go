package registryclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/edgemirror/edgemirror/transport"
)

// Repo is a registry repository: oras-go's remote.Repository (embedded, so
// Mount and PushReference stay reachable) plus what oras-go lacks: ranged
// blob reads, resumable chunked uploads, mounts that leave no session open,
// and a push-rights check.
type Repo struct {
	*remote.Repository
}

func (r *Repo) scheme() string {
	if r.PlainHTTP {
		return "http"
	}
	return "https"
}

func (r *Repo) url(path string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s", r.scheme(), r.Reference.Host(), r.Reference.Repository, path)
}

// do sends a request through the repository's client.
func (r *Repo) do(req *http.Request) (*http.Response, error) {
	c := r.Client
	if c == nil {
		c = auth.DefaultClient
	}
	return c.Do(req)
}

// request sends a bodyless request to u and returns the answer.
func (r *Repo) request(ctx context.Context, method, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	return r.do(req)
}

// responseError turns a failed answer into oras-go's ErrorResponse, which
// carries the status for transport.Reason and the registry's error codes;
// a Retry-After comes along as a transport.RetryAfterError.
func responseError(resp *http.Response) error {
	e := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct {
		Errors errcode.Errors `json:"errors"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 8<<10)).Decode(&body) == nil {
		e.Errors = body.Errors
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", errdef.ErrNotFound, e)
	}
	if d, ok := transport.RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return &transport.RetryAfterError{Err: e, Wait: d}
	}
	return e
}

func hasCode(err error, code string) bool {
	var ec errcode.Error
	return errors.As(err, &ec) && ec.Code == code
}

// StatusOf returns the HTTP status of a registry's refusal, or 0.
func StatusOf(err error) int {
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode
	}
	return 0
}

// FetchRange reads blob desc from byte offset off with an HTTP Range request
// (a fresh request each time: seeking a reader whose connection died does
// not reconnect it).
func (r *Repo) FetchRange(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	if off == 0 {
		return r.Fetch(ctx, desc)
	}
	ctx = auth.AppendRepositoryScope(ctx, r.Reference, auth.ActionPull)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url("blobs/"+desc.Digest.String()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	resp, err := r.do(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		return resp.Body, nil
	case http.StatusOK:
		// The registry ignored the range: skip what was already read.
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			resp.Body.Close()
			return nil, err
		}
		return resp.Body, nil
	default:
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
}

// pushScope adds the pull and push scope of the repository to ctx, so a
// token server is asked for both at once.
func (r *Repo) pushScope(ctx context.Context) context.Context {
	return auth.AppendRepositoryScope(ctx, r.Reference, auth.ActionPull, auth.ActionPush)
}

// start opens an upload session and returns its location.
func (r *Repo) start(ctx context.Context) (string, error) {
	resp, err := r.request(ctx, http.MethodPost, r.url("blobs/uploads/"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", responseError(resp)
	}
	return location(resp)
}

// CheckPush opens an upload session in the repository and cancels it: it
// proves that the credentials may push there (a Harbor project that does not
// exist, a read-only account and a pull-only token all fail here) without
// sending a byte of content.
func (r *Repo) CheckPush(ctx context.Context) error {
	loc, err := r.start(r.pushScope(ctx))
	if err != nil {
		return err
	}
	r.cancel(ctx, loc)
	return nil
}

// MountBlob asks the registry to mount desc from the repository from (a
// path without the host) and reports whether it did. An empty from asks a
// registry that mounts from its whole store (zot ignores "from") without
// naming one. A registry that does not mount answers with an upload
// session instead; MountBlob cancels it, where oras-go's Mount would leave
// it open.
func (r *Repo) MountBlob(ctx context.Context, desc ocispec.Descriptor, from string) (bool, error) {
	ctx = r.pushScope(ctx)
	q := url.Values{"mount": {desc.Digest.String()}}
	if from != "" {
		ctx = auth.AppendRepositoryScope(ctx, registry.Reference{Registry: r.Reference.Registry, Repository: from}, auth.ActionPull)
		q.Set("from", from)
	}
	resp, err := r.request(ctx, http.MethodPost, r.url("blobs/uploads/")+"?"+q.Encode())
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, nil
	case http.StatusAccepted:
		if loc, err := location(resp); err == nil {
			r.cancel(ctx, loc)
		}
		return false, nil
	}
	return false, responseError(resp)
}

// location resolves the Location header of an upload answer.
func location(resp *http.Response) (string, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return "", fmt.Errorf("%s %s: the registry sent no upload Location", resp.Request.Method, resp.Request.URL.Redacted())
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return "", fmt.Errorf("upload Location: %w", err)
	}
	return u.String(), nil
}

// uploadOffset reads the Range header "0-N" of an upload answer: N+1 bytes
// held. distribution answers "0-0" for an empty upload as for one byte; 0 is
// assumed, and a wrong guess ends in 416, which restarts the session.
func uploadOffset(resp *http.Response) int64 {
	rg := strings.TrimPrefix(resp.Header.Get("Range"), "bytes=")
	_, end, ok := strings.Cut(rg, "-")
	n, err := strconv.ParseInt(end, 10, 64)
	if !ok || err != nil || n <= 0 {
		return 0
	}
	return n + 1
}

// status asks the registry how many bytes of the upload it holds, waiting
// until that number stops moving (a cut request may still be draining).
// It GETs the upload URL with its state token: distribution 2.8 and Harbor
// find the session only with it (and drop it when the token's offset is not
// what they hold, as after a chunk cut mid-body); distribution 3 and zot
// find it by its UUID.
func (r *Repo) status(ctx context.Context, loc string, settle time.Duration) (string, int64, error) {
	last := int64(-1)
	for i := 0; i < 25; i++ {
		resp, err := r.request(ctx, http.MethodGet, loc)
		if err != nil {
			return "", 0, err
		}
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return "", 0, responseError(resp)
		}
		resp.Body.Close()
		next, err := location(resp)
		if err != nil {
			return "", 0, err
		}
		off := uploadOffset(resp)
		if off == last {
			return next, off, nil
		}
		last, loc = off, next
		if err := transport.Sleep(ctx, settle); err != nil {
			return "", 0, err
		}
	}
	return "", 0, fmt.Errorf("the upload offset kept moving")
}

// complete closes the upload under the blob's digest; the registry checks it.
func (r *Repo) complete(ctx context.Context, loc string, desc ocispec.Descriptor) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", desc.Digest.String())
	u.RawQuery = q.Encode()
	resp, err := r.request(ctx, http.MethodPut, u.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return responseError(resp)
	}
	return nil
}

// cancel abandons an upload session; failures do not matter, sessions expire.
// It runs even when ctx has ended (an interrupted run still tidies up), for
// a few seconds at most.
func (r *Repo) cancel(ctx context.Context, loc string) {
	if loc == "" {
		return
	}
	// Not on the blob's budget either: a tidy-up must not spend it, nor
	// wait for a transfer slot.
	ctx, stop := context.WithTimeout(transport.WithBudget(context.WithoutCancel(ctx), nil), 5*time.Second)
	defer stop()
	if resp, err := r.request(ctx, http.MethodDelete, loc); err == nil {
		resp.Body.Close()
	}
}
