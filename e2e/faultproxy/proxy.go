// Package faultproxy is a counting, fault-injecting reverse proxy to put in
// front of a registry in end-to-end tests.
//
// It listens on 127.0.0.1 and speaks plain HTTP to its clients; upstream it
// speaks plain HTTP or HTTPS (trusting Options.UpstreamRootCAs), HTTP/1.1
// only. Everything is streamed, so blobs of hundreds of MiB pass without
// being buffered. Upstream requests carry X-Forwarded-Host and
// X-Forwarded-Proto, so distribution builds its Location headers with the
// proxy's address; absolute Location headers that still name the upstream
// are rewritten as a safety net.
//
// The proxy counts requests (by method, kind and status), blob bytes
// uploaded and downloaded, successful mounts and completed uploads.
//
// It injects faults per request: a fraction of requests answered 503 or
// 429 with Retry-After, a fraction of blob transfers cut mid-body, chosen
// by a seeded RNG (so a run with the same request order is reproducible),
// or exactly the ones a Hook picks. A Hook can also answer a request with a
// canned response (Respond), rewrite a small response body (Rewrite) or
// flip one byte of a streamed body (CorruptBody); RefuseDockerManifests is
// a ready Hook answering Docker manifest pushes as zot does without its
// docker2s2 compatibility, and Chain combines hooks.
//
// It also simulates the link to an edge site (see Faults):
//   - a link that fails on average once every Faults.CutEvery bytes of
//     blob traffic, at points drawn from a seeded exponential
//     distribution; a failure inside an upload leaves the registry with
//     the bytes before it, as distribution and zot keep a partial body,
//     and then breaks both connections without an answer ("link-cut");
//   - a bandwidth limit each way, Faults.UploadBytesPerSec for upload
//     bodies and Faults.DownloadBytesPerSec for blob GET bodies, so a test
//     can act while a large blob is part-way through;
//   - added latency, Faults.Latency, one wait per request.
package faultproxy

import (
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgemirror/edgemirror/transport"
)

// Options configures a proxy.
type Options struct {
	// Addr is the listen address; empty means "127.0.0.1:0".
	Addr string
	// UpstreamRootCAs are the CAs trusted for an https upstream; nil means
	// the system pool.
	UpstreamRootCAs *x509.CertPool
	// Faults are the initial random faults and link (see SetFaults).
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
	// POST/PATCH/PUT requests that the proxy read from clients and
	// forwarded, cut transfers included (up to the cut).
	BytesUploaded int64
	// BytesDownloaded is the number of response body bytes of blob GETs
	// that the proxy wrote to clients, cut transfers included (up to the
	// cut).
	BytesDownloaded int64
	// BytesSentBeforeCut is the number of request body bytes that
	// reached the upstream in requests cut mid-body (link cuts and Cut
	// faults): what the registry received of them, as the upstream
	// connection's byte counter confirmed before the proxy broke it.
	BytesSentBeforeCut int64
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
	// "status-429", "cut", "link-cut" (Faults.CutEvery), "drop",
	// "respond-<status>", "rewrite", "corrupt" (counted when the byte is
	// flipped).
	Faults map[string]int64
	// MaxInFlight is the highest number of requests in flight at once,
	// requests waiting out Faults.Latency included.
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

	up   bucket // upload throttle
	down bucket // download throttle
	link link   // per-byte link failures
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

	d := dialer{
		net: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		tls: &tls.Config{RootCAs: opts.UpstreamRootCAs, MinVersion: tls.VersionTLS12},
	}
	p.tr = http.DefaultTransport.(*http.Transport).Clone()
	p.tr.Proxy = nil               // never send loopback traffic to an environment proxy
	p.tr.DisableCompression = true // pass bodies byte-exact
	p.tr.ForceAttemptHTTP2 = false // HTTP/1.1 only: cuts close one request's connection
	p.tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	p.tr.MaxIdleConnsPerHost = 64
	// Every upstream connection is metered, above TLS, so a cut can
	// confirm that the bytes before it were written (see countingBody).
	p.tr.DialContext = d.dial
	p.tr.DialTLSContext = d.dialTLS

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

// SetFaults replaces the random faults and the link, reseeds both RNGs
// with f.Seed (the link draws its next failure afresh) and restarts the
// throttles. The zero Faults turns every fault and limit off.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setFaultsLocked(f)
}

func (p *Proxy) setFaultsLocked(f Faults) {
	p.faults = f
	p.faults.Kinds = append([]Kind(nil), f.Kinds...)
	p.rng = rand.New(rand.NewPCG(f.Seed, 0x9e3779b97f4a7c15))
	p.up.reset()
	p.down.reset()
	p.link.reset(f.Seed, f.CutEvery)
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
// The faults, the link and its next failure point stay as they are.
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
	conn   atomic.Pointer[meterConn] // the upstream connection, once the transport has one
}

type stateKey struct{}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := Classify(r)
	info, u1, u2, hook, f := p.begin(r, kind)
	defer p.end(kind)

	if err := transport.Sleep(r.Context(), f.Latency); err != nil {
		return // the client gave up while the request crossed the link
	}

	fault, ok := Fault{}, false
	if hook != nil {
		fault, ok = hook(r, info)
	}
	if !ok {
		fault = randomFault(f, r, kind, u1, u2)
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
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if hasBody(r) && (kind.isUpload() || st.fault.Type == FaultCut || st.fault.Type == FaultCorrupt) {
		cb := &countingBody{rc: r.Body, ctx: r.Context(), p: p, st: st, cutAt: -1, corruptAt: -1, upload: kind.isUpload()}
		switch st.fault.Type {
		case FaultCut:
			cb.cutAt = cutPoint(st.fault.CutAfter, r.ContentLength)
		case FaultCorrupt:
			cb.corruptAt = corruptPoint(st.fault.Offset, r.ContentLength)
		}
		st.body = cb
		r.Body = cb
		ctx = withConnTrace(ctx, st)
	}
	cw := &countingWriter{ResponseWriter: w, ctx: r.Context(), p: p, st: st, blob: kind == KindBlobGet, cutAt: -1, corruptAt: -1}
	st.w = cw
	p.rp.ServeHTTP(cw, r.WithContext(ctx))
	if st.cut.Load() {
		// Whatever the ReverseProxy did with the error, the client
		// connection must die mid-transfer.
		panic(http.ErrAbortHandler)
	}
}

// begin counts an arriving request, draws its random values and returns
// the hook and faults in force.
func (p *Proxy) begin(r *http.Request, kind Kind) (info Info, u1, u2 float64, hook Hook, f Faults) {
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
	return info, u1, u2, p.hook, p.faults
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
