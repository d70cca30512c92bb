package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// Signals the figures send to edgemirror; 0 sends none.
const (
	sigKill = syscall.SIGKILL
	sigInt  = syscall.SIGINT
)

// maxRun bounds one edgemirror process of the real-registries figures, and
// the wait for a signal's trigger.
const maxRun = 10 * time.Minute

// mirrorReport is the part of edgemirror's JSON report (--report FILE.json)
// the figures read.
type mirrorReport struct {
	Summary struct {
		Images         int   `json:"images"`
		Copied         int   `json:"copied"`
		Failed         int   `json:"failed"`
		BytesUploaded  int64 `json:"bytesUploaded"`
		BlobsRestarted int   `json:"blobsRestarted"`
		BytesResent    int64 `json:"bytesResent"`
	} `json:"summary"`
	Images []struct {
		Source string `json:"source"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"images"`
}

// proc is the outcome of one edgemirror process.
type proc struct {
	// exit is the exit code; -1 when a signal ended the process.
	exit int
	// stderr is everything the process wrote to stderr.
	stderr string
	// wall is the time from start to exit.
	wall time.Duration
	// signaled is whether the signal was sent; afterSignal is the time from
	// the signal to the exit.
	signaled    bool
	afterSignal time.Duration
	// report is the JSON report, when the process wrote one (hasReport).
	report    mirrorReport
	hasReport bool
}

// restarts returns how many "restarting blob" lines the process printed.
func (p proc) restarts() int { return strings.Count(p.stderr, "restarting blob") }

// mirrorArgs returns the arguments of an `edgemirror mirror` of set from
// srcHost (where each source registry's images are under its name) to
// dstHost/spectro-images, plain HTTP both ways, without progress, followed
// by extra.
func mirrorArgs(profile, srcHost, dstHost string, set *corpus, extra ...string) []string {
	args := []string{"mirror", "-p", profile, "-r", dstHost + "/" + targetPath,
		"--plain-http", "--source-plain-http", "--progress", "none"}
	for _, r := range set.registries() {
		args = append(args, "--source-mirror", r+"="+srcHost+"/"+r)
	}
	return append(args, extra...)
}

// runEdgemirror runs edgemirror with args (and stdin, for a password) plus
// a --report of its own, and reads the report. The report and stderr stay
// in the working directory as run-NNN-report.json and run-NNN-stderr.txt. When sig is not 0 it sends
// sig once trigger returns true (polled every few milliseconds). An exit
// code other than 0 is an outcome, not an error; err is for a process that
// could not run, or a trigger that never fired.
func (e *env) runEdgemirror(ctx context.Context, args []string, stdin string, sig syscall.Signal, trigger func() bool) (proc, error) {
	e.runs++
	name := filepath.Join(e.work, fmt.Sprintf("run-%03d", e.runs))
	reportFile := name + "-report.json"
	ctx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.edgemirror, append(args, "--report", reportFile)...)
	cmd.Dir = e.work
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return proc{}, fmt.Errorf("edgemirror: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var (
		p        proc
		signaled time.Time
		waitErr  error
		exited   bool
	)
	if sig != 0 {
		tick := time.NewTicker(2 * time.Millisecond)
	poll:
		for {
			select {
			case waitErr = <-done:
				exited = true
				break poll
			case <-tick.C:
				if trigger() {
					signaled = time.Now()
					_ = cmd.Process.Signal(sig)
					break poll
				}
			}
		}
		tick.Stop()
	}
	if !exited {
		waitErr = <-done
	}
	end := time.Now()
	p.wall, p.stderr = end.Sub(started), stderr.String()
	// Kept with the report for -keep: the first place to look at a figure
	// that misses its target.
	if err := os.WriteFile(name+"-stderr.txt", stderr.Bytes(), 0o644); err != nil {
		return p, fmt.Errorf("edgemirror stderr: %w", err)
	}
	if p.signaled = !signaled.IsZero(); p.signaled {
		p.afterSignal = end.Sub(signaled)
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		p.exit = exitErr.ExitCode()
	default:
		return p, fmt.Errorf("edgemirror: %w", waitErr)
	}
	if ctx.Err() != nil {
		return p, fmt.Errorf("edgemirror still running after %s: %s", maxRun, lastLine(p.stderr))
	}
	if sig != 0 && !p.signaled {
		return p, fmt.Errorf("edgemirror exited (code %d) before the moment to send %s: %s", p.exit, sig, lastLine(p.stderr))
	}
	if raw, err := os.ReadFile(reportFile); err == nil {
		if err := json.Unmarshal(raw, &p.report); err != nil {
			return p, fmt.Errorf("edgemirror report: %w", err)
		}
		p.hasReport = true
	}
	return p, nil
}

// figure is the setting of one edgemirror run of a figure: a fresh target
// registry behind a proxy, a profile of the images, and the arguments of
// the mirror.
type figure struct {
	dst   *registry.Registry
	proxy *faultproxy.Proxy
	// set is the images; want their digests at the source.
	set  *corpus
	want map[string]digest.Digest
	// client reaches dst directly, with the bench's credentials when it
	// takes tokens.
	client imagebuild.Target
	// args are the mirror's arguments: from the source to the proxy, with
	// -j and a --state-dir of the figure's own.
	args []string
	// close stops the registry and the proxy and removes the figure's
	// directory (unless -keep: the flaky-link figure alone would
	// otherwise leave gigabytes behind).
	close func()
}

// newFigure seeds set, then makes a figure directory named after name for
// the registry storage, the state and the profile of set, and starts a
// registry of the given kind there (with token auth for benchUser when tok
// is not nil) behind a proxy with the given faults. extra follows the
// mirror's arguments.
func (e *env) newFigure(ctx context.Context, name string, kind registry.Kind, tok *registry.TokenAuth, faults faultproxy.Faults, set *corpus, extra ...string) (*figure, error) {
	want, err := e.seedAndResolve(ctx, set)
	if err != nil {
		return nil, err
	}
	client := imagebuild.Target{PlainHTTP: true}
	if tok != nil {
		client.Username, client.Password = benchUser, benchPassword
	}
	dir, err := os.MkdirTemp(e.work, name+"-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	removeDir := func() {
		if !e.cfg.keep {
			_ = os.RemoveAll(dir)
		}
	}
	profile := filepath.Join(dir, "profile.json")
	if err := writeSingleProfile(profile, "os", set.refs()); err != nil {
		removeDir()
		return nil, err
	}
	dst, err := registry.Start(registry.Options{Kind: kind, Token: tok, RootDir: filepath.Join(dir, "registry")})
	if err != nil {
		removeDir()
		return nil, fmt.Errorf("%s target registry: %w", kind, err)
	}
	proxy, err := faultproxy.New(dst.URL(), faultproxy.Options{Faults: faults})
	if err != nil {
		dst.Close()
		removeDir()
		return nil, fmt.Errorf("%s target proxy: %w", kind, err)
	}
	args := mirrorArgs(profile, e.src.Host(), proxy.Host(), set,
		append([]string{"-j", fmt.Sprint(e.cfg.jobs), "--state-dir", filepath.Join(dir, "state")}, extra...)...)
	return &figure{dst: dst, proxy: proxy, set: set, want: want, client: client, args: args, close: func() {
		proxy.Close()
		dst.Close()
		removeDir()
	}}, nil
}

// check checks the figure's target after the run p, which it calls what in
// the log: "" when p exited 0 and every image is at its target with the
// source's digest, or exited otherwise (the exit code tells); what is
// wrong with the target otherwise.
func (e *env) check(ctx context.Context, f *figure, p proc, what string) string {
	if p.exit != 0 {
		e.logf("%s: exit %d: %s", what, p.exit, lastLine(p.stderr))
		for _, im := range p.report.Images {
			if im.Status != "copied" && im.Status != "present" {
				e.logf("%s: %s %s: %s", what, im.Source, im.Status, im.Reason)
			}
		}
		return ""
	}
	if err := checkTarget(ctx, f.client, f.dst.Host(), f.set, f.want); err != nil {
		e.logf("%s: %v", what, err)
		return err.Error()
	}
	return ""
}
