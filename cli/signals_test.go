package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestInterruptsStopThenAbort: the first signal closes stop and leaves the
// context running; the second cancels it.
func TestInterruptsStopThenAbort(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	var errb bytes.Buffer // read once the goroutine that writes it is done
	ctx, stop := interrupts(context.Background(), sigs, time.Hour, &lockedWriter{w: &errb})
	select {
	case <-stop:
		t.Fatal("stopped before any signal")
	default:
	}
	sigs <- os.Interrupt
	<-stop
	if ctx.Err() != nil {
		t.Fatal("the first signal aborted the run; it should only stop it")
	}
	sigs <- os.Interrupt
	<-ctx.Done()
	if !strings.Contains(errb.String(), "stopping") || !strings.Contains(errb.String(), "aborting") {
		t.Errorf("stderr does not say what happens:\n%s", errb.String())
	}
}

// TestInterruptsGraceEnds: without a second signal, the run is aborted
// once the grace period is over.
func TestInterruptsGraceEnds(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	var errb bytes.Buffer // read once the goroutine that writes it is done
	ctx, stop := interrupts(context.Background(), sigs, 10*time.Millisecond, &lockedWriter{w: &errb})
	sigs <- os.Interrupt
	<-stop
	<-ctx.Done()
	if !strings.Contains(errb.String(), "still running after") {
		t.Errorf("stderr does not say why the run was aborted:\n%s", errb.String())
	}
}
