package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"github.com/edgemirror/edgemirror/transport"
)

// read streams blob b from the source from offset off, reporting progress;
// a read cut mid-way continues from where it stopped with a ranged request,
// as the blob's budget in ctx allows (Options.Retry when there is none).
func (e *engine) read(ctx context.Context, src oras.ReadOnlyTarget, b ocispec.Descriptor, off int64) (*progressReader, error) {
	open := func(off int64) (io.ReadCloser, error) {
		rc, err := fetchFrom(ctx, src, b, off)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				return nil, fmt.Errorf("blob %s is referenced but missing at the source: %w", b.Digest, err)
			}
			return nil, fmt.Errorf("fetching blob %s: %w", b.Digest, err)
		}
		return rc, nil
	}
	rc, err := open(off)
	if err != nil {
		return nil, err
	}
	if h := e.opts.Hooks.BlobStart; h != nil {
		h(b, off)
	}
	budget := transport.BudgetFrom(ctx)
	if budget == nil {
		budget = e.opts.Retry.Start()
		budget.Stop = e.opts.Stop
	}
	rr := &resumingReader{ctx: ctx, open: open, rc: rc, off: off, budget: budget}
	return &progressReader{rc: rr, desc: b, hooks: e.opts.Hooks}, nil
}

// fetchFrom reads blob b of src from offset off: with a ranged request
// where src can, otherwise by skipping the first off bytes.
func fetchFrom(ctx context.Context, src oras.ReadOnlyTarget, b ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	if rf, ok := src.(rangeFetcher); ok {
		return rf.FetchRange(ctx, b, off)
	}
	rc, err := src.Fetch(ctx, b)
	if err == nil && off > 0 {
		if _, err = io.CopyN(io.Discard, rc, off); err != nil {
			rc.Close()
			return nil, err
		}
	}
	return rc, err
}

// resumingReader reopens its source at the current offset when a read is
// cut, as its budget allows. Close may come from another goroutine
// while a Read is under way: net/http can still be reading a request body
// when the request has already failed. The source reader is not safe for a
// Close during its Read, so such a Close only marks the reader closed and
// the Read closes the source when it returns.
type resumingReader struct {
	ctx    context.Context
	open   func(off int64) (io.ReadCloser, error)
	off    int64 // read by Read only
	since  int64 // bytes read since the source was last opened; Read only
	budget *transport.Budget

	mu      sync.Mutex
	rc      io.ReadCloser // replaced by Read only, while reading
	reading bool
	closed  bool
}

// errReaderClosed ends a Read racing with Close.
var errReaderClosed = errors.New("blob reader closed")

// isClosed reports whether Close was called.
func (r *resumingReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *resumingReader) Read(p []byte) (n int, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errReaderClosed
	}
	r.reading = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reading = false
		if r.closed {
			r.rc.Close() // closed while this Read ran
			err = errReaderClosed
		}
	}()
	for {
		n, err = r.rc.Read(p)
		r.off += int64(n)
		r.since += int64(n)
		if err == nil || err == io.EOF || r.ctx.Err() != nil ||
			!(errors.Is(err, io.ErrUnexpectedEOF) || transport.Transient(err)) {
			return n, err
		}
		if ferr := r.budget.Failed(r.ctx, r.since > 0, err); ferr != nil {
			return n, ferr
		}
		if r.isClosed() {
			return n, err
		}
		r.since = 0
		next, oerr := r.open(r.off)
		if oerr != nil {
			return n, fmt.Errorf("%w (resuming the read at %d: %v)", err, r.off, oerr)
		}
		r.rc.Close()
		r.rc = next
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.reading {
		return nil // the Read under way closes the source
	}
	return r.rc.Close()
}

// progressReader reports bytes as they are read, and its end, and counts
// them (net/http may still read a request body after the request failed:
// n is read atomically).
type progressReader struct {
	rc     io.ReadCloser
	desc   ocispec.Descriptor
	hooks  Hooks
	n      atomic.Int64
	closed atomic.Bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.n.Add(int64(n))
	if n > 0 && p.hooks.Progress != nil {
		p.hooks.Progress(p.desc, int64(n))
	}
	return n, err
}

func (p *progressReader) Close() error {
	if !p.closed.Swap(true) && p.hooks.BlobEnd != nil {
		p.hooks.BlobEnd(p.desc)
	}
	return p.rc.Close()
}
