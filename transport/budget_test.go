package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

// errCause is the failure the budget tests report.
var errCause = errors.New("registry said no")

// failures feeds b one failed attempt per entry of progress and returns
// the index of the first that spent the budget (-1: none) with its error.
func failures(b *Budget, progress ...bool) (int, error) {
	for i, p := range progress {
		if err := b.Failed(context.Background(), p, errCause); err != nil {
			return i, err
		}
	}
	return -1, nil
}

func TestBudget(t *testing.T) {
	quick := Retry{Stalls: 3, MinWait: time.Microsecond, MaxWait: time.Microsecond}
	cases := []struct {
		name     string
		progress []bool
		spent    int // index of the attempt that spends the budget; -1 none
	}{
		{"stalls in a row", []bool{false, false, false}, 2},
		{"progress resets the count", []bool{false, false, true, false, false, true, false}, -1},
		{"progress never stalls", []bool{true, true, true, true, true, true}, -1},
		{"stalls after progress", []bool{true, false, false, false}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i, err := failures(quick.Start(), c.progress...)
			if i != c.spent {
				t.Fatalf("budget spent at attempt %d (%v), want %d", i, err, c.spent)
			}
			if err != nil && (!errors.Is(err, errCause) || !errors.Is(err, ErrGaveUp) || !strings.Contains(err.Error(), "after 3 attempts in a row without progress")) {
				t.Errorf("error %v", err)
			}
		})
	}
}

func TestBudgetFor(t *testing.T) {
	b := Retry{For: time.Minute, MinWait: time.Microsecond}.Start()
	if err := b.Failed(context.Background(), true, errCause); err != nil {
		t.Fatalf("first failure within the bound: %v", err)
	}
	b.started = b.started.Add(-time.Hour) // an hour of retries
	err := b.Failed(context.Background(), true, errCause)
	if !errors.Is(err, errCause) || !errors.Is(err, ErrGaveUp) || !strings.Contains(err.Error(), "still failing after 1m0s (2 attempts)") {
		t.Fatalf("got %v", err)
	}
}

func TestBudgetCancelledWait(t *testing.T) {
	b := Retry{MinWait: time.Hour}.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Failed(ctx, false, errCause) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errCause) || errors.Is(err, ErrGaveUp) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("failed kept waiting after the context ended")
	}
}

func TestRetryDefaults(t *testing.T) {
	got := Retry{}.WithDefaults()
	if got != (Retry{Stalls: DefaultStalls, MinWait: DefaultMinWait, MaxWait: DefaultMaxWait, MaxRetryAfter: DefaultMaxRetryAfter}) {
		t.Errorf("defaults %+v", got)
	}
	set := Retry{Stalls: 2, For: time.Second, MinWait: time.Millisecond, MaxWait: time.Second, MaxRetryAfter: time.Minute}
	if set.WithDefaults() != set {
		t.Errorf("set values changed: %+v", set.WithDefaults())
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := Sleep(ctx, 0); err != nil {
		t.Errorf("Sleep 0: %v", err)
	}
	if err := Sleep(ctx, time.Microsecond); err != nil {
		t.Errorf("Sleep 1µs: %v", err)
	}
	cancel()
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep 0 after cancel: %v", err)
	}
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep 1h after cancel: %v", err)
	}
}

func TestTransient(t *testing.T) {
	status := func(code int) error { return &errcode.ErrorResponse{Method: "PATCH", StatusCode: code} }
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{status(503), true},
		{status(500), true},
		{status(429), true},
		{status(401), false},
		{status(400), false},
		{status(404), false},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{fmt.Errorf("chunk: %w", io.ErrUnexpectedEOF), true},
		{context.DeadlineExceeded, true},
		{errors.New(`PATCH "http://r/v2/a/blobs/uploads/x": request body is not rewindable`), true},
		{errors.New("something else"), false},
	}
	for _, c := range cases {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestBudgetHonoursRetryAfter: a refusal with Retry-After waits as the
// registry asked even after progress (no new attempt before the context
// ends), where a plain failure with progress goes on at once.
func TestBudgetHonoursRetryAfter(t *testing.T) {
	policy := Retry{Stalls: 3, MinWait: time.Millisecond, MaxWait: time.Hour}
	plain := errors.New("cut")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := policy.Start().Failed(ctx, true, plain); err != nil {
		t.Fatalf("a failure after progress did not go on at once: %v", err)
	}
	asked := &RetryAfterError{Err: plain, Wait: time.Hour}
	if err := policy.Start().Failed(ctx, true, asked); !errors.Is(err, plain) {
		t.Fatalf("Retry-After was not waited for: %v", err)
	}
}

// TestBudgetStopEndsWait: a graceful stop ends a wait at once with
// ErrStopped, so a blob backing off starts no new attempt.
func TestBudgetStopEndsWait(t *testing.T) {
	b := Retry{MinWait: time.Hour, MaxWait: time.Hour}.Start()
	stop := make(chan struct{})
	b.Stop = stop
	done := make(chan error, 1)
	go func() { done <- b.Failed(context.Background(), false, errCause) }()
	close(stop)
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("got %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait ran on after the stop")
	}
}

// TestBudgetBegin: the clock of Retry.For starts again at Begin, so time
// spent queued before the transfer does not count.
func TestBudgetBegin(t *testing.T) {
	b := Retry{For: time.Minute, MinWait: time.Microsecond}.Start()
	b.started = b.started.Add(-time.Hour) // an hour in a queue
	b.Begin()
	if err := b.Failed(context.Background(), true, errCause); err != nil {
		t.Fatalf("a first failure right after Begin spent the budget: %v", err)
	}
}
