package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/transport"
)

// digestLock returns the mutex that serializes the placements of d.
func (e *engine) digestLock(d digest.Digest) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.locks[d]
	if !ok {
		l = &sync.Mutex{}
		e.locks[d] = l
	}
	return l
}

// known reports whether repo holds d, and another repository of the same
// registry that does (a mount source).
func (e *engine) known(d digest.Digest, repo string) (here bool, other string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.where[d] {
		if r == repo {
			return true, ""
		}
		if sameHost(r, repo) {
			other = r
		}
	}
	return false, other
}

func (e *engine) remember(d digest.Digest, repo string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Contains(e.where[d], repo) {
		e.where[d] = append(e.where[d], repo)
	}
}

// Outcome is how a blob came to be in place.
type Outcome int

// The outcomes of a blob.
const (
	Skipped  Outcome = iota // the target repository had it already
	Mounted                 // mounted from another repository of the target
	Uploaded                // sent from the source
)

// placeBlob makes blob b of manifest owner exist in the image's target
// repository: skip it when known or found there, mount it from another
// target repository that holds it, or stream it from the source.
// Placements of one digest are serialized, so concurrent images needing the
// same layer send it once and mount it after; a failure is not remembered,
// the next placement tries again. Every request about the blob draws its
// retries from one budget (Options.Retry).
func (e *engine) placeBlob(ctx context.Context, j *imageJob, owner, b ocispec.Descriptor) error {
	src, dst, repo := j.src, j.dst, j.repo
	if here, _ := e.known(b.Digest, repo); here {
		e.done(b, Skipped)
		return nil
	}
	l := e.digestLock(b.Digest)
	l.Lock()
	defer l.Unlock()
	here, other := e.known(b.Digest, repo)
	if here {
		e.done(b, Skipped)
		return nil
	}
	budget := e.opts.Retry.Start()
	budget.Stop = e.opts.Stop
	ctx = transport.WithBudget(ctx, budget)
	if m, ok := dst.(blobMounter); ok && e.mount(ctx, m, b, repo, other) {
		e.remember(b.Digest, repo)
		e.opts.Journal.Remove(repo, b.Digest) // an earlier run's upload is not needed
		e.done(b, Mounted)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A refused or failed mount is not fatal: look, then upload.
	ok, err := dst.Exists(ctx, b)
	if err != nil {
		return fmt.Errorf("checking blob %s at the target: %w", b.Digest, err)
	}
	if ok {
		e.remember(b.Digest, repo)
		e.opts.Journal.Remove(repo, b.Digest) // an earlier run's upload is not needed
		e.done(b, Skipped)
		return nil
	}
	if err := e.upload(ctx, src, dst, repo, owner, b); err != nil {
		return err
	}
	e.remember(b.Digest, repo)
	e.done(b, Uploaded)
	return nil
}

// mount tries to mount b into repo and reports whether it did: from other
// (a target repository known this run to hold it), or one an earlier run
// left it in (Options.Remembered). A registry that mounts from its whole
// store whatever "from" says (zot) is asked without one, for every blob:
// it may hold the blob where no run of ours put it. Whether the host does
// is learned from mounts asked first without "from", until one tells: zot
// answers 201; distribution opens an upload session (cancelled), and when
// the mount asked again with "from" succeeds, the host needs "from".
func (e *engine) mount(ctx context.Context, m blobMounter, b ocispec.Descriptor, repo, other string) bool {
	host := hostOf(repo)
	if other == "" {
		for _, r := range e.opts.Remembered[b.Digest] {
			if r != repo && hostOf(r) == host {
				other = r
				break
			}
		}
	}
	known, probed := e.fromless.Load(host)
	switch {
	case probed && known.(bool):
		ok, _ := m.MountBlob(ctx, b, "")
		return ok
	case other == "":
		return false
	case !probed:
		if ok, _ := m.MountBlob(ctx, b, ""); ok {
			e.fromless.Store(host, true)
			return true
		}
	}
	ok, _ := m.MountBlob(ctx, b, repoPath(other))
	if ok && !probed {
		// The blob was there, yet not without "from".
		e.fromless.LoadOrStore(host, false)
	}
	return ok
}

// slot is the transfer slot of one blob upload. The upload gives it up
// while it waits to try again, so a blob backing off does not hold up the
// others. The wait may happen on another goroutine (net/http reads a
// request body, and so resumes a cut source read, on its own), even after
// the upload has returned: once closed, a slot is never taken again.
type slot struct {
	e      *engine
	mu     sync.Mutex
	held   bool
	closed bool
}

// errSlotClosed ends a wait of an upload that is over.
var errSlotClosed = errors.New("the upload is over")

// take waits for a free slot; a graceful stop ends the wait.
func (s *slot) take(ctx context.Context) error {
	s.mu.Lock()
	closed, held := s.closed, s.held
	s.mu.Unlock()
	switch {
	case closed:
		return errSlotClosed
	case held:
		return nil
	}
	select {
	case s.e.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.e.opts.Stop:
		return registryclient.ErrStopped
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.e.opts.Stop:
		<-s.e.slots // the stop and a free slot came together
		return registryclient.ErrStopped
	default:
	}
	switch {
	case s.closed:
		<-s.e.slots
		return errSlotClosed
	case s.held: // taken meanwhile by the other goroutine
		<-s.e.slots
		return nil
	}
	s.held = true
	return nil
}

// give frees the slot, if held.
func (s *slot) give() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		<-s.e.slots
		s.held = false
	}
}

// close frees the slot for good.
func (s *slot) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.give()
}

// upload streams b from the source to the target in one transfer slot,
// given up while a retry waits. A chunked upload resumes and retries by
// itself; a whole-blob PUT cannot be replayed by the HTTP client, so one that
// fails for a passing reason (network, 5xx, 429, expired token) is started
// over here. Both draw on the blob's budget in ctx.
func (e *engine) upload(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, repo string, owner, b ocispec.Descriptor) error {
	s := &slot{e: e}
	if err := s.take(ctx); err != nil {
		return err
	}
	defer s.close()
	// The target may have refused a Docker manifest while this blob of a
	// Docker image waited for its slot: then it is not sent.
	if err := e.dockerRefused(repo, owner); err != nil {
		return err
	}
	budget := transport.BudgetFrom(ctx)
	budget.Begin() // --retry-for counts from the transfer, not the queue
	budget.Idle = func(ctx context.Context, wait func() error) error {
		s.give()
		if err := wait(); err != nil {
			return err
		}
		return s.take(ctx)
	}
	if cu, ok := dst.(registryclient.ChunkUploader); ok && b.Size > e.opts.ChunkThreshold && !e.refusesChunks(repo) {
		st, err := cu.UploadChunked(ctx, b, func(off int64) (io.ReadCloser, error) { return e.read(ctx, src, b, off) },
			registryclient.ChunkOptions{Size: e.opts.ChunkSize, Journal: e.opts.Journal, Retry: e.opts.Retry, Stop: e.opts.Stop,
				Restarted: func(held int64, cause error) {
					if h := e.opts.Hooks.BlobRestarted; h != nil {
						h(b, held, cause)
					}
				}})
		e.counts.restarted.Add(int64(st.Restarts))
		e.bytes.resent.Add(st.Resent)
		if !errors.Is(err, registryclient.ErrChunkingUnsupported) {
			return err
		}
		e.noChunks.Store(hostOf(repo), true)
	}
	var sent int64
	defer func() { e.bytes.resent.Add(max(0, sent-b.Size)) }()
	for {
		n, err := e.uploadWhole(ctx, src, dst, b)
		sent += n
		if err == nil || !(transport.Transient(err) || expiredDuringPush(err)) || ctx.Err() != nil {
			return err
		}
		// A whole-blob PUT keeps nothing of a failed attempt: no progress.
		if err := budget.Failed(ctx, false, err); err != nil {
			return fmt.Errorf("uploading blob %s: %w", b.Digest, err)
		}
	}
}

// refusesChunks reports whether the registry of repo refused a chunked
// upload this run.
func (e *engine) refusesChunks(repo string) bool {
	_, ok := e.noChunks.Load(hostOf(repo))
	return ok
}

// uploadWhole streams b in one PUT and says how many bytes it read.
func (e *engine) uploadWhole(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, b ocispec.Descriptor) (int64, error) {
	rc, err := e.read(ctx, src, b, 0)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if err := dst.Push(ctx, b, rc); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return rc.n.Load(), &pushError{digest: b.Digest, err: err}
	}
	return rc.n.Load(), nil
}

// pushError is a whole-blob upload the target refused.
type pushError struct {
	digest digest.Digest
	err    error
}

func (p *pushError) Error() string { return fmt.Sprintf("uploading blob %s: %v", p.digest, p.err) }
func (p *pushError) Unwrap() error { return p.err }

// expiredDuringPush reports a 401 to a whole-blob PUT. oras-go sends the
// PUT with the token of the POST that opened the session and does not
// renew it, so a Bearer token that expires between the two (or while the
// body streams through a slow link) ends the PUT with 401; the next
// attempt's POST fetches a fresh token. The credentials themselves were
// checked before the run.
func expiredDuringPush(err error) bool {
	var p *pushError
	return errors.As(err, &p) && transport.Reason(err) == transport.ReasonUnauthorized
}

// done counts a placed blob.
func (e *engine) done(b ocispec.Descriptor, how Outcome) {
	if h := e.opts.Hooks.BlobPlaced; h != nil {
		h(b, how)
	}
	switch how {
	case Uploaded:
		e.counts.uploaded.Add(1)
		e.bytes.uploaded.Add(b.Size)
	case Mounted:
		e.counts.mounted.Add(1)
		e.bytes.mounted.Add(b.Size)
	default:
		e.counts.skipped.Add(1)
	}
}

func sameHost(a, b string) bool { return hostOf(a) == hostOf(b) }

// repoPath drops the host from a full repository name.
func repoPath(name string) string {
	_, p, _ := strings.Cut(name, "/")
	return p
}
