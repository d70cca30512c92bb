// Package registry starts a real CNCF distribution v3 registry in-process on
// the loopback interface, for end-to-end tests, the demo and the benchmark.
//
// The registry is distribution's own HTTP application
// (handlers.NewApp) with a configuration built in code: filesystem storage
// with deletes enabled, optional htpasswd basic auth and optional TLS with a
// CA generated at start. It is served by an http.Server of this package on a
// listener of this package, so the port and the TLS settings are ours, and the
// registry can be stopped and started again on the same port and the same
// storage directory (a "registry restarted mid-run" test).
//
// Start does not depend on package testing; StartT is the test convenience.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"golang.org/x/crypto/bcrypt"

	// distribution registers its auth schemes and storage drivers from init
	// functions; NewApp only finds the ones whose packages are linked in.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// DefaultRealm is the basic-auth realm used when Options.Realm is empty.
const DefaultRealm = "edgemirror-e2e"

// Options configures a registry. The zero value is a plain-HTTP registry
// without auth on 127.0.0.1 and a random free port, storing in a fresh
// temporary directory.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0" (a free port).
	// The port chosen at the first start is kept by Restart.
	Addr string

	// TLS serves HTTPS with a server certificate for 127.0.0.1, ::1 and
	// localhost, signed by a CA generated at Start (Registry.CAFile,
	// Registry.CAPEM, Registry.CertPool).
	TLS bool

	// Users enables htpasswd basic auth with these user names and passwords
	// (hashed with bcrypt at its minimum cost, since the registry checks the
	// hash on every request). Empty means no auth.
	Users map[string]string

	// Realm is the basic-auth realm; empty means DefaultRealm.
	Realm string

	// RootDir is the filesystem storage directory. Empty means a fresh
	// temporary directory that Close removes; a given directory is kept.
	RootDir string

	// HTTPSecret signs upload state tokens. Empty means a random secret made
	// at Start and kept across restarts, so upload URLs handed out before a
	// restart stay valid after it.
	HTTPSecret string

	// RelativeURLs makes the registry answer with relative Location headers
	// instead of absolute ones built from the request's Host header.
	RelativeURLs bool

	// ReadOnly puts the registry in read-only maintenance mode: pushes
	// and deletes are refused.
	ReadOnly bool

	// LogOutput, when non-nil, receives distribution's log lines; nil means
	// silent. distribution logs through logrus's process-wide standard
	// logger, so while any registry with a LogOutput runs, every registry's
	// lines go to every such writer.
	LogOutput io.Writer

	// LogLevel is the logrus level used with LogOutput ("debug", "info",
	// ...); empty means "info".
	LogLevel string

	// ShutdownTimeout bounds the graceful part of Stop and Close; requests
	// still running then are cut. <= 0 means the default, 5 s.
	ShutdownTimeout time.Duration

	// Configure, when non-nil, may change the configuration built by this
	// package just before each NewApp (e.g. validation settings).
	Configure func(*configuration.Configuration)
}

// Registry is a running (or stopped) in-process distribution registry.
// Its methods are safe for concurrent use.
type Registry struct {
	// Addr is the host:port the registry listens on; it does not change
	// across restarts.
	Addr string
	// RootDir is the filesystem storage directory.
	RootDir string
	// CAFile is the path of the PEM CA certificate that signed the server
	// certificate; empty without TLS.
	CAFile string
	// CAPEM is the PEM CA certificate; nil without TLS.
	CAPEM []byte
	// CertPool holds the CA certificate; nil without TLS.
	CertPool *x509.CertPool

	opts        Options
	secret      string
	privDir     string // htpasswd file, certificates
	ownRoot     bool
	serverCert  tls.Certificate
	htpasswd    string
	errorLog    *log.Logger
	logOverride bool

	mu      sync.Mutex
	srv     *http.Server
	app     *handlers.App
	served  chan struct{} // closed when the current Serve returns
	conns   *connTracker
	closed  bool
	running bool
}

// Start starts a registry with the given options and returns once it
// accepts connections.
func Start(opts Options) (*Registry, error) {
	r := &Registry{opts: opts}
	if err := r.init(); err != nil {
		r.cleanupDirs()
		return nil, err
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := r.start(addr, 0); err != nil {
		r.releaseLogging()
		r.cleanupDirs()
		return nil, err
	}
	return r, nil
}

func (r *Registry) init() error {
	var err error
	r.privDir, err = os.MkdirTemp("", "edgemirror-registry-priv-*")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	r.RootDir = r.opts.RootDir
	if r.RootDir == "" {
		r.RootDir, err = os.MkdirTemp("", "edgemirror-registry-data-*")
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		r.ownRoot = true
	} else if err := os.MkdirAll(r.RootDir, 0o755); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	r.RootDir, err = filepath.Abs(r.RootDir)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}

	r.secret = r.opts.HTTPSecret
	if r.secret == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		r.secret = hex.EncodeToString(b)
	}

	if len(r.opts.Users) > 0 {
		var sb strings.Builder
		for user, pass := range r.opts.Users {
			if user == "" || strings.ContainsAny(user, ":\n") {
				return fmt.Errorf("registry: invalid user name %q", user)
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				return fmt.Errorf("registry: hashing password of %q: %w", user, err)
			}
			fmt.Fprintf(&sb, "%s:%s\n", user, h)
		}
		r.htpasswd = filepath.Join(r.privDir, "htpasswd")
		if err := os.WriteFile(r.htpasswd, []byte(sb.String()), 0o600); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}

	if r.opts.TLS {
		ca, err := newCA()
		if err != nil {
			return fmt.Errorf("registry: generating CA: %w", err)
		}
		r.serverCert, err = ca.serverCert()
		if err != nil {
			return fmt.Errorf("registry: generating server certificate: %w", err)
		}
		r.CAPEM = ca.certPEM
		r.CertPool = x509.NewCertPool()
		r.CertPool.AddCert(ca.cert)
		r.CAFile = filepath.Join(r.privDir, "ca.pem")
		if err := os.WriteFile(r.CAFile, r.CAPEM, 0o644); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}

	r.errorLog = log.New(io.Discard, "", 0)
	if r.opts.LogOutput != nil {
		r.errorLog = log.New(r.opts.LogOutput, "registry http: ", log.LstdFlags)
	}
	r.acquireLogging()
	return nil
}

// config builds the distribution configuration for one App.
func (r *Registry) config() *configuration.Configuration {
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": r.RootDir},
			"delete":     configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{
				// The purger runs in a goroutine that sleeps up to an hour
				// and would outlive a stopped App; tests never need it.
				"uploadpurging": map[any]any{"enabled": false},
				"readonly":      map[any]any{"enabled": r.opts.ReadOnly},
			},
		},
	}
	cfg.HTTP.Addr = r.Addr
	cfg.HTTP.Secret = r.secret
	cfg.HTTP.RelativeURLs = r.opts.RelativeURLs
	cfg.Log.AccessLog.Disabled = true
	if r.htpasswd != "" {
		realm := r.opts.Realm
		if realm == "" {
			realm = DefaultRealm
		}
		cfg.Auth = configuration.Auth{
			"htpasswd": configuration.Parameters{"realm": realm, "path": r.htpasswd},
		}
	}
	if r.opts.Configure != nil {
		r.opts.Configure(cfg)
	}
	return cfg
}

// newApp wraps handlers.NewApp, which reports configuration errors by
// panicking.
func (r *Registry) newApp() (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("registry: configuring distribution: %v", p)
		}
	}()
	return handlers.NewApp(context.Background(), r.config()), nil
}

// start listens on addr (retrying for up to retryFor while the port is
// still taken) and serves a fresh App. r.mu must not be held.
func (r *Registry) start(addr string, retryFor time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("registry: closed")
	}
	if r.running {
		return nil
	}

	ln, err := listen(addr, retryFor)
	if err != nil {
		return fmt.Errorf("registry: listen on %s: %w", addr, err)
	}
	if r.Addr == "" {
		// Set once: restarts reuse it, and readers need no lock.
		r.Addr = ln.Addr().String()
	}

	app, err := r.newApp()
	if err != nil {
		ln.Close()
		return err
	}
	if r.opts.TLS {
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{r.serverCert},
			MinVersion:   tls.VersionTLS12,
		})
	}
	conns := &connTracker{m: map[net.Conn]http.ConnState{}}
	srv := &http.Server{
		Handler:           app,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          r.errorLog,
		ConnState:         conns.track,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // always non-nil; ErrServerClosed after Shutdown/Close
	}()
	r.srv, r.app, r.served, r.conns, r.running = srv, app, served, conns, true
	return nil
}

// connTracker records the state of the server's connections.
type connTracker struct {
	mu sync.Mutex
	m  map[net.Conn]http.ConnState
}

func (c *connTracker) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(c.m, conn)
	default:
		c.m[conn] = st
	}
}

// closeNew closes the connections on which no request has started.
// http.Server.Shutdown waits 5 s for those (clients open spare connections
// they may never use), which would make every graceful stop slow.
func (c *connTracker) closeNew() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn, st := range c.m {
		if st == http.StateNew {
			conn.Close()
		}
	}
}

// listen binds addr; when the port is still in use (a restart right after a
// stop), it retries for up to retryFor.
func listen(addr string, retryFor time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(retryFor)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops serving. graceful waits for running requests (bounded by
// ShutdownTimeout); otherwise every connection is closed at once.
func (r *Registry) stop(graceful bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return nil
	}
	var err error
	if graceful {
		timeout := r.opts.ShutdownTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		done := make(chan error, 1)
		go func() { done <- r.srv.Shutdown(ctx) }()
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-tick.C:
				r.conns.closeNew()
			}
		}
		tick.Stop()
		cancel()
		if err != nil {
			// Requests still running after the timeout are cut.
			err = r.srv.Close()
		}
	} else {
		err = r.srv.Close()
	}
	<-r.served
	if aerr := r.app.Shutdown(); err == nil {
		err = aerr
	}
	r.srv, r.app, r.served, r.conns, r.running = nil, nil, nil, nil, false
	if err != nil {
		return fmt.Errorf("registry: stop: %w", err)
	}
	return nil
}

// Host returns the registry's host:port, as used in image references.
func (r *Registry) Host() string { return r.Addr }

// Scheme returns "https" with TLS, "http" otherwise.
func (r *Registry) Scheme() string {
	if r.opts.TLS {
		return "https"
	}
	return "http"
}

// URL returns the registry's base URL, e.g. "http://127.0.0.1:41234".
func (r *Registry) URL() string { return r.Scheme() + "://" + r.Addr }

// PlainHTTP reports whether the registry serves plain HTTP.
func (r *Registry) PlainHTTP() bool { return !r.opts.TLS }

// Options returns the options the registry was started with.
func (r *Registry) Options() Options { return r.opts }

// Client returns a new HTTP client that trusts the registry's CA (when it
// has TLS). It sends no credentials.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CertPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CertPool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

// Running reports whether the registry is serving.
func (r *Registry) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Stop stops serving gracefully (running requests may finish within
// Options.ShutdownTimeout, then are cut) and keeps the port number and the
// storage, so Restart can bring the same registry back. Stopping a stopped
// registry does nothing.
func (r *Registry) Stop() error { return r.stop(true) }

// Kill stops serving at once, closing every connection (requests in flight
// see their connection reset), like a crashed registry. Restart brings it
// back.
func (r *Registry) Kill() error { return r.stop(false) }

// Restart stops the registry if it runs, then serves a fresh distribution
// App on the same address and the same storage directory, with the same
// credentials, certificate and upload secret.
func (r *Registry) Restart() error {
	if err := r.stop(true); err != nil {
		return err
	}
	return r.start(r.Addr, 10*time.Second)
}

// Close stops the registry and removes the temporary directories it made
// (the storage directory too, unless Options.RootDir was given). A closed
// registry cannot be restarted. Close is idempotent.
func (r *Registry) Close() error {
	err := r.stop(true)
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	if already {
		return err
	}
	r.releaseLogging()
	if cerr := r.cleanupDirs(); err == nil {
		err = cerr
	}
	return err
}

func (r *Registry) cleanupDirs() error {
	var errs []error
	if r.privDir != "" {
		errs = append(errs, os.RemoveAll(r.privDir))
	}
	if r.ownRoot && r.RootDir != "" {
		errs = append(errs, os.RemoveAll(r.RootDir))
	}
	return errors.Join(errs...)
}
