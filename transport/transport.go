// Package transport builds the HTTP client used to talk to one side (source
// or target) of an edgemirror run: TLS settings and extra root CAs, proxies
// from the environment, a connection pool sized for many concurrent blob
// transfers, retries with exponential backoff that honour Retry-After and the
// request context, a user agent and optional redacted debug logging.
//
// It also offers Redact, which scrubs secrets from any string before it is
// printed, and Reason, which classifies an error for reports.
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Defaults of the retry options.
const (
	// DefaultMaxRetries is the number of retries after the first attempt.
	DefaultMaxRetries = 6
	// DefaultMinBackoff is the wait before the first retry (before jitter).
	DefaultMinBackoff = 200 * time.Millisecond
	// DefaultMaxBackoff caps the exponential backoff.
	DefaultMaxBackoff = 10 * time.Second
)

// Connection settings. There is deliberately no overall request timeout:
// a multi-gigabyte layer legitimately takes a long time, and cancellation is
// the caller's context's job.
const (
	dialTimeout         = 30 * time.Second
	keepAlive           = 30 * time.Second
	tlsHandshakeTimeout = 15 * time.Second
	// responseHeaderTimeout is measured from the end of the request body:
	// after a large monolithic PUT a registry on object storage may need a
	// while to verify and move the blob before it answers.
	responseHeaderTimeout = 3 * time.Minute
	idleConnTimeout       = 90 * time.Second
	// maxIdleConnsPerHost keeps up to 64 concurrent transfers to one registry
	// on warm connections (the net/http default of 2 would redial constantly).
	maxIdleConnsPerHost = 64
	maxIdleConns        = 256
)

// Options configures the client of New. The zero value is a usable client
// with system roots and the default retry policy.
type Options struct {
	// Insecure skips TLS certificate verification.
	Insecure bool
	// InsecureHosts skips TLS certificate verification for these hosts
	// only (host or host:port, as in the request URL): user-data registries
	// marked insecure.
	InsecureHosts []string
	// CAFiles are PEM files of extra root CAs, trusted in addition to the
	// system roots. A missing or invalid file is an error naming it.
	CAFiles []string
	// CAPEMs are extra root CAs given inline as PEM (user data
	// `certificates`).
	CAPEMs [][]byte
	// UserAgent, when set, replaces the User-Agent of every request,
	// e.g. "edgemirror/1.2.3".
	UserAgent string
	// MaxRetries is the number of retries after the first attempt;
	// <= 0 means the default, 6.
	MaxRetries int
	// MinBackoff is the wait before the first retry; the wait doubles on
	// each retry, with jitter, up to MaxBackoff. <= 0 means the default, 200ms.
	MinBackoff time.Duration
	// MaxBackoff caps the exponential backoff; <= 0 means the default, 10s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps a wait requested by a Retry-After header;
	// <= 0 means the default, 2m.
	MaxRetryAfter time.Duration
	// Debug, when set, receives one redacted line per attempt: method, URL
	// with secret query values removed, status or error, and duration.
	// Header values (Authorization, Cookie) are never written.
	Debug io.Writer
	// OnRetry, when set, is called before each wait for a retry.
	OnRetry func(RetryEvent)
}

// RetryEvent describes a retry that is about to happen.
type RetryEvent struct {
	// Method is the HTTP method of the request.
	Method string
	// URL is the redacted request URL.
	URL string
	// Attempt is the 1-based number of the attempt that just failed.
	Attempt int
	// Wait is how long the client waits before the next attempt.
	Wait time.Duration
	// StatusCode is the status of the failed attempt, 0 for a network error.
	StatusCode int
	// Reason says why the attempt failed, e.g. "503 Service Unavailable" or
	// "network: read: connection reset by peer" (redacted).
	Reason string
}

// New returns an HTTP client configured by opts. It has no overall timeout;
// use the request context to bound a request.
func New(opts Options) (*http.Client, error) {
	tlsConfig, err := tlsConfig(opts)
	if err != nil {
		return nil, err
	}
	base := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: keepAlive,
		}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true, // a custom TLSClientConfig disables HTTP/2 otherwise
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
	var next http.RoundTripper = base
	if len(opts.InsecureHosts) > 0 && !opts.Insecure {
		skip := base.Clone()
		skip.TLSClientConfig = tlsConfig.Clone()
		skip.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // the user data marks these registries insecure
		hosts := map[string]bool{}
		for _, h := range opts.InsecureHosts {
			hosts[strings.ToLower(h)] = true
		}
		next = &hostSwitch{hosts: hosts, matched: skip, other: base}
	}
	rt := &retryTransport{
		base:      next,
		userAgent: opts.UserAgent,
		policy: Retry{
			Stalls:        orDefault(opts.MaxRetries, DefaultMaxRetries) + 1,
			MinWait:       orDefault(opts.MinBackoff, DefaultMinBackoff),
			MaxWait:       orDefault(opts.MaxBackoff, DefaultMaxBackoff),
			MaxRetryAfter: orDefault(opts.MaxRetryAfter, DefaultMaxRetryAfter),
		}.WithDefaults(),
		onRetry: opts.OnRetry,
		sleep:   Sleep,
		now:     time.Now,
	}
	if opts.Debug != nil {
		rt.debug = &lockedWriter{w: opts.Debug}
	}
	return &http.Client{Transport: rt}, nil
}

// hostSwitch sends the requests to some hosts through another transport.
type hostSwitch struct {
	hosts          map[string]bool // lower-case host or host:port
	matched, other http.RoundTripper
}

// RoundTrip picks the transport by the request's host.
func (h *hostSwitch) RoundTrip(req *http.Request) (*http.Response, error) {
	host := strings.ToLower(req.URL.Host)
	if h.hosts[host] || h.hosts[strings.ToLower(req.URL.Hostname())] {
		return h.matched.RoundTrip(req)
	}
	return h.other.RoundTrip(req)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// tlsConfig builds the TLS settings: TLS 1.2 or later, system roots plus
// the extra CAs.
func tlsConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: opts.Insecure, //nolint:gosec // explicitly requested with --insecure
	}
	if len(opts.CAFiles) == 0 && len(opts.CAPEMs) == 0 {
		return cfg, nil // nil RootCAs means the system roots
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// Without system roots (unusual platforms) the extra CAs still work.
		pool = x509.NewCertPool()
	}
	for _, file := range opts.CAFiles {
		pem, err := os.ReadFile(file)
		if err != nil {
			var pathErr *fs.PathError
			if errors.As(err, &pathErr) {
				err = pathErr.Err // the path is already in our message
			}
			return nil, fmt.Errorf("CA file %s: %w", file, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate found", file)
		}
	}
	for i, pem := range opts.CAPEMs {
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("inline CA certificate %d: no PEM certificate found", i+1)
		}
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// lockedWriter serialises debug lines written from concurrent requests.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s+"\n") // debug output is best effort
}
