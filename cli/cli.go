// Package cli is edgemirror's command line: it turns arguments into the
// Options of the library packages, runs the command and maps the outcome to
// an exit code. It holds no mirroring logic.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/pflag"
)

// Version is the edgemirror version, set at build time with -ldflags
// (make build, make release); a binary built by go install takes its
// module version instead (see init). It must stay initialized by a
// constant: -X cannot set a variable initialized by a call.
var Version = "dev"

func init() {
	if Version == "dev" {
		Version = moduleVersion(Version)
	}
}

// moduleVersion is the version go install stamped into the binary, or def.
func moduleVersion(def string) string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return def
}

// Exit codes of the command-line contract, which scripts rely on.
const (
	ExitOK         = 0 // every required image is in place
	ExitOperation  = 1 // an operational error stopped the run
	ExitUsage      = 2 // bad usage or unreadable input
	ExitIncomplete = 3 // the run finished but images are missing, failed or unresolved
)

// env is what a command runs with.
type env struct {
	ctx    context.Context
	stop   <-chan struct{} // closed on a graceful stop; nil: only ctx ends a run
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	errw   *lockedWriter // stderr, which the progress frame may route
	tty    bool          // stderr is a terminal
	width  func() int    // its width now, when it is one
}

// exitError carries an exit code with its one-line message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks bad usage or unreadable input (exit 2).
func usageErr(err error) error { return &exitError{ExitUsage, err} }

// opErr marks an operational failure (exit 1).
func opErr(err error) error { return &exitError{ExitOperation, err} }

type command struct {
	name, args, summary string
	run                 func(e *env, args []string) (int, error)
}

func commands() []command {
	return []command{
		{"plan", "-p PROFILE... [-r REGISTRY]", "show where every image goes; no network", runPlan},
		{"mirror", "-p PROFILE... -r REGISTRY", "copy every image to its target, then report", runMirror},
		{"audit", "-p PROFILE... -r REGISTRY", "check the target has every image; copies nothing", runAudit},
		{"save", "-p PROFILE... -O BUNDLE", "copy every image into an airgap bundle (OCI layout dir or .tar)", runSave},
		{"push", "--bundle BUNDLE -r REGISTRY", "push a bundle's images to their targets", runPush},
		{"version", "", "print the version", func(e *env, _ []string) (int, error) {
			fmt.Fprintf(e.stdout, "edgemirror %s\n", Version)
			return ExitOK, nil
		}},
	}
}

// stopping reports whether a graceful stop was asked for.
func (e *env) stopping() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

// Run runs edgemirror with args (without the program name) and returns the
// exit code. Output goes only to stdout and stderr. Cancelling ctx aborts
// the run at once; Main adds the graceful stop of a first interrupt.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runWith(ctx, nil, args, stdin, stdout, newStderr(stderr))
}

func runWith(ctx context.Context, stop <-chan struct{}, args []string, stdin io.Reader, stdout io.Writer, errw *lockedWriter) int {
	var stderr io.Writer = errw
	e := &env{ctx: ctx, stop: stop, stdin: stdin, stdout: stdout, stderr: stderr, errw: errw, tty: isTerminal(errw.w), width: terminalWidth(errw.w)}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		code, err := c.run(e, args[1:])
		if err == nil {
			return code
		}
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "edgemirror %s: %s\n", c.name, oneLine(err.Error()))
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return ExitOperation
	}
	fmt.Fprintf(stderr, "edgemirror: unknown command %q; run 'edgemirror --help'\n", args[0])
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "edgemirror mirrors the images of Palette cluster profiles into an edge site's registry.")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  edgemirror %-8s %-40s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'edgemirror COMMAND --help' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 all in place, 1 operational error, 2 bad usage or input, 3 images missing, failed or unresolved.")
}

// newStderr wraps the program's stderr: progress, retry notices, --debug
// traces and stop notices reach it from many goroutines at once, and one
// lock keeps their lines whole.
func newStderr(w io.Writer) *lockedWriter { return &lockedWriter{w: w} }

// lockedWriter serializes writes to w, or sends them to via once set: the
// progress, which writes to w itself (under its own lock) and keeps other
// lines above its frame on a terminal.
type lockedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	via io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.via != nil {
		return l.via.Write(p)
	}
	return l.w.Write(p)
}

// route sends later writes through via (nil: straight to w).
func (l *lockedWriter) route(via io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.via = via
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
