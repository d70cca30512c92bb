package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/registry/handlers"

	// distribution registers its auth schemes and storage drivers from init
	// functions; NewApp only finds the ones whose packages are linked in.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

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

// startInProcess listens on addr and serves a fresh V3 App. r.mu is held.
func (r *Registry) startInProcess(addr string, retryFor time.Duration) error {
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

// stopInProcess stops the V3 server and App. r.mu is held.
func (r *Registry) stopInProcess(graceful bool) error {
	var err error
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), r.shutdownTimeout())
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
