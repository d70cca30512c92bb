package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Grace is how long the transfers in flight may take to finish their
// current chunk after a first interrupt, before the run is aborted.
const Grace = 20 * time.Second

// Main runs edgemirror as a program: like Run, with the interrupts of a
// terminal or a CI runner. The first SIGINT or SIGTERM stops gracefully: no
// new transfer starts, the chunks in flight finish and are journaled (for
// up to Grace), the report is written, and the exit code is 1. A second
// signal aborts at once.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	errw := newStderr(stderr) // the stop notices go above the progress too
	ctx, stop := interrupts(context.Background(), sigs, Grace, errw)
	return runWith(ctx, stop, args, stdin, stdout, errw)
}

// interrupts turns signals into a graceful stop (the returned channel
// closes on the first) and an abort (the context ends on the second, or
// grace after the first).
func interrupts(parent context.Context, sigs <-chan os.Signal, grace time.Duration, stderr io.Writer) (context.Context, <-chan struct{}) {
	ctx, abort := context.WithCancel(parent)
	stop := make(chan struct{})
	go func() {
		defer abort()
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		close(stop)
		fmt.Fprintf(stderr, "edgemirror: stopping: no new transfer starts; those in flight finish their current chunk (up to %s). Interrupt again to abort now.\n", grace)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "edgemirror: aborting")
		case <-t.C:
			fmt.Fprintf(stderr, "edgemirror: aborting: transfers still running after %s\n", grace)
		case <-ctx.Done():
		}
	}()
	return ctx, stop
}
