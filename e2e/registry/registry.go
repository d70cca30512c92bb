// Package registry starts a real distribution registry on the loopback
// interface, for end-to-end tests, the demo and the benchmark: CNCF
// distribution v3 in-process (Kind V3, the default), or distribution 2.8,
// the registry Harbor embeds, as a child process of Debian's docker-registry
// binary (Kind V28). Both behave the same through this package's API.
//
// The configuration is built in code: filesystem storage with deletes
// enabled, optional htpasswd basic auth or Bearer token auth, and optional
// TLS with a CA generated at start. The port and the storage directory are
// kept across restarts, so the registry can be stopped and started again
// (a "registry restarted mid-run" test) or killed like a crashed one.
//
// V3 is distribution's own HTTP application (handlers.NewApp) served by an
// http.Server of this package on a listener of this package. V28 runs
// `docker-registry serve CONFIG` with a configuration file rendered from the
// same configuration; the child also serves its metrics on a second
// loopback port, which Stop reads.
//
// Start does not depend on package testing; StartT is the test convenience.
package registry

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"golang.org/x/crypto/bcrypt"
)

// DefaultRealm is the basic-auth realm used when Options.Realm is empty.
const DefaultRealm = "edgemirror-e2e"

// ErrV28NotInstalled is returned by Start with Kind V28 when the
// docker-registry binary is not on PATH.
var ErrV28NotInstalled = errors.New("distribution 2.8 (Debian package docker-registry) is not installed: apt-get install docker-registry, or run .ci/run")

// Options configures a registry. The zero value is an in-process
// distribution v3 registry serving plain HTTP without auth on 127.0.0.1 and
// a random free port, storing in a fresh temporary directory.
type Options struct {
	// Kind chooses the implementation; the zero value is V3.
	Kind Kind

	// Addr is the listen address. Empty means "127.0.0.1:0" (a free port).
	// The port chosen at the first start is kept by Restart.
	Addr string

	// TLS serves HTTPS with a server certificate for 127.0.0.1, ::1 and
	// localhost, signed by a CA generated at Start (Registry.CAFile,
	// Registry.CAPEM, Registry.CertPool).
	TLS bool

	// Users enables htpasswd basic auth with these user names and passwords
	// (hashed with bcrypt at its minimum cost, since the registry checks the
	// hash on every request). Empty means no basic auth. Users and Token
	// exclude each other.
	Users map[string]string

	// Realm is the basic-auth realm; empty means DefaultRealm.
	Realm string

	// Token, when non-nil, enables Bearer token auth trusting the token
	// server it describes (see package tokenserver).
	Token *TokenAuth

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

	// LogOutput, when non-nil, receives the registry's log lines; nil means
	// silent. With V28 it receives the child's standard output and error.
	// With V3, distribution logs through logrus's process-wide standard
	// logger, so while any in-process registry with a LogOutput runs, every
	// in-process registry's lines go to every such writer.
	LogOutput io.Writer

	// LogLevel is the log level used with LogOutput ("debug", "info",
	// "warn", "error"); empty means "info".
	LogLevel string

	// ShutdownTimeout bounds the graceful part of Stop and Close; requests
	// still running then are cut. <= 0 means the default, 5 s.
	ShutdownTimeout time.Duration

	// Configure, when non-nil, may change the configuration built by this
	// package just before each start (e.g. validation settings). With V28
	// the result is rendered to the child's YAML configuration file, which
	// distribution 2.8 reads with its own, older schema: settings it does
	// not know are ignored.
	Configure func(*configuration.Configuration)
}

// Registry is a running (or stopped) distribution registry.
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
	privDir     string // configuration, htpasswd file, certificates
	ownRoot     bool
	serverCert  tls.Certificate
	tlsCertFile string // serverCert's chain and key as PEM files (V28)
	tlsKeyFile  string
	htpasswd    string
	binary      string // the docker-registry executable (V28)
	debugAddr   string // the child's debug server, for its metrics (V28)
	errorLog    *log.Logger

	mu      sync.Mutex
	closed  bool
	running bool
	// V3: the current server and App.
	srv    *http.Server
	app    *handlers.App
	served chan struct{} // closed when the current Serve returns
	conns  *connTracker
	// V28: the current child process.
	child *child
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
	switch r.opts.Kind {
	case V3:
	case V28:
		bin, err := exec.LookPath("docker-registry")
		if err != nil {
			return fmt.Errorf("registry: %w", ErrV28NotInstalled)
		}
		r.binary = bin
	default:
		return fmt.Errorf("registry: unknown kind %d", int(r.opts.Kind))
	}
	if len(r.opts.Users) > 0 && r.opts.Token != nil {
		return errors.New("registry: Users and Token exclude each other")
	}

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
		if err := r.writeHtpasswd(); err != nil {
			return err
		}
	}
	if r.opts.TLS {
		if err := r.makeCerts(); err != nil {
			return err
		}
	}

	r.errorLog = log.New(io.Discard, "", 0)
	if r.opts.LogOutput != nil {
		r.errorLog = log.New(r.opts.LogOutput, "registry http: ", log.LstdFlags)
	}
	r.acquireLogging()
	return nil
}

// writeHtpasswd writes the htpasswd file of Options.Users.
func (r *Registry) writeHtpasswd() error {
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
	return nil
}

// makeCerts generates the CA and the server certificate, and writes them.
func (r *Registry) makeCerts() error {
	ca, err := NewCA("edgemirror e2e test CA")
	if err != nil {
		return fmt.Errorf("registry: generating CA: %w", err)
	}
	r.serverCert, err = ca.ServerCert()
	if err != nil {
		return fmt.Errorf("registry: generating server certificate: %w", err)
	}
	r.CAPEM = ca.CertPEM
	r.CertPool = x509.NewCertPool()
	r.CertPool.AddCert(ca.Cert)
	r.CAFile = filepath.Join(r.privDir, "ca.pem")
	if err := os.WriteFile(r.CAFile, r.CAPEM, 0o644); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if r.opts.Kind == V28 {
		r.tlsCertFile = filepath.Join(r.privDir, "server.pem")
		r.tlsKeyFile = filepath.Join(r.privDir, "server-key.pem")
		if err := writeKeyPair(r.serverCert, r.tlsCertFile, r.tlsKeyFile); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}
	return nil
}

// shutdownTimeout is Options.ShutdownTimeout or its default.
func (r *Registry) shutdownTimeout() time.Duration {
	if r.opts.ShutdownTimeout <= 0 {
		return 5 * time.Second
	}
	return r.opts.ShutdownTimeout
}

// start starts serving on addr, retrying for up to retryFor while the port
// is still taken. r.mu must not be held.
func (r *Registry) start(addr string, retryFor time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("registry: closed")
	}
	if r.running {
		return nil
	}
	if r.opts.Kind == V28 {
		return r.startProcess(addr, retryFor)
	}
	return r.startInProcess(addr, retryFor)
}

// stop stops serving. graceful waits for running requests (bounded by
// ShutdownTimeout); otherwise they are cut at once.
func (r *Registry) stop(graceful bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return nil
	}
	if r.opts.Kind == V28 {
		return r.stopProcess(graceful)
	}
	return r.stopInProcess(graceful)
}

// Kind returns the registry's implementation.
func (r *Registry) Kind() Kind { return r.opts.Kind }

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

// Running reports whether the registry is serving. A V28 child process
// that died on its own is not running.
func (r *Registry) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.child != nil {
		return r.child.alive()
	}
	return r.running
}

// PID returns the process id of the V28 child process, or 0 when it is not
// running and with V3.
func (r *Registry) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.child == nil || !r.child.alive() {
		return 0
	}
	return r.child.cmd.Process.Pid
}

// Stop stops serving gracefully (running requests may finish within
// Options.ShutdownTimeout, then are cut) and keeps the port number and the
// storage, so Restart can bring the same registry back. Stopping a stopped
// registry does nothing. With V28 the child gets SIGTERM, then SIGKILL
// once its metrics show no request in flight (or a second after the
// timeout); Stop reports a child that had died on its own.
func (r *Registry) Stop() error { return r.stop(true) }

// Kill stops serving at once, like a crashed registry: requests in flight
// see their connection reset (V3 closes every connection, V28's child gets
// SIGKILL). Restart brings it back.
func (r *Registry) Kill() error { return r.stop(false) }

// Restart stops the registry if it runs, then starts it again on the same
// address and the same storage directory, with the same credentials,
// certificate and upload secret. A V28 child that had died on its own is
// simply started again.
func (r *Registry) Restart() error {
	if err := r.stop(true); err != nil && !errors.Is(err, errExited) {
		return err
	}
	return r.start(r.Addr, 10*time.Second)
}

// Close stops the registry and removes the temporary directories it made
// (the storage directory too, unless Options.RootDir was given). A closed
// registry cannot be restarted, and no V28 child process is left; like
// Stop, Close reports a child that had died on its own. Close is
// idempotent.
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
