package registry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a V28 child may take to answer GET /v2/.
const startTimeout = 30 * time.Second

// child is the docker-registry process of a V28 registry.
type child struct {
	cmd    *exec.Cmd
	out    *tailBuffer   // the end of its output, for start errors
	exited chan struct{} // closed once it has exited and been reaped
	err    error         // cmd.Wait's result, set before exited is closed
}

func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// errExited is wrapped by the errors that report a child that had exited
// on its own.
var errExited = errors.New("exited")

// exitError describes a child that has exited, with the reason it printed.
func (c *child) exitError() error {
	if why := c.out.reason(); why != "" {
		return fmt.Errorf("registry: docker-registry %w (%v): %s", errExited, c.err, why)
	}
	return fmt.Errorf("registry: docker-registry %w (%v)", errExited, c.err)
}

// startProcess runs docker-registry on addr and waits until it answers.
// r.mu is held.
func (r *Registry) startProcess(addr string, retryFor time.Duration) error {
	if r.Addr == "" {
		// The child binds its ports itself, so pick free ones up front and
		// keep them for restarts.
		var err error
		if r.Addr, err = freeAddr(addr); err != nil {
			return err
		}
		if r.debugAddr, err = freeAddr("127.0.0.1:0"); err != nil {
			return err
		}
	}
	cfg, err := r.configYAML()
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(r.privDir, "config.yml")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	deadline := time.Now().Add(retryFor)
	for {
		c, err := r.spawn(cfgFile)
		if err != nil {
			return err
		}
		err = r.waitReady(c)
		if err == nil {
			r.child, r.running = c, true
			return nil
		}
		// A restart right after a stop may find the port still taken.
		if c.alive() || !strings.Contains(c.out.String(), "address already in use") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns addr with its port resolved, free at the time of the
// call.
func freeAddr(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("registry: listen on %s: %w", addr, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// spawn starts `docker-registry serve cfgFile`.
func (r *Registry) spawn(cfgFile string) (*child, error) {
	c := &child{out: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	var w io.Writer = c.out
	if r.opts.LogOutput != nil {
		w = io.MultiWriter(c.out, errorless{r.opts.LogOutput})
	}
	cmd := exec.Command(r.binary, "serve", cfgFile)
	cmd.Dir = r.privDir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = childAttr()
	c.cmd = cmd

	started := make(chan error, 1)
	go func() {
		// Linux's parent-death signal (childAttr) fires when the OS thread
		// that started the child exits, not the process, and Go may end
		// threads: keep this one locked to this goroutine until the child
		// has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("registry: starting docker-registry: %w", err)
	}
	return c, nil
}

// childEnv is this process's environment without the REGISTRY_* variables,
// which would override the child's configuration file.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls GET /v2/ until the child answers (any status), exits, or
// startTimeout passes (then it is killed).
func (r *Registry) waitReady(c *child) error {
	hc := r.Client()
	hc.Timeout = time.Second
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := hc.Get(r.URL() + "/v2/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.exited:
			return c.exitError()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			<-c.exited
			return fmt.Errorf("registry: docker-registry did not answer on %s within %s", r.Addr, startTimeout)
		}
	}
}

// stopProcess ends the child: when graceful, SIGTERM and a wait for its
// drain, SIGKILL otherwise (and when the drain outlasts the timeout). It
// reports a child that had died on its own. r.mu is held.
func (r *Registry) stopProcess(graceful bool) error {
	c := r.child
	r.child, r.running = nil, false
	if !c.alive() {
		return c.exitError()
	}
	if graceful {
		// SIGTERM closes the child's listener and drains for
		// http.draintimeout (the shutdown timeout); the extra second lets
		// it exit. Its drain also waits out every connection on which no
		// request has started yet (5 s; clients open spare ones), which the
		// in-process server closes at once: once no request is in flight,
		// the child has nothing left to finish, so it is killed then.
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		timeout := time.After(r.shutdownTimeout() + time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-c.exited:
				return nil
			case <-timeout:
				break wait
			case <-tick.C:
				if r.drained() {
					break wait
				}
			}
		}
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return nil
}

// drained reports whether the child's metrics show no request in flight;
// false when they cannot be read.
func (r *Registry) drained() bool {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + r.debugAddr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		// registry_http_in_flight_requests{handler="blob"} 0
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "registry_http_in_flight_requests{") {
			continue
		}
		found = true
		if n, err := strconv.ParseFloat(value, 64); err != nil || n != 0 {
			return false
		}
	}
	return found && sc.Err() == nil
}

// errorless passes writes on and never fails: a LogOutput that fails must
// not stop the copying of the child's output, or the child would block or
// die writing to its closed pipe.
type errorless struct{ w io.Writer }

func (e errorless) Write(p []byte) (int, error) {
	_, _ = e.w.Write(p)
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if n := len(t.buf); n > t.max {
		t.buf = t.buf[n-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// logrusMsg finds the message of a logrus text line.
var logrusMsg = regexp.MustCompile(`msg=("(?:[^"\\]|\\.)*"|\S+)`)

// reason returns, on one line, why the child stopped: its configuration
// error, fatal log message or panic; "" when it printed none.
func (t *tailBuffer) reason() string {
	for _, line := range strings.Split(t.String(), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "configuration error:"), strings.HasPrefix(line, "panic:"), strings.HasPrefix(line, "fatal error:"):
			return line
		case strings.Contains(line, "level=fatal"), strings.Contains(line, "level=panic"):
			if m := logrusMsg.FindStringSubmatch(line); m != nil {
				if s, err := strconv.Unquote(m[1]); err == nil {
					return s
				}
				return m[1]
			}
			return line
		}
	}
	return ""
}
