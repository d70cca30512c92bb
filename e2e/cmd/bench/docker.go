package main

import (
	"net/http"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
)

// dockerTracker is a faultproxy hook around a refusing hook (zot's refusal
// of Docker manifests) that also follows every upload: the bytes each
// upload session sends, those sent after the first refusal, and the digest
// the session commits, so that the bytes sent for blobs only Docker-format
// images use can be told apart once the run is over.
//
// Bytes are taken from the requests' Content-Length (edgemirror sets it on
// every PATCH and PUT) when the request reaches the proxy: a body that
// started before the first refusal counts as sent before it.
type dockerTracker struct {
	refuse faultproxy.Hook

	mu       sync.Mutex
	refusals int64
	// sessions maps an upload session (its URL path; for a monolithic
	// POST, the path and the digest) to what it sent.
	sessions map[string]*session
}

// session is what one upload session sent.
type session struct {
	// bytes were sent in all, after of them after the first refusal.
	bytes, after int64
	// digest is the blob committed, "" while the session is not.
	digest digest.Digest
}

// dockerBlobs is what a run sent for blobs only Docker-format images use.
type dockerBlobs struct {
	// sent is every byte of their committed upload sessions; after the
	// part that reached the registry after the first refusal.
	sent, after int64
	// blobsAfter counts those blobs with bytes sent after the first
	// refusal.
	blobsAfter int
	// uncommittedAfter is the bytes of upload sessions of any blob never
	// committed, sent after the first refusal: transfers abandoned.
	uncommittedAfter int64
}

// newDockerTracker returns a tracker refusing what refuse refuses.
func newDockerTracker(refuse faultproxy.Hook) *dockerTracker {
	return &dockerTracker{refuse: refuse, sessions: map[string]*session{}}
}

// hook is the proxy hook: refuse's answer, after noting the request.
func (t *dockerTracker) hook(r *http.Request, info faultproxy.Info) (faultproxy.Fault, bool) {
	f, refused := t.refuse(r, info)
	t.mu.Lock()
	defer t.mu.Unlock()
	if refused {
		t.refusals++
		return f, true
	}
	switch info.Kind {
	case faultproxy.KindUploadPost, faultproxy.KindUploadPatch, faultproxy.KindUploadPut:
	default:
		return f, false
	}
	d := digest.Digest(r.URL.Query().Get("digest"))
	key := r.URL.Path
	if info.Kind == faultproxy.KindUploadPost {
		if d == "" {
			return f, false // a session starts: no bytes yet
		}
		key += "?" + d.String() // a monolithic upload
	}
	s := t.sessions[key]
	if s == nil {
		s = &session{}
		t.sessions[key] = s
	}
	if n := r.ContentLength; n > 0 {
		s.bytes += n
		if t.refusals > 0 {
			s.after += n
		}
	}
	if d != "" {
		s.digest = d
	}
	return f, false
}

// result returns the number of refusals and what was sent for the blobs of
// only (the blobs only Docker-format images use).
func (t *dockerTracker) result(only map[digest.Digest]int64) (int64, dockerBlobs) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b dockerBlobs
	for _, s := range t.sessions {
		switch _, docker := only[s.digest]; {
		case s.digest == "":
			b.uncommittedAfter += s.after
		case docker:
			b.sent += s.bytes
			b.after += s.after
			if s.after > 0 {
				b.blobsAfter++
			}
		}
	}
	return t.refusals, b
}
