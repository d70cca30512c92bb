package registryclient

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgemirror/edgemirror/transport"
)

// simTestRepo is the repository the upload tests write to.
const simTestRepo = "edge/app"

// upload is one UploadChunked of a test blob into a simulator.
type upload struct {
	t    *testing.T
	sim  *registrySim
	repo *Repo
	data []byte
	desc ocispec.Descriptor
	opts ChunkOptions

	mu        sync.Mutex
	restarted []int64 // held, per Restarted call
}

// newUpload prepares the upload of a testSize blob to a fresh simulator
// in mode, with a journal.
func newUpload(t *testing.T, mode simMode, simOpts ...simOption) *upload {
	t.Helper()
	u := &upload{t: t, sim: newRegistrySim(t, mode, simOpts...)}
	u.repo = u.sim.repo(t, simTestRepo, nil)
	u.data, u.desc = testBlob(testSize)
	u.opts = chunkOpts(testJournal(t))
	u.opts.Restarted = func(held int64, _ error) {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.restarted = append(u.restarted, held)
	}
	return u
}

// run uploads the blob once with the current options.
func (u *upload) run(ctx context.Context) (UploadStats, error) {
	return u.repo.UploadChunked(ctx, u.desc, opener(u.data), u.opts)
}

// mustRun uploads the blob and fails the test unless it is complete and
// stored, its journal entry removed.
func (u *upload) mustRun() UploadStats {
	u.t.Helper()
	st, err := u.run(context.Background())
	if err != nil {
		u.t.Fatalf("upload: %v (stats %+v)", err, st)
	}
	checkStored(u.t, u.sim, simTestRepo, u.data)
	if e, ok := u.entry(); ok {
		u.t.Errorf("the journal still holds %+v", e)
	}
	return st
}

// entry returns the journal entry of the blob.
func (u *upload) entry() (journalEntry, bool) {
	return u.opts.Journal.load(u.repo.Reference.Registry+"/"+simTestRepo, u.desc.Digest)
}

// restarts returns the held values the Restarted hook got.
func (u *upload) restarts() []int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int64(nil), u.restarted...)
}

// stopAfter makes the upload stop once the registry got chunk k.
func (u *upload) stopAfter(k int) {
	stop := make(chan struct{})
	var once sync.Once
	u.opts.Stop = stop
	u.sim.onRequest(func(r simRequest) simFault {
		if r.Method == http.MethodPatch && r.N == k {
			once.Do(func() { close(stop) })
		}
		return simFault{}
	})
}

// stopped runs an upload that stops after chunk k and checks what it
// leaves: ErrStopped, k chunks sent, a journal entry at offset k chunks
// with the session's state (where the mode has one).
func (u *upload) stopped(k int) {
	u.t.Helper()
	u.stopAfter(k)
	st, err := u.run(context.Background())
	if !errors.Is(err, ErrStopped) || st.Sent != int64(k*testChunk) {
		u.t.Fatalf("stopped upload: %v, %+v", err, st)
	}
	e, ok := u.entry()
	if !ok || e.Offset != int64(k*testChunk) || strings.Contains(e.Location, "_state=") != (u.sim.mode != simZot) {
		u.t.Fatalf("journal after a stop: %+v %v", e, ok)
	}
	u.opts.Stop = nil
	u.sim.onRequest(nil)
	u.repo = u.sim.repo(u.t, simTestRepo, nil) // a new process
}

// forModes runs f as a subtest on each simulator mode.
func forModes(t *testing.T, f func(t *testing.T, mode simMode)) {
	for _, m := range simModes {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

func TestUploadChunkedClean(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		st := u.mustRun()
		if st != (UploadStats{Sent: testSize}) {
			t.Errorf("stats %+v, want exactly one pass", st)
		}
		if n := u.sim.count(http.MethodPatch, "upload"); n != testSize/testChunk {
			t.Errorf("%d PATCHes, want %d", n, testSize/testChunk)
		}
		if u.sim.openSessions() != 0 || u.sim.count(http.MethodPost, "start") != 1 {
			t.Errorf("%d sessions open, %d opened", u.sim.openSessions(), u.sim.count(http.MethodPost, "start"))
		}
	})
}

func TestUploadChunkedResumeAfterStop(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		const k = 3
		u := newUpload(t, mode)
		u.stopped(k)
		st := u.mustRun()
		if st != (UploadStats{Sent: testSize - k*testChunk}) {
			t.Errorf("resumed upload: %+v, want only the rest sent", st)
		}
		if u.sim.count(http.MethodPost, "start") != 1 || u.sim.received() != testSize {
			t.Errorf("%d sessions opened, %d bytes received", u.sim.count(http.MethodPost, "start"), u.sim.received())
		}
	})
}

func TestUploadChunkedCutMidBody(t *testing.T) {
	const acked, cut = 3 * testChunk, 300
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.sim.onRequest(faultAt(http.MethodPatch, "upload", 4, simFault{CutAfter: cut}))
		st := u.mustRun()
		if mode == simV3 {
			// The registry kept the cut bytes: resume from there.
			if st.Restarts != 0 || len(u.restarts()) != 0 || u.sim.received() != testSize {
				t.Errorf("v3 resume: %+v, hook %v, %d bytes received", st, u.restarts(), u.sim.received())
			}
			return
		}
		if st.Restarts != 1 || st.Resent < acked {
			t.Errorf("stats %+v, want one restart and at least %d bytes resent", st, acked)
		}
		if got := u.restarts(); len(got) != 1 || got[0] != acked {
			t.Errorf("Restarted hook got %v, want [%d]", got, acked)
		}
		if u.sim.received() != acked+cut+testSize || u.sim.openSessions() != 0 {
			t.Errorf("%d bytes received, %d sessions open", u.sim.received(), u.sim.openSessions())
		}
	})
}

// TestUploadChunkedCutResentIsZero states what UploadStats.Resent
// promises: only the bytes of sessions the registry could not resume. On
// distribution 3 a cut chunk resumes at the registry's offset, so nothing
// counts as resent, even though the client had handed the registry more
// of the cut chunk than it received.
func TestUploadChunkedCutResentIsZero(t *testing.T) {
	u := newUpload(t, simV3)
	u.sim.onRequest(faultAt(http.MethodPatch, "upload", 4, simFault{CutAfter: 300}))
	if st := u.mustRun(); st.Resent != 0 {
		t.Errorf("Resent %d after a cut the registry resumed (Sent %d of %d)", st.Resent, st.Sent, testSize)
	}
}

func TestUploadChunkedForgottenSession(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		const k = 2
		u := newUpload(t, mode)
		u.stopped(k)
		u.sim.onRequest(faultAt(http.MethodGet, "upload", 1, simFault{Forget: true}))
		st := u.mustRun()
		if st.Sent != testSize || st.Resent != k*testChunk || st.Restarts != 1 {
			t.Errorf("stats %+v, want a fresh session and the earlier run's bytes counted resent", st)
		}
		if got := u.restarts(); len(got) != 1 || got[0] != k*testChunk {
			t.Errorf("Restarted hook got %v", got)
		}
		if u.sim.count(http.MethodPost, "start") != 2 {
			t.Errorf("%d sessions opened, want 2", u.sim.count(http.MethodPost, "start"))
		}
	})
}

func TestUploadChunkedJournalWithoutState(t *testing.T) {
	u := newUpload(t, simV28)
	u.stopped(2)
	e, _ := u.entry()
	e.Location, _, _ = strings.Cut(e.Location, "?")
	if err := u.opts.Journal.save(e); err != nil {
		t.Fatal(err)
	}
	st := u.mustRun()
	if st.Sent != testSize || u.sim.count(http.MethodPost, "start") != 2 {
		t.Errorf("stats %+v, %d sessions opened: want a fresh session", st, u.sim.count(http.MethodPost, "start"))
	}
}

func TestUploadChunkedDigestInvalid(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.sim.onRequest(faultAt(http.MethodPut, "upload", 1, simFault{Corrupt: true}))
		st := u.mustRun()
		if st != (UploadStats{Sent: 2 * testSize, Resent: testSize, Restarts: 1}) {
			t.Errorf("stats %+v, want the blob sent twice", st)
		}
		if u.sim.count(http.MethodPut, "upload") != 2 || u.sim.openSessions() != 0 {
			t.Errorf("%d PUTs, %d sessions open", u.sim.count(http.MethodPut, "upload"), u.sim.openSessions())
		}
	})
}

// TestUploadChunkedResentAfterResumedSessionLost resumes an earlier run's
// session, sends the rest, and has the registry refuse the digest: the
// whole blob is sent again, so Resent is the blob's size (the earlier
// run's bytes and this run's first pass), not more.
func TestUploadChunkedResentAfterResumedSessionLost(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.stopped(2)
		u.sim.onRequest(faultAt(http.MethodPut, "upload", 1, simFault{Corrupt: true}))
		st := u.mustRun()
		if st.Sent != 2*testSize-2*testChunk || st.Restarts != 1 {
			t.Fatalf("stats %+v", st)
		}
		if st.Resent != testSize {
			t.Errorf("Resent %d, want %d: every byte of the blob was sent twice, none three times", st.Resent, testSize)
		}
	})
}

func TestUploadChunkedChunkingUnsupported(t *testing.T) {
	for _, status := range []int{http.StatusMethodNotAllowed, http.StatusNotImplemented} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			u := newUpload(t, simV3)
			u.sim.onRequest(faultAt(http.MethodPatch, "upload", 1, simFault{Status: status, Code: "UNSUPPORTED"}))
			_, err := u.run(context.Background())
			if !errors.Is(err, ErrChunkingUnsupported) {
				t.Fatalf("got %v", err)
			}
			if u.sim.openSessions() != 0 || u.sim.count(http.MethodDelete, "upload") != 1 {
				t.Errorf("%d sessions left open", u.sim.openSessions())
			}
			if _, ok := u.entry(); ok {
				t.Errorf("the journal keeps the abandoned upload")
			}
		})
	}
}

func TestUploadChunkedExpiredToken(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode, simAuth)
		u.sim.onRequest(faultAt(http.MethodPatch, "upload", 3, simFault{Expire: true}))
		st := u.mustRun()
		if st.Sent > testSize+testChunk || st.Restarts != 0 {
			t.Errorf("stats %+v, want at most one chunk sent again and no restart", st)
		}
		if u.sim.count(http.MethodPatch, "upload") != testSize/testChunk+1 {
			t.Errorf("%d PATCHes", u.sim.count(http.MethodPatch, "upload"))
		}
	})
}

func TestUploadChunkedWaitsForDrain(t *testing.T) {
	u := newUpload(t, simV3, simDrainStep(100))
	u.sim.onRequest(faultAt(http.MethodPatch, "upload", 3, simFault{CutAfter: 700, Drain: true}))
	st := u.mustRun()
	if u.sim.drainViolations() != 0 || st.Restarts != 0 {
		t.Errorf("%d PATCHes sent while the registry drained; stats %+v", u.sim.drainViolations(), st)
	}
	if n := u.sim.count(http.MethodGet, "upload"); n < 8 {
		t.Errorf("%d status requests for a drain of 7 steps", n)
	}
}

func TestUploadChunkedOffsetKeepsMoving(t *testing.T) {
	u := newUpload(t, simV3, simDrainStep(1))
	u.sim.onRequest(faultAt(http.MethodPatch, "upload", 2, simFault{CutAfter: 900, Drain: true}))
	_, err := u.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "kept moving") {
		t.Fatalf("got %v", err)
	}
}

func TestUploadChunkedStalls(t *testing.T) {
	u := newUpload(t, simV28)
	u.opts.Retry.Stalls = 3
	u.sim.onRequest(func(r simRequest) simFault {
		if r.Method == http.MethodPatch {
			return simFault{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE"}
		}
		return simFault{}
	})
	_, err := u.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts in a row without progress") ||
		transport.Reason(err) != transport.ReasonServerError {
		t.Fatalf("got %v", err)
	}
	if n := u.sim.count(http.MethodPatch, "upload"); n != 3 {
		t.Errorf("%d PATCHes, want 3", n)
	}
	if e, ok := u.entry(); !ok || e.Offset != 0 {
		t.Errorf("journal %+v %v: the session should stay for a later run", e, ok)
	}
}

func TestUploadChunkedFlakyLink(t *testing.T) {
	// Every second chunk reaches the registry but its answer is lost.
	for _, mode := range []simMode{simV3, simZot} {
		t.Run(string(mode)+" lost answers", func(t *testing.T) {
			u := newUpload(t, mode)
			u.opts.Retry.Stalls = 1 // every failure must come with progress
			u.sim.onRequest(func(r simRequest) simFault {
				return simFault{DropAnswer: r.Method == http.MethodPatch && r.N%2 == 0}
			})
			st := u.mustRun()
			if st.Restarts != 0 || u.sim.received() != testSize {
				t.Errorf("stats %+v, %d bytes received", st, u.sim.received())
			}
		})
	}
	// Every chunk is cut half-way; distribution 3 keeps each half.
	t.Run("v3 cut halves", func(t *testing.T) {
		u := newUpload(t, simV3)
		u.opts.Retry.Stalls = 2
		u.sim.onRequest(func(r simRequest) simFault {
			if r.Method == http.MethodPatch {
				return simFault{CutAfter: testChunk / 2}
			}
			return simFault{}
		})
		st := u.mustRun()
		if st.Restarts != 0 || u.sim.received() != testSize {
			t.Errorf("stats %+v, %d bytes received", st, u.sim.received())
		}
	})
}

func TestUploadChunkedShortAck(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.sim.onRequest(faultAt(http.MethodPatch, "upload", 2, simFault{KeepOnly: 100}))
		if st := u.mustRun(); st.Restarts != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestUploadChunkedRegistryAhead(t *testing.T) {
	u := newUpload(t, simV3)
	loc := u.sim.newSession(simTestRepo, make([]byte, testSize+10))
	if err := u.opts.Journal.save(journalEntry{Repository: u.repo.Reference.Registry + "/" + simTestRepo, Digest: u.desc.Digest, Location: loc, Offset: testSize}); err != nil {
		t.Fatal(err)
	}
	st := u.mustRun()
	if st.Restarts != 1 || st.Sent != testSize || u.sim.openSessions() != 0 {
		t.Errorf("stats %+v, %d sessions open", st, u.sim.openSessions())
	}
}

// TestUploadChunkedLostFinalAnswer loses the answer to the final PUT: the
// blob is complete at the registry, so nothing restarts.
func TestUploadChunkedLostFinalAnswer(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.sim.onRequest(faultAt(http.MethodPut, "upload", 1, simFault{DropAnswer: true}))
		st := u.mustRun()
		if st.Sent != testSize || u.sim.count(http.MethodPost, "start") != 1 {
			t.Fatalf("stats %+v, %d sessions opened", st, u.sim.count(http.MethodPost, "start"))
		}
		if st.Restarts != 0 || len(u.restarts()) != 0 {
			t.Errorf("a completed blob reported as restarted: %+v, hook %v", st, u.restarts())
		}
	})
}
