package registryclient

import (
	"github.com/edgemirror/edgemirror/transport"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// serve is the simulator's handler: token endpoint, fault hook, auth
// check, then the route's own handler.
func (s *registrySim) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.mu.Lock()
		s.tokens++
		tok := fmt.Sprintf("t%d", s.tokens)
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
		return
	}
	name, kind, rest := route(r.URL.Path)
	if kind == "" {
		if r.URL.Path == "/v2/" {
			return
		}
		simError(w, http.StatusNotFound, "NAME_UNKNOWN", "no such route")
		return
	}
	s.mu.Lock()
	s.counts[r.Method+" "+kind]++
	req := simRequest{Method: r.Method, Path: r.URL.Path, Kind: kind, N: s.counts[r.Method+" "+kind]}
	hook := s.fault
	s.mu.Unlock()
	var f simFault
	if hook != nil {
		f = hook(req)
	}
	s.mu.Lock()
	if f.Expire {
		s.expired = s.tokens
	}
	if f.Forget {
		s.sessions = map[string]*simSession{}
	}
	authorized := !s.auth || s.validToken(r.Header.Get("Authorization"))
	s.mu.Unlock()
	switch {
	case !authorized:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="sim"`, s.srv.URL))
		simError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	case f.Status != 0:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		simError(w, f.Status, f.Code, "scripted fault")
		return
	}
	switch kind {
	case "start":
		s.serveStart(w, r, name)
	case "upload":
		s.serveUpload(w, r, rest, f)
	case "blob":
		s.serveBlob(w, r, name, digest.Digest(rest))
	case "manifest":
		s.serveManifest(w, r, name, rest)
	}
}

// validToken reports whether an Authorization header carries a token the
// registry issued and has not expired; s.mu is held.
func (s *registrySim) validToken(h string) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(h, "Bearer t"))
	return strings.HasPrefix(h, "Bearer t") && err == nil && n > s.expired && n <= s.tokens
}

// serveStart opens a session, or mounts a blob.
func (s *registrySim) serveStart(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodPost {
		simError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		return
	}
	q := r.URL.Query()
	mount, from := digest.Digest(q.Get("mount")), q.Get("from")
	s.mu.Lock()
	defer s.mu.Unlock()
	if mount != "" {
		_, inStore := s.blobs[mount]
		if s.mode == simZot && inStore || s.mode != simZot && s.links[from][mount] {
			s.store(name, mount, s.blobs[mount])
			w.Header().Set("Location", "/v2/"+name+"/blobs/"+mount.String())
			w.Header().Set("Docker-Content-Digest", mount.String())
			w.WriteHeader(http.StatusCreated)
			return
		}
	} else if from != "" && s.mode == simZot {
		simError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "from without mount")
		return
	}
	s.answerSession(w, s.open(name), http.StatusAccepted)
}

// checkState applies the mode's _state rules to a request on session id;
// it answers and returns false when the request is refused. s.mu is held.
func (s *registrySim) checkState(w http.ResponseWriter, r *http.Request, id string) bool {
	if s.mode == simZot || s.mode == simV3 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return true
	}
	st, ok := s.parseState(r.URL.Query().Get("_state"))
	if !ok && s.mode == simV28 {
		simError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "blob upload invalid: missing or bad _state")
		return false
	}
	if !ok || st.ID != id || st.Offset != int64(len(s.sessions[id].data)) {
		delete(s.sessions, id)
		simError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "blob upload invalid: state does not match the upload")
		return false
	}
	return true
}

// serveUpload serves a request on an upload session.
func (s *registrySim) serveUpload(w http.ResponseWriter, r *http.Request, id string, f simFault) {
	s.mu.Lock()
	sess := s.sessions[id]
	if sess == nil {
		s.mu.Unlock()
		simError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
		return
	}
	if !s.checkState(w, r, id) {
		s.mu.Unlock()
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		step := min(s.drainStep, int64(len(sess.pending)))
		sess.data, sess.pending = append(sess.data, sess.pending[:step]...), sess.pending[step:]
		s.answerSession(w, id, http.StatusNoContent)
		s.mu.Unlock()
	case http.MethodDelete:
		delete(s.sessions, id)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		if len(sess.pending) > 0 {
			s.violations++
		}
		s.mu.Unlock()
		s.servePatch(w, r, id, sess, f)
	case http.MethodPut:
		s.mu.Unlock()
		s.servePut(w, r, id, sess, f)
	default:
		s.mu.Unlock()
		simError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
}

// servePatch appends a PATCH body to session id.
func (s *registrySim) servePatch(w http.ResponseWriter, r *http.Request, id string, sess *simSession, f simFault) {
	var body []byte
	var err error
	if f.CutAfter > 0 {
		body = make([]byte, f.CutAfter)
		var n int
		n, _ = io.ReadFull(r.Body, body)
		body, err = body[:n], io.ErrUnexpectedEOF
	} else {
		body, err = io.ReadAll(r.Body)
	}
	s.mu.Lock()
	s.patchBytes += int64(len(body))
	if err != nil {
		// A body cut mid-way: distribution keeps what it received, zot
		// drops the session.
		switch {
		case s.mode == simZot:
			delete(s.sessions, id)
		case f.Drain:
			sess.pending = append(sess.pending, body...)
		default:
			sess.data = append(sess.data, body...)
		}
		s.mu.Unlock()
		abort()
	}
	if f.KeepOnly > 0 && int64(len(body)) > f.KeepOnly {
		body = body[:f.KeepOnly]
	}
	// Without a per-upload lock, a draining request's bytes land after
	// the new ones.
	sess.data = append(append(sess.data, body...), sess.pending...)
	sess.pending = nil
	live := s.sessions[id] == sess
	if live && !f.DropAnswer {
		s.answerSession(w, id, http.StatusAccepted)
	}
	s.mu.Unlock()
	switch {
	case f.DropAnswer:
		abort()
	case !live:
		simError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
	}
}

// servePut completes session id under the digest the request names.
func (s *registrySim) servePut(w http.ResponseWriter, r *http.Request, id string, sess *simSession, f simFault) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	data := append(sess.data, body...)
	if f.Corrupt && len(data) > 0 {
		data = append([]byte(nil), data...)
		data[0] ^= 0xff
	}
	delete(s.sessions, id)
	want := digest.Digest(r.URL.Query().Get("digest"))
	ok := want.Validate() == nil && digest.FromBytes(data) == want
	if ok {
		s.store(sess.name, want, data)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		simError(w, http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content")
	case f.DropAnswer:
		abort()
	default:
		w.Header().Set("Location", "/v2/"+sess.name+"/blobs/"+want.String())
		w.Header().Set("Docker-Content-Digest", want.String())
		w.WriteHeader(http.StatusCreated)
	}
}

// serveBlob answers HEAD and GET (with Range) on a blob.
func (s *registrySim) serveBlob(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) {
	data, ok := s.blob(name, d)
	if !ok {
		simError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	from := int64(0)
	if rg, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok && !s.ignoreRange {
		start, _, _ := strings.Cut(rg, "-")
		from, _ = strconv.ParseInt(start, 10, 64)
		if from >= int64(len(data)) {
			simError(w, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID", "range not satisfiable")
			return
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
	}
	h.Set("Content-Length", strconv.Itoa(len(data)-int(from)))
	switch {
	case r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK)
	case h.Get("Content-Range") != "":
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data[from:])
	default:
		_, _ = w.Write(data)
	}
}

// serveManifest stores (PUT) and answers (GET, HEAD) manifests; zot mode
// refuses Docker media types.
func (s *registrySim) serveManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	if r.Method == http.MethodPut {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mt := r.Header.Get("Content-Type")
		if s.mode == simZot && strings.HasPrefix(mt, "application/vnd.docker.distribution.manifest.") {
			simError(w, http.StatusUnsupportedMediaType, "MANIFEST_INVALID", "manifest invalid: unsupported media type "+mt)
			return
		}
		d := digest.FromBytes(raw)
		s.mu.Lock()
		if s.manifests[name] == nil {
			s.manifests[name] = map[string]simManifest{}
		}
		s.manifests[name][ref] = simManifest{mediaType: mt, raw: raw}
		s.manifests[name][d.String()] = simManifest{mediaType: mt, raw: raw}
		s.mu.Unlock()
		w.Header().Set("Location", "/v2/"+name+"/manifests/"+d.String())
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
		return
	}
	s.mu.Lock()
	m, ok := s.manifests[name][ref]
	s.mu.Unlock()
	if !ok {
		simError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	w.Header().Set("Content-Type", m.mediaType)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.raw).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(m.raw)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.raw)
	}
}

// faultAt returns a fault hook that answers f to the n-th request of
// method and kind, and serves every other request.
func faultAt(method, kind string, n int, f simFault) func(simRequest) simFault {
	return func(r simRequest) simFault {
		if r.Method == method && r.Kind == kind && r.N == n {
			return f
		}
		return simFault{}
	}
}

// testBlob returns size pseudo-random bytes (no two chunks alike) and
// their descriptor.
func testBlob(size int) ([]byte, ocispec.Descriptor) {
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8)})
	_, _ = rng.Read(data)
	return data, content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, data)
}

// opener returns an open function for UploadChunked that reads data from
// an offset.
func opener(data []byte) func(off int64) (io.ReadCloser, error) {
	return func(off int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data[off:])), nil }
}

// Sizes used by the upload tests: 1 KiB chunks of an 8 KiB blob.
const (
	testChunk = 1 << 10
	testSize  = 8 << 10
)

// quickRetry is a Retry that waits next to nothing.
var quickRetry = transport.Retry{Stalls: 4, MinWait: time.Millisecond, MaxWait: 2 * time.Millisecond}

// chunkOpts returns ChunkOptions for the tests: small chunks, a short
// settle time, quick retries, and journal j.
func chunkOpts(j *Journal) ChunkOptions {
	return ChunkOptions{Size: testChunk, Journal: j, Settle: time.Millisecond, Retry: quickRetry}
}

// testJournal opens a journal in a temporary directory.
func testJournal(t *testing.T) *Journal {
	t.Helper()
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// checkStored fails the test unless repository name of s holds data under
// its digest.
func checkStored(t *testing.T, s *registrySim, name string, data []byte) {
	t.Helper()
	got, ok := s.blob(name, digest.FromBytes(data))
	if !ok {
		t.Fatalf("the registry does not hold the blob")
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("the registry holds other bytes under the blob's digest")
	}
}

// simDo sends a request straight to the simulator (no client logic) and
// returns the status and the Location header.
func simDo(t *testing.T, s *registrySim, method, u string, body []byte) (int, string) {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = s.srv.URL + u
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestRegistrySimStateRules checks the simulator itself: how each mode
// treats a session URL without its state, and a stale state.
func TestRegistrySimStateRules(t *testing.T) {
	cases := []struct {
		mode                 simMode
		getBare, patchStale  int  // statuses
		keptAfterBare, stale bool // session still open afterwards
	}{
		{simV3, http.StatusNoContent, http.StatusBadRequest, true, false},
		{simV28, http.StatusBadRequest, http.StatusBadRequest, true, false},
		{simZot, http.StatusNoContent, http.StatusAccepted, true, true},
	}
	for _, c := range cases {
		t.Run(string(c.mode), func(t *testing.T) {
			s := newRegistrySim(t, c.mode)
			status, loc := simDo(t, s, http.MethodPost, "/v2/a/b/blobs/uploads/", nil)
			if status != http.StatusAccepted || strings.Contains(loc, "_state=") != (c.mode != simZot) {
				t.Fatalf("POST: %d %q", status, loc)
			}
			bare, _, _ := strings.Cut(loc, "?")
			if status, _ := simDo(t, s, http.MethodGet, bare, nil); status != c.getBare || (s.openSessions() == 1) != c.keptAfterBare {
				t.Errorf("GET without state: %d, %d sessions open", status, s.openSessions())
			}
			if status, _ := simDo(t, s, http.MethodPatch, loc, []byte("abc")); status != http.StatusAccepted {
				t.Fatalf("PATCH: %d", status)
			}
			// loc's state now says 0 bytes; the registry holds 3.
			if status, _ := simDo(t, s, http.MethodPatch, loc, []byte("def")); status != c.patchStale || (s.openSessions() == 1) != c.stale {
				t.Errorf("PATCH with a stale state: %d, %d sessions open", status, s.openSessions())
			}
		})
	}
}
