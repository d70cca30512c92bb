// Package faultproxy is a counting, fault-injecting reverse proxy to put in
// front of a registry in end-to-end tests.
//
// It listens on 127.0.0.1 and speaks plain HTTP to its clients; upstream it
// speaks plain HTTP or HTTPS (trusting Options.UpstreamRootCAs). Everything is
// streamed, so blobs of hundreds of MiB pass without being buffered. Upstream
// requests carry X-Forwarded-Host and X-Forwarded-Proto, so distribution
// builds its Location headers with the proxy's address; absolute Location
// headers that still name the upstream are rewritten as a safety net.
//
// The proxy counts requests (by method, kind and status), blob bytes uploaded
// and downloaded, successful mounts and completed uploads. It injects faults:
// a fraction of requests answered 503 or 429 with Retry-After, a fraction of
// blob transfers cut mid-body, chosen by a seeded RNG (so a run with the same
// request order is reproducible), or exactly the ones a Hook picks. A Hook can
// also answer a request with a canned response (Respond), rewrite a small
// response body (Rewrite) or flip one byte of a streamed body (CorruptBody).
// Upload bodies can be throttled (Faults.UploadBytesPerSec), so a test can
// act while a large blob is part-way up.
package faultproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultType says what the proxy does to a request.
type FaultType int

const (
	// FaultNone forwards the request untouched.
	FaultNone FaultType = iota
	// FaultStatus answers with Fault.Status without forwarding.
	FaultStatus
	// FaultCut forwards the request and cuts the transfer mid-body, then
	// closes the client connection abruptly. When the request has a body
	// (an upload PATCH/PUT), the proxy reads and forwards Fault.CutAfter
	// bytes of it, then breaks both connections: the registry keeps what
	// it received, as after a real network cut. Otherwise the response
	// body is cut after Fault.CutAfter bytes, and the client sees an
	// unexpected EOF; a response without a body is not delivered at all
	// (the registry did the work, the client never hears of it).
	FaultCut
	// FaultDrop closes the client connection without forwarding or
	// answering.
	FaultDrop
	// FaultRespond answers with Fault.Status, Fault.Header and Fault.Body
	// without forwarding (see Respond).
	FaultRespond
	// FaultRewrite forwards the request and replaces the response body
	// with Fault.RewriteBody of it (see Rewrite).
	FaultRewrite
	// FaultCorrupt forwards the request and flips one byte of the
	// transferred body at Fault.Offset (see CorruptBody).
	FaultCorrupt
)

// String returns a short name of the fault type.
func (t FaultType) String() string {
	switch t {
	case FaultNone:
		return "none"
	case FaultStatus:
		return "status"
	case FaultCut:
		return "cut"
	case FaultDrop:
		return "drop"
	case FaultRespond:
		return "respond"
	case FaultRewrite:
		return "rewrite"
	case FaultCorrupt:
		return "corrupt"
	}
	return "FaultType(" + strconv.Itoa(int(t)) + ")"
}

// Fault describes one injected fault.
type Fault struct {
	// Type is what to do.
	Type FaultType
	// Status is the answer of a FaultStatus; 0 means 503.
	Status int
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds) with
	// a FaultStatus answer.
	RetryAfter int
	// CutAfter is how many body bytes pass before a FaultCut; <= 0 means
	// half the body by its Content-Length (32 KiB when the length is
	// unknown). It is clamped below the body length.
	CutAfter int64
	// Header holds the headers of a FaultRespond answer. A Content-Length
	// here wins over len(Body), so an answer can announce a size it does
	// not send (a HEAD of a huge manifest, or a GET cut short).
	Header http.Header
	// Body is the body of a FaultRespond answer (not sent to a HEAD).
	Body []byte
	// RewriteBody maps the upstream response body of a FaultRewrite to
	// the body sent to the client.
	RewriteBody func(body []byte) []byte
	// Offset is the body offset of the byte a FaultCorrupt flips; < 0
	// means the middle of the body by its Content-Length. It is clamped to
	// the last byte.
	Offset int64
}

// Status503 returns a fault answering 503 Service Unavailable.
func Status503() Fault { return Fault{Type: FaultStatus, Status: http.StatusServiceUnavailable} }

// Status429 returns a fault answering 429 Too Many Requests with
// Retry-After: retryAfter (seconds).
func Status429(retryAfter int) Fault {
	return Fault{Type: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// Cut returns a fault cutting the transfer after n body bytes (n <= 0:
// half the body).
func Cut(n int64) Fault { return Fault{Type: FaultCut, CutAfter: n} }

// Drop returns a fault closing the connection without an answer.
func Drop() Fault { return Fault{Type: FaultDrop} }

// Respond returns a fault answering status (0 means 200) with header and
// body instead of forwarding the request. Content-Length defaults to
// len(body); a HEAD gets the headers only. header and body are not copied:
// do not change them while the fault is in use.
func Respond(status int, header http.Header, body []byte) Fault {
	if status == 0 {
		status = http.StatusOK
	}
	return Fault{Type: FaultRespond, Status: status, Header: header, Body: body}
}

// Rewrite returns a fault that forwards the request and sends the client
// f(body) instead of the upstream response body, with Content-Length
// updated and every other header (Docker-Content-Digest included) kept as
// the registry sent it. The whole body is buffered (at most 64 MiB; a
// larger body fails the request with 502), so it is meant for manifests
// and other small answers. Answers to HEAD requests pass untouched.
func Rewrite(f func(body []byte) []byte) Fault {
	return Fault{Type: FaultRewrite, RewriteBody: f}
}

// CorruptBody returns a fault that forwards the request and flips (XOR
// 0xff) the byte at offset of the transferred body while it streams: the
// request body of an upload, otherwise the response body (e.g. a blob GET).
// The length and headers stay as they are, so only a digest check can tell.
// offset < 0 means the middle of the body.
func CorruptBody(offset int64) Fault {
	return Fault{Type: FaultCorrupt, Offset: offset}
}

// name is the key of the fault in Stats.Faults.
func (f Fault) name() string {
	switch f.Type {
	case FaultStatus:
		return "status-" + strconv.Itoa(f.status())
	case FaultRespond:
		return "respond-" + strconv.Itoa(f.respondStatus())
	default:
		return f.Type.String()
	}
}

func (f Fault) status() int {
	if f.Status == 0 {
		return http.StatusServiceUnavailable
	}
	return f.Status
}

func (f Fault) respondStatus() int {
	if f.Status == 0 {
		return http.StatusOK
	}
	return f.Status
}

// Faults configures the random faults. The zero value injects none.
type Faults struct {
	// Seed seeds the RNG that picks the faulted requests. Each request
	// draws the same number of values whatever happens to it, so the same
	// seed and the same request order fault the same requests.
	Seed uint64
	// Rate503 is the fraction (0..1) of requests answered 503.
	Rate503 float64
	// Rate429 is the fraction (0..1) of requests answered 429 with
	// Retry-After.
	Rate429 float64
	// RetryAfter is the Retry-After of the 429 answers, in seconds;
	// <= 0 means the default, 1.
	RetryAfter int
	// RateCut is the fraction (0..1) of blob transfers (blob GETs, and
	// upload POST/PATCH/PUT with a body) cut mid-body.
	RateCut float64
	// CutAfter is Fault.CutAfter for random cuts; <= 0 means half the body.
	CutAfter int64
	// Kinds restricts the 503 and 429 faults to these request kinds;
	// empty means every kind.
	Kinds []Kind
	// UploadBytesPerSec limits the rate at which the proxy reads the
	// bodies of upload POST/PATCH/PUT requests, all uploads in flight
	// together (one token bucket, like one slow link); <= 0 means
	// unlimited. Bodies still stream, and Stats.BytesUploaded grows at
	// this rate. A change by SetFaults applies to uploads in flight.
	UploadBytesPerSec int64
}

// Info describes a request to a Hook.
type Info struct {
	// Kind is the request's kind.
	Kind Kind
	// Seq is the 1-based index of the request among the requests of its
	// kind since the proxy started or was Reset.
	Seq int64
	// Total is the 1-based index of the request among all requests since
	// the proxy started or was Reset.
	Total int64
}

// Hook picks the fault of one request. When ok is false the random faults
// apply; when ok is true the returned fault (FaultNone included) is used.
// It is called concurrently and must not block for long.
type Hook func(r *http.Request, info Info) (f Fault, ok bool)

// Options configures a proxy.
type Options struct {
	// Addr is the listen address; empty means "127.0.0.1:0".
	Addr string
	// UpstreamRootCAs are the CAs trusted for an https upstream; nil means
	// the system pool.
	UpstreamRootCAs *x509.CertPool
	// Faults are the initial random faults (see SetFaults).
	Faults Faults
	// Hook, when non-nil, picks faults for individual requests (see
	// SetHook).
	Hook Hook
	// ErrorLog receives the proxy's and its server's error lines; nil
	// means discard.
	ErrorLog io.Writer
}

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	// Requests is the number of requests received.
	Requests int64
	// ByMethod counts requests by HTTP method.
	ByMethod map[string]int64
	// ByKind counts requests by kind.
	ByKind map[Kind]int64
	// ByStatus counts answers by status: upstream answers as forwarded,
	// injected statuses, and 502 for upstream errors. Dropped requests
	// have none.
	ByStatus map[int]int64
	// BytesUploaded is the number of request body bytes of upload
	// POST/PATCH/PUT requests that the proxy read from clients (and
	// forwarded), cut transfers included.
	BytesUploaded int64
	// BytesDownloaded is the number of response body bytes of blob GETs
	// that the proxy wrote to clients, cut transfers included.
	BytesDownloaded int64
	// MountsSucceeded counts mount POSTs the registry answered 201.
	MountsSucceeded int64
	// UploadsCompleted counts upload PUTs (and monolithic POSTs) the
	// registry answered 201.
	UploadsCompleted int64
	// UploadsByDigest counts completed uploads by blob digest.
	UploadsByDigest map[string]int64
	// MountsByDigest counts successful mounts by blob digest.
	MountsByDigest map[string]int64
	// Faults counts the faults injected, by name: "status-503",
	// "status-429", "cut", "drop", "respond-<status>", "rewrite",
	// "corrupt" (counted when the byte is flipped).
	Faults map[string]int64
	// MaxInFlight is the highest number of requests in flight at once.
	MaxInFlight int64
	// MaxInFlightTransfers is the highest number of blob transfers
	// (Kind.IsTransfer) in flight at once.
	MaxInFlightTransfers int64
}

// Proxy is a running fault-injecting reverse proxy. Its methods are safe
// for concurrent use.
type Proxy struct {
	// Addr is the host:port the proxy listens on.
	Addr string

	target *url.URL
	rp     *httputil.ReverseProxy
	tr     *http.Transport
	srv    *http.Server
	served chan struct{}
	logger *log.Logger

	mu        sync.Mutex
	faults    Faults
	rng       *rand.Rand
	hook      Hook
	st        Stats
	seq       map[Kind]int64
	inFlight  int64
	inFlightT int64

	bucket bucket // upload throttle
}

// New starts a proxy forwarding to target, a base URL such as
// "http://127.0.0.1:5000" or "https://127.0.0.1:5443" (a bare host:port
// means http).
func New(target string, opts Options) (*Proxy, error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want http(s)://host:port", target)
	}
	u.Path, u.RawQuery, u.Fragment = "", "", ""

	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}

	out := io.Discard
	if opts.ErrorLog != nil {
		out = opts.ErrorLog
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: u,
		logger: log.New(out, "faultproxy: ", log.LstdFlags),
		hook:   opts.Hook,
		served: make(chan struct{}),
	}
	p.setFaultsLocked(opts.Faults)
	p.resetLocked()

	p.tr = http.DefaultTransport.(*http.Transport).Clone()
	p.tr.Proxy = nil               // never send loopback traffic to an environment proxy
	p.tr.DisableCompression = true // pass bodies byte-exact
	p.tr.ForceAttemptHTTP2 = false // HTTP/1.1 only: cuts close one request's connection
	p.tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	p.tr.MaxIdleConnsPerHost = 64
	p.tr.TLSClientConfig = &tls.Config{RootCAs: opts.UpstreamRootCAs, MinVersion: tls.VersionTLS12}

	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
			// distribution builds Location URLs from these, so clients
			// keep talking to the proxy.
			pr.SetXForwarded()
		},
		Transport:      p.tr,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       p.logger,
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          p.logger,
	}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln) // ErrServerClosed after Close
	}()
	return p, nil
}

// Host returns the proxy's host:port, for image references.
func (p *Proxy) Host() string { return p.Addr }

// URL returns the proxy's base URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.Addr }

// Close stops the proxy, cutting requests in flight, and waits for its
// server to stop.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	<-p.served
	p.tr.CloseIdleConnections()
	return err
}

// SetFaults replaces the random faults and reseeds the RNG with f.Seed.
// The zero Faults turns random faults off.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setFaultsLocked(f)
}

func (p *Proxy) setFaultsLocked(f Faults) {
	p.faults = f
	p.faults.Kinds = append([]Kind(nil), f.Kinds...)
	p.rng = rand.New(rand.NewPCG(f.Seed, 0x9e3779b97f4a7c15))
	p.bucket.reset()
}

// SetHook replaces the hook; nil removes it.
func (p *Proxy) SetHook(h Hook) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.st
	s.ByMethod = cloneMap(p.st.ByMethod)
	s.ByKind = cloneMap(p.st.ByKind)
	s.ByStatus = cloneMap(p.st.ByStatus)
	s.UploadsByDigest = cloneMap(p.st.UploadsByDigest)
	s.MountsByDigest = cloneMap(p.st.MountsByDigest)
	s.Faults = cloneMap(p.st.Faults)
	return s
}

// Reset zeroes the counters and the per-kind sequence numbers seen by
// hooks. Requests in flight are counted in the new period as they finish.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetLocked()
}

func (p *Proxy) resetLocked() {
	p.st = Stats{
		ByMethod:        map[string]int64{},
		ByKind:          map[Kind]int64{},
		ByStatus:        map[int]int64{},
		UploadsByDigest: map[string]int64{},
		MountsByDigest:  map[string]int64{},
		Faults:          map[string]int64{},
	}
	p.seq = map[Kind]int64{}
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// reqState travels with a forwarded request through the ReverseProxy.
type reqState struct {
	kind   Kind
	inHost string
	fault  Fault       // FaultNone, FaultCut, FaultRewrite or FaultCorrupt
	cut    atomic.Bool // the cut happened (set on the transport's goroutine for request bodies)
	body   *countingBody
	w      *countingWriter
}

type stateKey struct{}

// errCut is returned by the body wrappers when the fault cuts a transfer.
var errCut = errors.New("faultproxy: transfer cut by injected fault")

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := Classify(r)
	info, u1, u2, hook := p.begin(r, kind)
	defer p.end(kind)

	fault, ok := Fault{}, false
	if hook != nil {
		fault, ok = hook(r, info)
	}
	if !ok {
		fault = p.randomFault(r, kind, u1, u2)
	}

	switch fault.Type {
	case FaultStatus:
		p.count(func(s *Stats) {
			s.Faults[fault.name()]++
			s.ByStatus[fault.status()]++
		})
		writeStatus(w, fault)
		return
	case FaultDrop:
		p.count(func(s *Stats) { s.Faults[fault.name()]++ })
		panic(http.ErrAbortHandler)
	case FaultRespond:
		p.count(func(s *Stats) {
			s.Faults[fault.name()]++
			s.ByStatus[fault.respondStatus()]++
		})
		writeCanned(w, r, fault)
		return
	}

	st := &reqState{kind: kind, inHost: r.Host}
	switch fault.Type {
	case FaultCut, FaultCorrupt:
		st.fault = fault
	case FaultRewrite:
		if fault.RewriteBody != nil {
			st.fault = fault
		}
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && (kind.isUpload() || st.fault.Type == FaultCut || st.fault.Type == FaultCorrupt) {
		cb := &countingBody{rc: r.Body, ctx: r.Context(), p: p, st: st, cutAt: -1, corruptAt: -1, upload: kind.isUpload()}
		switch st.fault.Type {
		case FaultCut:
			cb.cutAt = cutPoint(st.fault.CutAfter, r.ContentLength)
		case FaultCorrupt:
			cb.corruptAt = corruptPoint(st.fault.Offset, r.ContentLength)
		}
		st.body = cb
		r.Body = cb
	}
	cw := &countingWriter{ResponseWriter: w, p: p, st: st, cutAt: -1, corruptAt: -1}
	st.w = cw
	p.rp.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	if st.cut.Load() {
		// Whatever the ReverseProxy did with the error, the client
		// connection must die mid-transfer.
		panic(http.ErrAbortHandler)
	}
}

// begin counts an arriving request and draws its random values.
func (p *Proxy) begin(r *http.Request, kind Kind) (info Info, u1, u2 float64, hook Hook) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Requests++
	p.st.ByMethod[r.Method]++
	p.st.ByKind[kind]++
	p.seq[kind]++
	info = Info{Kind: kind, Seq: p.seq[kind], Total: p.st.Requests}
	p.inFlight++
	p.st.MaxInFlight = max(p.st.MaxInFlight, p.inFlight)
	if kind.IsTransfer() {
		p.inFlightT++
		p.st.MaxInFlightTransfers = max(p.st.MaxInFlightTransfers, p.inFlightT)
	}
	// Always two draws, so one request's fate does not shift the others'.
	u1, u2 = p.rng.Float64(), p.rng.Float64()
	return info, u1, u2, p.hook
}

func (p *Proxy) end(kind Kind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if kind.IsTransfer() {
		p.inFlightT--
	}
}

func (p *Proxy) count(f func(s *Stats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.st)
}

// randomFault applies the configured random faults to the draws u1, u2.
func (p *Proxy) randomFault(r *http.Request, kind Kind, u1, u2 float64) Fault {
	p.mu.Lock()
	f := p.faults
	p.mu.Unlock()

	eligible := len(f.Kinds) == 0
	for _, k := range f.Kinds {
		if k == kind {
			eligible = true
			break
		}
	}
	if eligible {
		if u1 < f.Rate503 {
			return Status503()
		}
		if u1 < f.Rate503+f.Rate429 {
			ra := f.RetryAfter
			if ra <= 0 {
				ra = 1
			}
			return Status429(ra)
		}
	}
	transfer := kind == KindBlobGet || (kind.isUpload() && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody)
	if transfer && u2 < f.RateCut {
		return Cut(f.CutAfter)
	}
	return Fault{}
}

// cutPoint returns where to cut a body of length n (-1: unknown).
func cutPoint(after, n int64) int64 {
	if after <= 0 {
		if n < 0 {
			return 32 << 10
		}
		after = n / 2
	}
	if n >= 0 && after >= n {
		after = max(n-1, 0)
	}
	return after
}

// corruptPoint returns the offset of the byte to flip in a body of length n
// (-1: unknown).
func corruptPoint(off, n int64) int64 {
	if off < 0 {
		off = max(n/2, 0)
	}
	if n > 0 && off >= n {
		off = n - 1
	}
	return off
}

// writeCanned answers a FaultRespond.
func writeCanned(w http.ResponseWriter, r *http.Request, f Fault) {
	h := w.Header()
	for k, v := range f.Header {
		h[k] = append([]string(nil), v...)
	}
	if h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	}
	w.WriteHeader(f.respondStatus())
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.Body)
	}
}

// maxRewrite bounds the body a FaultRewrite buffers.
const maxRewrite = 64 << 20

// rewriteBody applies a FaultRewrite to resp.
func (p *Proxy) rewriteBody(resp *http.Response, f func([]byte) []byte) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRewrite+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) > maxRewrite {
		return fmt.Errorf("faultproxy: response body over %d bytes cannot be rewritten", maxRewrite)
	}
	body = f(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.TransferEncoding = nil
	p.count(func(s *Stats) { s.Faults[FaultRewrite.String()]++ })
	return nil
}

// writeStatus answers an injected status with a distribution-style error.
func writeStatus(w http.ResponseWriter, f Fault) {
	code := "UNAVAILABLE"
	if f.status() == http.StatusTooManyRequests {
		code = "TOOMANYREQUESTS"
	}
	body := fmt.Sprintf(`{"errors":[{"code":%q,"message":"injected by faultproxy"}]}`+"\n", code)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	w.WriteHeader(f.status())
	_, _ = io.WriteString(w, body)
}

// modifyResponse counts the upstream answer, rewrites Location, and arms a
// response cut.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st, _ := resp.Request.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return nil
	}
	q := resp.Request.URL.Query()
	p.count(func(s *Stats) {
		s.ByStatus[resp.StatusCode]++
		if resp.StatusCode == http.StatusCreated {
			switch st.kind {
			case KindMount:
				s.MountsSucceeded++
				s.MountsByDigest[q.Get("mount")]++
			case KindUploadPut, KindUploadPost:
				s.UploadsCompleted++
				if d := q.Get("digest"); d != "" {
					s.UploadsByDigest[d]++
				}
			}
		}
	})

	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.IsAbs() && strings.EqualFold(u.Host, p.target.Host) {
			u.Scheme, u.Host = "http", st.inHost
			resp.Header.Set("Location", u.String())
		}
	}

	if st.fault.Type == FaultCut && st.body == nil {
		if resp.Request.Method == http.MethodHead || resp.ContentLength == 0 {
			// Nothing to cut in: lose the whole answer.
			st.cut.Store(true)
			p.count(func(s *Stats) { s.Faults[st.fault.name()]++ })
			return errCut
		}
		st.w.cutAt = cutPoint(st.fault.CutAfter, resp.ContentLength)
	}
	if st.fault.Type == FaultCorrupt && st.body == nil && resp.Request.Method != http.MethodHead {
		st.w.corruptAt = corruptPoint(st.fault.Offset, resp.ContentLength)
	}
	if st.fault.Type == FaultRewrite && resp.Request.Method != http.MethodHead {
		return p.rewriteBody(resp, st.fault.RewriteBody)
	}
	return nil
}

// errorHandler handles upstream errors and the errors of cut transfers.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st != nil && st.cut.Load() {
		panic(http.ErrAbortHandler)
	}
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads an answer.
		return
	}
	p.logger.Printf("%s %s: %v", r.Method, r.URL.Path, err)
	p.count(func(s *Stats) { s.ByStatus[http.StatusBadGateway]++ })
	w.WriteHeader(http.StatusBadGateway)
}

// countingBody wraps a request body: it counts and throttles upload bytes,
// cuts the body at cutAt and flips the byte at corruptAt (when >= 0).
type countingBody struct {
	rc        io.ReadCloser
	ctx       context.Context // the client request's
	p         *Proxy
	st        *reqState
	cutAt     int64
	corruptAt int64
	read      int64
	upload    bool
}

func (b *countingBody) Read(buf []byte) (int, error) {
	if b.cutAt >= 0 {
		left := b.cutAt - b.read
		if left <= 0 {
			b.markCut()
			return 0, errCut
		}
		if int64(len(buf)) > left {
			buf = buf[:left]
		}
	}
	rate := int64(0)
	if b.upload {
		rate = b.p.uploadRate()
		if c := chunkFor(rate); c > 0 && len(buf) > c {
			buf = buf[:c]
		}
	}
	n, err := b.rc.Read(buf)
	if b.corruptAt >= b.read && b.corruptAt < b.read+int64(n) {
		buf[b.corruptAt-b.read] ^= 0xff
		b.p.count(func(s *Stats) { s.Faults[FaultCorrupt.String()]++ })
	}
	b.read += int64(n)
	if n > 0 && b.upload {
		if rate > 0 {
			// Pay for the bytes before passing them on, so the upstream
			// sees them (and the counter grows) at the configured rate.
			if werr := b.p.bucket.wait(b.ctx, rate, n); werr != nil {
				return 0, werr
			}
		}
		b.p.count(func(s *Stats) { s.BytesUploaded += int64(n) })
	}
	return n, err
}

func (b *countingBody) markCut() {
	if b.st.cut.Swap(true) {
		return
	}
	b.p.count(func(s *Stats) { s.Faults[b.st.fault.name()]++ })
}

func (b *countingBody) Close() error { return b.rc.Close() }

// countingWriter wraps the client response writer: it counts blob GET bytes
// and cuts the body at cutAt (when >= 0).
type countingWriter struct {
	http.ResponseWriter
	p         *Proxy
	st        *reqState
	cutAt     int64
	corruptAt int64 // flip the byte at this offset (when >= 0)
	written   int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if i := w.corruptAt - w.written; w.corruptAt >= 0 && i >= 0 && i < int64(len(b)) {
		// b belongs to the ReverseProxy's copy loop: flip in a copy.
		c := append([]byte(nil), b...)
		c[i] ^= 0xff
		b = c
		w.p.count(func(s *Stats) { s.Faults[FaultCorrupt.String()]++ })
	}
	cut := false
	if w.cutAt >= 0 && w.written+int64(len(b)) > w.cutAt {
		b = b[:w.cutAt-w.written]
		cut = true
	}
	// Count before writing: once written, the client may have the bytes
	// and look at the stats before this goroutine runs again.
	blob := w.st.kind == KindBlobGet
	if blob {
		w.p.count(func(s *Stats) { s.BytesDownloaded += int64(len(b)) })
	}
	if cut {
		w.st.cut.Store(true)
		w.p.count(func(s *Stats) { s.Faults[w.st.fault.name()]++ })
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	if blob && n < len(b) {
		w.p.count(func(s *Stats) { s.BytesDownloaded -= int64(len(b) - n) })
	}
	if err != nil {
		return n, err
	}
	if cut {
		// Push the bytes before the cut to the client, then fail the copy.
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		return n, errCut
	}
	return n, nil
}

// Unwrap lets http.ResponseController (used by ReverseProxy to flush)
// reach the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// uploadRate returns the current upload throttle (<= 0: none).
func (p *Proxy) uploadRate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.UploadBytesPerSec
}

// chunkFor is the largest read of a throttled upload body at rate, so the
// bytes flow smoothly rather than in bursts; 0 means no limit.
func chunkFor(rate int64) int {
	if rate <= 0 {
		return 0
	}
	return int(min(max(rate/50, 1<<10), 64<<10))
}

// bucket is the token bucket of the upload throttle, shared by every
// upload in flight. Tokens may go negative: a debt each reader pays by
// sleeping, so concurrent readers together get the rate.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *bucket) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens, b.last = 0, time.Time{}
}

// wait takes n tokens at rate bytes per second and sleeps off any debt,
// returning early with ctx's error when ctx ends.
func (b *bucket) wait(ctx context.Context, rate int64, n int) error {
	burst := float64(chunkFor(rate))
	b.mu.Lock()
	now := time.Now()
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	}
	b.last = now
	b.tokens -= float64(n)
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / float64(rate) * float64(time.Second))
	}
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
