package registryclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/transport"
)

func TestUploadChunkedThroughTransport(t *testing.T) {
	u := newUpload(t, simV28)
	client, err := transport.New(transport.Options{MaxRetries: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxRetryAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u.repo = u.sim.repo(t, simTestRepo, client)
	u.sim.onRequest(func(r simRequest) simFault {
		switch {
		case r.Method == http.MethodPatch && r.N == 2:
			return simFault{Status: http.StatusTooManyRequests, Code: "TOOMANYREQUESTS", RetryAfter: "1"}
		case r.Method == http.MethodGet && r.Kind == "upload" && r.N == 1:
			return simFault{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE"}
		}
		return simFault{}
	})
	if st := u.mustRun(); st.Sent > testSize+testChunk || st.Restarts != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUploadChunkedCancelled(t *testing.T) {
	u := newUpload(t, simV3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u.sim.onRequest(func(r simRequest) simFault {
		if r.Method == http.MethodPatch && r.N == 3 {
			cancel()
		}
		return simFault{}
	})
	_, err := u.run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if e, ok := u.entry(); !ok || e.Offset < 2*testChunk {
		t.Errorf("journal %+v %v, want the acknowledged chunks kept", e, ok)
	}
}

func TestUploadChunkedFailures(t *testing.T) {
	t.Run("source fails", func(t *testing.T) {
		u := newUpload(t, simV3)
		boom := errors.New("source gone")
		_, err := u.repo.UploadChunked(context.Background(), u.desc, func(int64) (io.ReadCloser, error) { return nil, boom }, u.opts)
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("push refused", func(t *testing.T) {
		u := newUpload(t, simV3)
		u.sim.onRequest(faultAt(http.MethodPost, "start", 1, simFault{Status: http.StatusForbidden, Code: "DENIED"}))
		_, err := u.run(context.Background())
		if transport.Reason(err) != transport.ReasonForbidden || u.sim.count(http.MethodPost, "start") != 1 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("journal unwritable", func(t *testing.T) {
		u := newUpload(t, simV3)
		u.opts.Journal = &Journal{dir: t.TempDir() + "/missing"}
		_, err := u.run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "journal") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("already there", func(t *testing.T) {
		u := newUpload(t, simV3)
		u.sim.putBlob(simTestRepo, u.data)
		if st := u.mustRun(); st.Sent != 0 || u.sim.count(http.MethodPost, "start") != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestUploadChunkedPatchSessionInvalid has the registry cancel the session
// and refuse a chunk with BLOB_UPLOAD_INVALID: the blob starts over.
func TestUploadChunkedPatchSessionInvalid(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		u := newUpload(t, mode)
		u.sim.onRequest(faultAt(http.MethodPatch, "upload", 3, simFault{Status: http.StatusBadRequest, Code: "BLOB_UPLOAD_INVALID", Forget: true}))
		st := u.mustRun()
		if st.Restarts != 1 || u.sim.count(http.MethodPost, "start") != 2 {
			t.Errorf("stats %+v, %d sessions opened", st, u.sim.count(http.MethodPost, "start"))
		}
		if got := u.restarts(); len(got) != 1 || got[0] != 2*testChunk {
			t.Errorf("Restarted hook got %v", got)
		}
	})
}

func TestUploadChunkedEmptyBlob(t *testing.T) {
	forModes(t, func(t *testing.T, mode simMode) {
		s := newRegistrySim(t, mode)
		data, desc := testBlob(0)
		st, err := s.repo(t, simTestRepo, nil).UploadChunked(context.Background(), desc, opener(data), chunkOpts(nil))
		if err != nil || st != (UploadStats{}) {
			t.Fatalf("got %+v, %v", st, err)
		}
		checkStored(t, s, simTestRepo, data)
	})
}

// TestUploadChunkedEndlessRestarts cuts every third chunk on registries
// that lose a session with a cut chunk: no session ever gets past two
// chunks, so the blob cannot complete. The upload must give up by itself
// (no Retry.For set, as by default) instead of restarting forever because
// each fresh session acknowledges a chunk; Resent counts only the bytes
// that were sent again.
func TestUploadChunkedEndlessRestarts(t *testing.T) {
	for _, mode := range []simMode{simV28, simZot} {
		t.Run(string(mode), func(t *testing.T) {
			u := newUpload(t, mode)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const limit = 25 * testSize / testChunk // PATCHes: 25 times the blob
			u.sim.onRequest(func(r simRequest) simFault {
				if r.Method != http.MethodPatch {
					return simFault{}
				}
				if r.N >= limit {
					cancel() // the safety net of this test, not of the code
				}
				return simFault{CutAfter: map[bool]int64{true: 100}[r.N%3 == 0]}
			})
			st, err := u.run(ctx)
			if err == nil || errors.Is(err, context.Canceled) || !errors.Is(err, transport.ErrGaveUp) {
				t.Fatalf("still restarting after %d PATCHes: %v, %+v", limit, err, st)
			}
			var resent int64
			for _, held := range u.restarts() {
				resent += held
			}
			if len(u.restarts()) == 0 || st.Resent != resent {
				t.Errorf("Resent %d, but the blob restarted %d times resending %d bytes (%v)", st.Resent, len(u.restarts()), resent, err)
			}
		})
	}
}

// TestUploadChunkedKeepsRegistryError refuses a chunk, and then a status
// request, with an error the client cannot get past: the error returned
// carries the registry's code and message (a Harbor quota, a denied
// scope), not only the HTTP status.
func TestUploadChunkedKeepsRegistryError(t *testing.T) {
	cases := []struct {
		name string
		hook func(simRequest) simFault
	}{
		{"PATCH", faultAt(http.MethodPatch, "upload", 2, simFault{Status: http.StatusForbidden, Code: "DENIED"})},
		{"GET", func(r simRequest) simFault {
			switch {
			case r.Method == http.MethodPatch && r.N == 2:
				return simFault{CutAfter: 100}
			case r.Method == http.MethodGet && r.Kind == "upload":
				return simFault{Status: http.StatusForbidden, Code: "DENIED"}
			}
			return simFault{}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpload(t, simV3)
			u.sim.onRequest(c.hook)
			_, err := u.run(context.Background())
			if transport.Reason(err) != transport.ReasonForbidden {
				t.Fatalf("got %v", err)
			}
			if !hasCode(err, "DENIED") || !strings.Contains(err.Error(), "scripted fault") {
				t.Errorf("the registry's error is lost: %v", err)
			}
		})
	}
}

// TestDeadRegistryCostsKnownAttempts: a registry that answers 503 to
// everything costs a blob about Retry.Stalls requests in all: the HTTP
// client's retries draw on the blob's budget instead of multiplying with
// the upload's own.
func TestDeadRegistryCostsKnownAttempts(t *testing.T) {
	u := newUpload(t, simV3)
	client, err := transport.New(transport.Options{MaxRetries: 6, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u.repo = u.sim.repo(t, simTestRepo, client)
	u.opts.Retry = transport.Retry{Stalls: 4, MinWait: time.Millisecond, MaxWait: time.Millisecond}
	u.sim.onRequest(func(simRequest) simFault {
		return simFault{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE"}
	})
	_, err = u.run(context.Background())
	if !errors.Is(err, transport.ErrGaveUp) || transport.Reason(err) != transport.ReasonServerError {
		t.Fatalf("got %v", err)
	}
	u.sim.mu.Lock()
	total := 0
	for _, n := range u.sim.counts {
		total += n
	}
	u.sim.mu.Unlock()
	// Stalls failed requests spend the budget; the check for a finished
	// blob before a fresh session may add one.
	if total > 4+1 {
		t.Errorf("%d requests to a dead registry, want at most %d", total, 4+1)
	}
}

// TestUploadChunkedCompleteRefused: a registry that refuses every final
// PUT (here with 500) fails the blob once the budget is spent; a refused
// completion is no progress, so the budget is not refilled by it.
func TestUploadChunkedCompleteRefused(t *testing.T) {
	u := newUpload(t, simV3)
	u.opts.Retry = transport.Retry{Stalls: 3, MinWait: time.Millisecond, MaxWait: time.Millisecond}
	u.sim.onRequest(func(r simRequest) simFault {
		if r.Method == http.MethodPut && r.Kind == "upload" {
			return simFault{Status: http.StatusInternalServerError, Code: "UNKNOWN"}
		}
		return simFault{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := u.run(ctx)
	if !errors.Is(err, transport.ErrGaveUp) {
		t.Fatalf("got %v, want the budget spent", err)
	}
	if n := u.sim.count(http.MethodPut, "upload"); n > 4 {
		t.Errorf("%d final PUTs, want the budget's 3 (or 4)", n)
	}
}
