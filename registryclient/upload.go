package registryclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/edgemirror/edgemirror/transport"
)

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
	// Retry says how long a failing upload goes on, when ctx carries no
	// budget (transport.WithBudget), and how often it may restart.
	Retry transport.Retry
	// Stop, once closed, ends the upload at the next chunk boundary: the
	// chunk in flight finishes and is journaled, then UploadChunked returns
	// ErrStopped. nil never stops.
	Stop <-chan struct{}
	// Restarted, when set, is called when the registry lost a session that
	// held bytes of the blob (distribution 2.8, Harbor and zot drop a
	// session whose chunk was cut mid-body) and the blob starts over from
	// byte 0; held is what the lost session held.
	Restarted func(held int64, cause error)
}

// UploadStats say what a chunked upload cost.
type UploadStats struct {
	// Sent counts the body bytes sent.
	Sent int64
	// Resent counts the bytes the registry held and lost, which are sent
	// again: what its lost sessions (of this run or an earlier one) held.
	Resent int64
	// Restarts counts the sessions lost while holding bytes of the blob.
	Restarts int
}

// ChunkUploader uploads a blob in resumable chunks: a Repo does, and so
// does a bundle being written (through a partial file).
type ChunkUploader interface {
	UploadChunked(ctx context.Context, desc ocispec.Descriptor, open func(off int64) (io.ReadCloser, error), opts ChunkOptions) (UploadStats, error)
}

// Both kinds of target resume large blobs (checked when compiled).
var _ ChunkUploader = (*Repo)(nil)

// ErrStopped marks work not done because the run was asked to stop; it is
// transport.ErrStopped, which a budget's wait also returns.
var ErrStopped = transport.ErrStopped

// ErrChunkingUnsupported marks a registry that refuses chunked uploads.
var ErrChunkingUnsupported = errors.New("the registry does not accept chunked uploads")

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// UploadChunked uploads desc with PATCH requests of opts.Size bytes, each
// acknowledged offset journaled with the session's URL (its state token
// included: distribution 2.8 and Harbor find a session only with it). open
// returns the blob's bytes from an offset. A journaled upload resumes from
// the offset the registry reports, and so does a failed chunk; a session the
// registry lost, or a DIGEST_INVALID at the end, starts the blob over. It
// goes on while its attempts make progress, as opts.Retry says.
func (r *Repo) UploadChunked(ctx context.Context, desc ocispec.Descriptor, open func(off int64) (io.ReadCloser, error), opts ChunkOptions) (UploadStats, error) {
	if opts.Settle <= 0 {
		opts.Settle = 200 * time.Millisecond
	}
	u := &chunkedUpload{r: r, desc: desc, open: open, opts: opts,
		entry: journalEntry{Repository: r.Reference.Registry + "/" + r.Reference.Repository, Digest: desc.Digest}}
	err := u.run(r.pushScope(ctx))
	// net/http may still read a failed request's body for a moment: read
	// the counter atomically.
	u.stats.Sent = u.sent.Load()
	return u.stats, err
}

// chunkedUpload is the state of one UploadChunked.
type chunkedUpload struct {
	r     *Repo
	desc  ocispec.Descriptor
	open  func(off int64) (io.ReadCloser, error)
	opts  ChunkOptions
	entry journalEntry
	stats UploadStats
	sent  atomic.Int64 // body bytes handed to the client

	loc   string // the session's URL, state token included; "" for none
	off   int64  // bytes the registry holds
	known bool   // off is what the registry said last; false: ask first
	lost  int64  // bytes the last lost session held, until the blob restarts
	why   error  // why it was lost
}

func (u *chunkedUpload) run(ctx context.Context) error {
	if e, ok := u.opts.Journal.load(u.entry.Repository, u.desc.Digest); ok {
		u.loc, u.off = e.Location, e.Offset
	}
	b := transport.BudgetFrom(ctx)
	if b == nil {
		b = u.opts.Retry.Start()
		b.Stop = u.opts.Stop
		ctx = transport.WithBudget(ctx, b)
	}
	for {
		progress, err := u.attempt(ctx)
		switch {
		case err == nil:
			u.opts.Journal.Remove(u.entry.Repository, u.desc.Digest)
			return nil
		case errors.Is(err, ErrChunkingUnsupported):
			u.r.cancel(ctx, u.loc)
			u.opts.Journal.Remove(u.entry.Repository, u.desc.Digest)
			return err
		case errors.Is(err, ErrStopped), ctx.Err() != nil:
			return err // the journal keeps the last acknowledged chunk
		case errors.Is(err, transport.ErrGaveUp):
			return fmt.Errorf("uploading blob %s: %w", u.desc.Digest, err)
		case unusable(err):
			u.lose(ctx, err)
		case !transport.Transient(err) && !errors.Is(err, errResync):
			return fmt.Errorf("uploading blob %s: %w", u.desc.Digest, err)
		default:
			u.known = false // ask the registry where it stands
		}
		if err := b.Failed(ctx, progress, err); err != nil {
			return fmt.Errorf("uploading blob %s: %w", u.desc.Digest, err)
		}
	}
}

// attempt brings the upload as far as it can: it finds or opens a session,
// sends the missing chunks and completes the blob. progress says whether
// the registry holds more of the blob than before: a chunk acknowledged, or
// the body of a cut chunk kept (distribution 3 keeps it).
func (u *chunkedUpload) attempt(ctx context.Context) (progress bool, err error) {
	if stopped(u.opts.Stop) {
		return false, ErrStopped
	}
	if u.loc != "" && !u.known {
		next, at, err := u.r.status(ctx, u.loc, u.opts.Settle)
		switch {
		case err == nil:
			progress = at > u.off
			u.loc, u.off, u.known = next, at, true
		case unusable(err):
			u.lose(ctx, err)
		default:
			return false, err
		}
	}
	if u.loc == "" {
		// Before a fresh session: the blob may be complete already (a
		// lost answer to the final PUT, or another process).
		if ok, _ := u.r.Blobs().Exists(ctx, u.desc); ok {
			return true, nil
		}
		if err := u.restart(); err != nil {
			return false, err
		}
		loc, err := u.r.start(ctx)
		if err != nil {
			return false, err
		}
		u.loc, u.off, u.known = loc, 0, true
		if err := u.journal(); err != nil {
			return false, err
		}
	}
	if u.off > u.desc.Size {
		return false, fmt.Errorf("%w: the registry holds %d bytes of a %d-byte blob", errSessionUnusable, u.off, u.desc.Size)
	}
	from := u.off
	err = u.sendChunks(ctx)
	if progress = progress || u.off > from; err != nil {
		return progress, err
	}
	if err := u.r.complete(ctx, u.loc, u.desc); err != nil {
		return progress, err // a refused completion is no progress by itself
	}
	return true, nil
}

// errSessionUnusable marks an upload session that cannot go on.
var errSessionUnusable = errors.New("upload session unusable")

// errResync marks an answer that leaves the offset in doubt: ask the
// registry where the upload stands before going on.
var errResync = errors.New("upload offset in doubt")

// unusable reports an upload session that cannot go on: a digest the
// registry refused, an unknown or invalid session, an offset mismatch, or
// a session the registry no longer has. Registries differ in the codes
// (distribution 2.8 answers a stale state with 404 BLOB_UPLOAD_INVALID,
// distribution 3 with 416), so any 400, 404 or 416 on a session counts.
func unusable(err error) bool {
	if errors.Is(err, errSessionUnusable) || errors.Is(err, errdef.ErrNotFound) ||
		hasCode(err, "DIGEST_INVALID") || hasCode(err, "BLOB_UPLOAD_INVALID") || hasCode(err, "BLOB_UPLOAD_UNKNOWN") {
		return true
	}
	switch StatusOf(err) {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestedRangeNotSatisfiable:
		return true
	}
	return false
}

// lose abandons the session; the next attempt starts the blob over.
func (u *chunkedUpload) lose(ctx context.Context, cause error) {
	u.lost, u.why = max(u.lost, u.off), cause
	u.r.cancel(ctx, u.loc)
	u.opts.Journal.Remove(u.entry.Repository, u.desc.Digest)
	u.loc, u.off, u.known = "", 0, false
}

// restart counts a blob started over from byte 0 after its registry lost a
// session that held bytes (unless the blob turned out complete): what the
// session held is sent again. A registry that loses every session (a link
// that always fails before the end, on a registry that cannot resume)
// fails the blob after Retry.MaxRestarts restarts.
func (u *chunkedUpload) restart() error {
	if u.lost == 0 {
		return nil
	}
	held, cause := u.lost, u.why
	u.lost, u.why = 0, nil
	if limit := u.opts.Retry.MaxRestarts(); u.stats.Restarts >= limit {
		return fmt.Errorf("%w: the registry lost the upload %d times (limit %d): %w", transport.ErrGaveUp, u.stats.Restarts+1, limit, cause)
	}
	u.stats.Resent += held
	u.stats.Restarts++
	if u.opts.Restarted != nil {
		u.opts.Restarted(held, cause)
	}
	return nil
}

func (u *chunkedUpload) journal() error {
	u.entry.Location, u.entry.Offset = u.loc, u.off
	return u.opts.Journal.save(u.entry)
}

// sendChunks PATCHes the blob from u.off in chunks, journaling each
// acknowledged one, until every byte is sent, a request fails or the run is
// asked to stop (between chunks: a chunk cut mid-body loses the session on
// distribution 2.8, Harbor and zot).
func (u *chunkedUpload) sendChunks(ctx context.Context) error {
	if u.off == u.desc.Size {
		return nil
	}
	src, err := u.open(u.off)
	if err != nil {
		return err
	}
	defer src.Close()
	for u.off < u.desc.Size {
		if stopped(u.opts.Stop) {
			return ErrStopped
		}
		n := min(u.opts.Size, u.desc.Size-u.off)
		body := &countingReader{r: io.LimitReader(src, n), n: &u.sent}
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u.loc, body)
		if err != nil {
			return err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", u.off, u.off+n-1))
		resp, err := u.r.do(req)
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusNoContent, http.StatusCreated:
			resp.Body.Close()
		case http.StatusMethodNotAllowed, http.StatusNotImplemented:
			resp.Body.Close()
			return ErrChunkingUnsupported
		default:
			defer resp.Body.Close()
			return responseError(resp)
		}
		if u.loc, err = location(resp); err != nil {
			return err
		}
		if got := uploadOffset(resp); got != u.off+n {
			return fmt.Errorf("%w: after a chunk to %d the registry holds %d bytes", errResync, u.off+n, got)
		}
		u.off += n
		if err := u.journal(); err != nil {
			return err
		}
	}
	return nil
}

// countingReader adds the bytes read to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}
