package mirror

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
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Repo is a registry repository: oras-go's remote.Repository (embedded, so
// Mount and PushReference stay reachable) plus the two things oras-go lacks:
// ranged blob reads and resumable chunked uploads.
type Repo struct {
	*remote.Repository
}

// ChunkOptions tune a chunked upload.
type ChunkOptions struct {
	// Size is the body size of each PATCH.
	Size int64
	// Journal records each acknowledged chunk; nil records nothing.
	Journal *Journal
	// Settle is how long the upload offset must stay still before a resumed
	// upload continues: a registry may still be writing the body of a cut
	// request (distribution has no per-upload lock). <= 0 means 200ms.
	Settle time.Duration
}

// errChunkingUnsupported marks a registry that refuses chunked uploads.
var errChunkingUnsupported = errors.New("the registry does not accept chunked uploads")

// maxResyncs bounds how often one upload is resumed after a failure.
const maxResyncs = 12

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

// responseError turns a failed answer into oras-go's ErrorResponse, which
// carries the status for transport.Reason and the registry's error codes.
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
	return e
}

func hasCode(err error, code string) bool {
	var ec errcode.Error
	return errors.As(err, &ec) && ec.Code == code
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

// UploadChunked uploads desc with PATCH requests of opts.Size bytes, each
// acknowledged offset journaled. open returns the blob's bytes from an
// offset. A journaled upload is resumed from the offset the registry reports;
// a failed chunk is resumed the same way; an unknown or expired session, or
// a DIGEST_INVALID at the end, starts a fresh one.
func (r *Repo) UploadChunked(ctx context.Context, desc ocispec.Descriptor, open func(off int64) (io.ReadCloser, error), opts ChunkOptions) error {
	if opts.Settle <= 0 {
		opts.Settle = 200 * time.Millisecond
	}
	ctx = auth.AppendRepositoryScope(ctx, r.Reference, auth.ActionPull, auth.ActionPush)
	name := r.Reference.Registry + "/" + r.Reference.Repository
	entry := journalEntry{Repository: name, Digest: desc.Digest}
	var loc string
	var off int64
	resync := false // ask the registry for the offset before sending
	if e, ok := opts.Journal.load(name, desc.Digest); ok {
		loc, resync = e.Location, true
	}
	fresh, resyncs := 0, 0
	var err error
	for {
		if loc != "" && resync {
			next, at, serr := r.status(ctx, loc, opts.Settle)
			switch {
			case serr == nil:
				loc, off, resync = next, at, false
			case ctx.Err() != nil:
				return serr
			case transient(serr) && resyncs < maxResyncs:
				resyncs++ // keep the session: ask again
				if err := sleep(ctx, time.Duration(resyncs)*250*time.Millisecond); err != nil {
					return err
				}
				continue
			default:
				err, loc = serr, "" // the session is gone
			}
		}
		if loc == "" {
			// Before a fresh session: the blob may be complete already (a
			// lost answer to the final PUT, or another process).
			if ok, _ := r.Blobs().Exists(ctx, desc); ok {
				opts.Journal.remove(name, desc.Digest)
				return nil
			}
			if fresh++; fresh > 3 {
				return fmt.Errorf("uploading blob %s: could not complete after 3 fresh sessions: %w", desc.Digest, err)
			}
			if loc, err = r.start(ctx); err != nil {
				return err
			}
			off = 0
		}
		entry.Location, entry.Offset = stripState(loc), off
		if err := opts.Journal.save(entry); err != nil {
			return err
		}
		switch {
		case off < desc.Size:
			loc, off, err = r.sendChunks(ctx, desc, loc, off, open, opts, entry)
		case off > desc.Size:
			err = fmt.Errorf("the registry holds %d bytes of a %d-byte blob", off, desc.Size)
			r.cancel(ctx, loc)
			loc = ""
			continue
		default:
			if err = r.complete(ctx, loc, desc); err == nil {
				opts.Journal.remove(name, desc.Digest)
				return nil
			}
		}
		switch {
		case err == nil:
			continue // every chunk acknowledged: complete on the next pass
		case errors.Is(err, errChunkingUnsupported):
			r.cancel(ctx, loc)
			opts.Journal.remove(name, desc.Digest)
			return err
		case ctx.Err() != nil:
			return err // the journal keeps the last acknowledged chunk
		case unusable(err):
			r.cancel(ctx, loc)
			loc = ""
		case !transient(err) || resyncs >= maxResyncs:
			return fmt.Errorf("uploading blob %s: %w", desc.Digest, err)
		default:
			resyncs++
			if err := sleep(ctx, time.Duration(resyncs)*250*time.Millisecond); err != nil {
				return err
			}
			resync = true
		}
	}
}

// unusable reports an upload session that cannot go on: a digest the
// registry refused, an unknown or invalid session, or an offset mismatch.
func unusable(err error) bool {
	return hasCode(err, "DIGEST_INVALID") || hasCode(err, "BLOB_UPLOAD_INVALID") || hasCode(err, "BLOB_UPLOAD_UNKNOWN") ||
		statusOf(err) == http.StatusRequestedRangeNotSatisfiable
}

func statusOf(err error) int {
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start opens an upload session and returns its location.
func (r *Repo) start(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url("blobs/uploads/"), nil)
	if err != nil {
		return "", err
	}
	resp, err := r.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", responseError(resp)
	}
	return location(resp)
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
func (r *Repo) status(ctx context.Context, loc string, settle time.Duration) (string, int64, error) {
	last := int64(-1)
	for i := 0; i < 25; i++ {
		next, off, err := r.statusOnce(ctx, loc)
		if err != nil {
			return "", 0, err
		}
		if off == last {
			return next, off, nil
		}
		last, loc = off, next
		if err := sleep(ctx, settle); err != nil {
			return "", 0, err
		}
	}
	return "", 0, fmt.Errorf("the upload offset kept moving")
}

// statusOnce GETs the upload URL: with its state token first (distribution
// v2 and Harbor need it), then without it (distribution v3 answers by the
// upload's UUID alone, and a token written before a cut carries a stale
// offset).
func (r *Repo) statusOnce(ctx context.Context, loc string) (string, int64, error) {
	urls := []string{loc}
	if bare := stripState(loc); bare != loc {
		urls = append(urls, bare)
	}
	var firstErr error
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", 0, err
		}
		resp, err := r.do(req)
		if err != nil {
			return "", 0, err
		}
		if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			next, err := location(resp)
			return next, uploadOffset(resp), err
		}
		if firstErr == nil {
			firstErr = responseError(resp)
		}
		resp.Body.Close()
	}
	return "", 0, firstErr
}

// stripState removes the upload state token from an upload URL.
func stripState(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	q := u.Query()
	q.Del("_state")
	u.RawQuery = q.Encode()
	return u.String()
}

// sendChunks PATCHes the blob from off in chunks, journaling each
// acknowledged one, until every byte is sent or a request fails.
func (r *Repo) sendChunks(ctx context.Context, desc ocispec.Descriptor, loc string, off int64, open func(int64) (io.ReadCloser, error), opts ChunkOptions, entry journalEntry) (string, int64, error) {
	src, err := open(off)
	if err != nil {
		return loc, off, err
	}
	defer src.Close()
	for off < desc.Size {
		n := min(opts.Size, desc.Size-off)
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, io.LimitReader(src, n))
		if err != nil {
			return loc, off, err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		resp, err := r.do(req)
		if err != nil {
			return loc, off, err
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusNoContent, http.StatusCreated:
		case http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return loc, off, errChunkingUnsupported
		default:
			return loc, off, responseError(resp)
		}
		if loc, err = location(resp); err != nil {
			return loc, off, err
		}
		got := uploadOffset(resp)
		if got != off+n {
			return loc, off, fmt.Errorf("after a chunk to %d the registry holds %d bytes", off+n, got)
		}
		off = got
		entry.Location, entry.Offset = stripState(loc), off
		if err := opts.Journal.save(entry); err != nil {
			return loc, off, err
		}
	}
	return loc, off, nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), http.NoBody)
	if err != nil {
		return err
	}
	resp, err := r.do(req)
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
func (r *Repo) cancel(ctx context.Context, loc string) {
	if loc == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return
	}
	if resp, err := r.do(req); err == nil {
		resp.Body.Close()
	}
}
