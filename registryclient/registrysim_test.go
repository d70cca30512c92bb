package registryclient

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// simMode selects whose blob upload protocol registrySim follows.
type simMode string

// The registries registrySim can behave as.
const (
	// simV3 is distribution 3: the upload URL carries a signed _state that
	// PATCH, PUT and DELETE need; GET and HEAD find a session by its UUID
	// alone; a PATCH cut mid-body keeps the bytes received.
	simV3 simMode = "v3"
	// simV28 is distribution 2.8 and Harbor: every request on a session
	// needs the _state of the latest answer; a state whose offset is not
	// what the registry holds cancels the session.
	simV28 simMode = "v28"
	// simZot is zot: no _state; an error during a PATCH deletes the
	// session; mounts come from a global store whatever "from" says;
	// Docker manifests are refused with 415.
	simZot simMode = "zot"
)

// simModes lists every mode, for tests that run on each.
var simModes = []simMode{simV3, simV28, simZot}

// simRequest is what a fault hook learns about a request.
type simRequest struct {
	Method string
	Path   string
	// Kind is "start" (POST to blobs/uploads/), "upload" (a request on an
	// upload session), "blob" or "manifest".
	Kind string
	// N numbers the requests of this method and kind, from 1.
	N int
}

// simFault is what a fault hook makes of a request; the zero value lets
// the registry serve it.
type simFault struct {
	// Status, when set, answers this status with an error body of Code.
	Status int
	Code   string
	// RetryAfter is the Retry-After header of that answer.
	RetryAfter string
	// Expire expires every token issued so far before the request is
	// checked (with auth on, the request then gets a 401 challenge).
	Expire bool
	// Forget makes the registry forget every upload session first.
	Forget bool
	// CutAfter (> 0) makes a PATCH read this many body bytes, keep them as
	// the mode says, and abort the connection.
	CutAfter int64
	// Drain, with CutAfter, makes the kept bytes appear a few at a time,
	// one step per status request (a registry still writing the body of a
	// cut request).
	Drain bool
	// DropAnswer serves the request, then aborts the connection instead of
	// answering.
	DropAnswer bool
	// KeepOnly (> 0) makes a PATCH keep only this many bytes of its body,
	// and acknowledge what the session then holds.
	KeepOnly int64
	// Corrupt makes a PUT flip a byte of the session's data before the
	// digest check.
	Corrupt bool
}

// simOption configures a registrySim before it serves.
type simOption func(*registrySim)

// simAuth makes the registry require Bearer tokens from its /token
// endpoint.
func simAuth(s *registrySim) { s.auth = true }

// simIgnoreRange makes blob GETs ignore Range and answer 200 with the
// whole blob.
func simIgnoreRange(s *registrySim) { s.ignoreRange = true }

// simDrainStep sets how many bytes of a draining cut body appear per
// status request (default 100).
func simDrainStep(n int64) simOption { return func(s *registrySim) { s.drainStep = n } }

// simSession is an upload session of registrySim.
type simSession struct {
	name    string
	data    []byte // bytes the registry holds
	pending []byte // bytes of a cut request still being written
}

// simManifest is a manifest stored by registrySim.
type simManifest struct {
	mediaType string
	raw       []byte
}

// simState is the content of a _state token.
type simState struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
}

// registrySim is an httptest registry implementing the blob upload
// protocol (and enough of manifests for a copy) the way distribution 3,
// distribution 2.8 / Harbor or zot do, with scriptable faults and counters.
type registrySim struct {
	t           *testing.T
	mode        simMode
	srv         *httptest.Server
	key         []byte
	auth        bool
	ignoreRange bool
	drainStep   int64

	mu         sync.Mutex
	fault      func(simRequest) simFault
	blobs      map[digest.Digest][]byte
	links      map[string]map[digest.Digest]bool
	manifests  map[string]map[string]simManifest
	sessions   map[string]*simSession
	counts     map[string]int // "METHOD kind" → requests
	patchBytes int64          // body bytes received by PATCHes
	violations int            // PATCHes received while a cut body drained
	nextID     int
	tokens     int // tokens issued
	expired    int // tokens numbered up to this one are expired
}

// newRegistrySim starts a simulator in mode; it stops with the test.
func newRegistrySim(t *testing.T, mode simMode, opts ...simOption) *registrySim {
	t.Helper()
	s := &registrySim{
		t: t, mode: mode, key: []byte("sim-state-key"), drainStep: 100,
		blobs: map[digest.Digest][]byte{}, links: map[string]map[digest.Digest]bool{},
		manifests: map[string]map[string]simManifest{}, sessions: map[string]*simSession{},
		counts: map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// host is the simulator's host:port.
func (s *registrySim) host() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// onRequest installs the fault hook (nil serves everything).
func (s *registrySim) onRequest(f func(simRequest) simFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// count returns how many requests of method and kind were received.
func (s *registrySim) count(method, kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[method+" "+kind]
}

// openSessions returns how many upload sessions are open.
func (s *registrySim) openSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// received returns the body bytes received by PATCH requests.
func (s *registrySim) received() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.patchBytes
}

// drainViolations returns how many PATCHes arrived while a cut body was
// still being written.
func (s *registrySim) drainViolations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations
}

// blob returns the content of blob d in repository name, if it is there.
func (s *registrySim) blob(name string, d digest.Digest) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.links[name][d] {
		return nil, false
	}
	return s.blobs[d], true
}

// putBlob stores data as a blob of repository name.
func (s *registrySim) putBlob(name string, data []byte) digest.Digest {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := digest.FromBytes(data)
	s.store(name, d, data)
	return d
}

// newSession opens a session of repository name holding data, as an
// earlier client left it, and returns its URL (with its state token).
func (s *registrySim) newSession(name string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.open(name)
	s.sessions[id].data = append([]byte(nil), data...)
	return s.srv.URL + s.sessionURL(id)
}

// repo returns a Repo for repository name of the simulator, built as
// Endpoint.Repository builds one, over client (nil: the server's client)
// wrapped in an oras-go auth.Client with a token cache.
func (s *registrySim) repo(t *testing.T, name string, client *http.Client) *Repo {
	t.Helper()
	if client == nil {
		client = s.srv.Client()
	}
	ep := Endpoint{Client: &auth.Client{Client: client, Cache: auth.NewCache()}, PlainHTTP: true}
	r, err := ep.Repository(s.host() + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// store links data under d into repository name; s.mu is held.
func (s *registrySim) store(name string, d digest.Digest, data []byte) {
	s.blobs[d] = data
	if s.links[name] == nil {
		s.links[name] = map[digest.Digest]bool{}
	}
	s.links[name][d] = true
}

// open creates an empty session; s.mu is held.
func (s *registrySim) open(name string) string {
	s.nextID++
	id := fmt.Sprintf("%08x-sim-%d", rand.Uint32(), s.nextID)
	s.sessions[id] = &simSession{name: name}
	return id
}

// state signs the state token of session id at its current offset; s.mu
// is held.
func (s *registrySim) state(id string) string {
	raw, _ := json.Marshal(simState{ID: id, Name: s.sessions[id].name, Offset: int64(len(s.sessions[id].data))})
	mac := hmac.New(sha256.New, s.key)
	mac.Write(raw)
	return base64.RawURLEncoding.EncodeToString(raw) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// parseState checks a state token's signature and decodes it.
func (s *registrySim) parseState(tok string) (simState, bool) {
	body, sig, ok := strings.Cut(tok, ".")
	raw, err1 := base64.RawURLEncoding.DecodeString(body)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil {
		return simState{}, false
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write(raw)
	var st simState
	if !hmac.Equal(got, mac.Sum(nil)) || json.Unmarshal(raw, &st) != nil {
		return simState{}, false
	}
	return st, true
}

// sessionURL is the path (and state) of session id; s.mu is held.
func (s *registrySim) sessionURL(id string) string {
	u := "/v2/" + s.sessions[id].name + "/blobs/uploads/" + id
	if s.mode != simZot {
		u += "?_state=" + s.state(id)
	}
	return u
}

// answerSession writes an upload answer for session id; s.mu is held.
func (s *registrySim) answerSession(w http.ResponseWriter, id string, status int) {
	n := len(s.sessions[id].data)
	h := w.Header()
	h.Set("Location", s.sessionURL(id))
	h.Set("Range", fmt.Sprintf("0-%d", max(n-1, 0)))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

// simError writes a registry error answer.
func simError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// abort drops the connection without (further) answer.
func abort() { panic(http.ErrAbortHandler) }

// route splits a /v2/ path into repository name, kind and the rest (a
// session id, digest or reference).
func route(path string) (name, kind, rest string) {
	p := strings.TrimPrefix(path, "/v2/")
	for _, k := range []struct{ sep, kind string }{{"/blobs/uploads/", "upload"}, {"/blobs/", "blob"}, {"/manifests/", "manifest"}} {
		if i := strings.Index(p, k.sep); i > 0 {
			name, rest = p[:i], p[i+len(k.sep):]
			if k.kind == "upload" && rest == "" {
				return name, "start", ""
			}
			return name, k.kind, rest
		}
	}
	return "", "", ""
}
