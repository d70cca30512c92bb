package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Retry is the one retry policy of edgemirror, used by every layer that
// tries again: the HTTP client for a request it can repeat, and the copy
// engine for a blob (a chunked upload resuming, a whole-blob upload starting
// over, a source read reopened). Attempts that make progress (a chunk the
// registry acknowledged, bytes read) go on at once; attempts that move
// nothing back off, doubling from MinWait to MaxWait with jitter, or as a
// Retry-After asks; after Stalls of them in a row the budget is spent.
//
// A blob's budget travels in its requests' context (WithBudget): the HTTP
// client then draws its retries from it instead of from a budget of its
// own, so a registry that always answers 503 costs a blob Stalls attempts
// in all, not a product of nested retry loops.
type Retry struct {
	// Stalls is how many attempts in a row may fail without progress before
	// the budget is spent; <= 0 means the default, 8.
	Stalls int
	// For bounds the retries: no attempt starts after a failure once the
	// budget has been running this long; <= 0 means no bound.
	For time.Duration
	// MinWait is the wait after the first attempt without progress;
	// <= 0 means the default, 500ms.
	MinWait time.Duration
	// MaxWait caps the backoff; <= 0 means the default, 30s.
	MaxWait time.Duration
	// MaxRetryAfter caps a wait asked for by Retry-After; <= 0 means the
	// default, 2m.
	MaxRetryAfter time.Duration
}

// Defaults of Retry.
const (
	DefaultStalls        = 8
	DefaultMinWait       = 500 * time.Millisecond
	DefaultMaxWait       = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
)

// WithDefaults fills in the defaults of unset fields.
func (r Retry) WithDefaults() Retry {
	r.Stalls = orDefault(r.Stalls, DefaultStalls)
	r.MinWait = orDefault(r.MinWait, DefaultMinWait)
	r.MaxWait = max(orDefault(r.MaxWait, DefaultMaxWait), r.MinWait)
	r.MaxRetryAfter = orDefault(r.MaxRetryAfter, DefaultMaxRetryAfter)
	return r
}

// MaxRestarts is how often a blob may start over from byte 0 because its
// registry lost the upload session (distribution 2.8, Harbor and zot lose it
// on every chunk cut mid-body): four times Stalls. A restart may follow an
// attempt that made progress, so Stalls alone would never end a link that
// always fails before the blob is complete.
func (r Retry) MaxRestarts() int { return 4 * r.WithDefaults().Stalls }

// ErrGaveUp marks a failure after which the budget is spent.
var ErrGaveUp = errors.New("gave up")

// ErrStopped marks work not done because the run was asked to stop.
var ErrStopped = errors.New("stopped before it finished; run again to continue")

// Budget tracks the attempts of one transfer under a Retry policy. It is
// safe for concurrent use.
type Budget struct {
	policy  Retry
	started time.Time

	// Idle, when set, runs every wait: it gives up what the caller holds
	// while waiting (the engine's transfer slot), calls wait, and takes it
	// back. It returns wait's error, or its own.
	Idle func(ctx context.Context, wait func() error) error
	// Stop, once closed, ends every wait with ErrStopped: a run stopping
	// gracefully starts no new attempt.
	Stop <-chan struct{}

	sleep func(ctx context.Context, d time.Duration) error

	mu       sync.Mutex
	attempts int
	stalls   int // failed attempts in a row without progress
}

// Start begins a budget under the policy r.
func (r Retry) Start() *Budget {
	return &Budget{policy: r.WithDefaults(), started: time.Now(), sleep: Sleep}
}

// Begin restarts the clock of Retry.For: the transfer itself begins now
// (after a wait in a queue).
func (b *Budget) Begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = time.Now()
}

// Next records a failed attempt (progress: it moved the transfer forward;
// retryAfter: the wait the server asked for, 0 for none) and returns how
// long to wait before the next one. When the budget is spent it returns an
// error wrapping ErrGaveUp and cause.
func (b *Budget) Next(progress bool, retryAfter time.Duration, cause error) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	wait := time.Duration(0)
	if progress {
		b.stalls = 0 // the link works: go on at once from where it stands
	} else {
		b.stalls++
		if b.stalls >= b.policy.Stalls {
			return 0, fmt.Errorf("%w after %d attempts in a row without progress: %w", ErrGaveUp, b.stalls, cause)
		}
		wait = b.backoff()
	}
	if b.policy.For > 0 && time.Since(b.started) >= b.policy.For {
		return 0, fmt.Errorf("%w: still failing after %s (%d attempts): %w", ErrGaveUp, b.policy.For, b.attempts, cause)
	}
	if retryAfter > 0 {
		// The server said when to come back: not sooner.
		wait = max(wait, min(retryAfter, b.policy.MaxRetryAfter))
	}
	return wait, nil
}

// backoff is the wait after b.stalls attempts without progress: doubling
// from MinWait, capped at MaxWait, with "equal jitter" (between half and
// all of the step) so that many transfers do not retry in step.
func (b *Budget) backoff() time.Duration {
	d := b.policy.MinWait
	for i := 1; i < b.stalls && d < b.policy.MaxWait; i++ {
		d *= 2
	}
	d = min(d, b.policy.MaxWait)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Wait waits d, through Idle when set; it returns ctx's error if ctx ends
// first.
func (b *Budget) Wait(ctx context.Context, d time.Duration) error {
	wait := func() error {
		if b.Stop == nil {
			return b.sleep(ctx, d)
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stopped := make(chan struct{})
		go func() {
			select {
			case <-b.Stop:
				close(stopped)
				cancel()
			case <-sctx.Done():
			}
		}()
		err := b.sleep(sctx, d)
		select {
		case <-stopped:
			return ErrStopped
		default:
			return err
		}
	}
	if b.Idle != nil && d > 0 {
		return b.Idle(ctx, wait)
	}
	return wait()
}

// Failed records a failed attempt and waits before the next one, as Next
// says (a RetryAfterError in cause gives the server's wait). It returns nil
// when the next attempt may start, the budget's error when it is spent, and
// cause when ctx ends during the wait.
func (b *Budget) Failed(ctx context.Context, progress bool, cause error) error {
	var ra *RetryAfterError
	after := time.Duration(0)
	if errors.As(cause, &ra) {
		after = ra.Wait
	}
	wait, err := b.Next(progress, after, cause)
	if err != nil {
		return err
	}
	if werr := b.Wait(ctx, wait); werr != nil {
		if errors.Is(werr, ErrStopped) {
			return werr
		}
		return cause
	}
	return nil
}

// RetryAfterError is a refusal that says how long to wait before asking
// again (a 429 or 503 with Retry-After on a request the HTTP client could
// not repeat by itself, such as a streamed chunk).
type RetryAfterError struct {
	Err  error
	Wait time.Duration
}

func (r *RetryAfterError) Error() string { return r.Err.Error() }

// Unwrap returns the refusal.
func (r *RetryAfterError) Unwrap() error { return r.Err }

type budgetKey struct{}

// WithBudget returns a context whose requests draw their retries from b.
func WithBudget(ctx context.Context, b *Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// BudgetFrom returns the budget of ctx, or nil.
func BudgetFrom(ctx context.Context) *Budget {
	b, _ := ctx.Value(budgetKey{}).(*Budget)
	return b
}

// Sleep waits d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Transient reports whether a failure may pass on its own: a network error,
// a 5xx, a 429, a timeout, or credentials that expired while a request body
// was on its way (the client holds fresh ones by then).
func Transient(err error) bool {
	switch Reason(err) {
	case ReasonNetwork, ReasonServerError, ReasonTooManyRequests, ReasonTimeout:
		return true
	}
	return Reauthenticated(err)
}

// Reauthenticated reports the error oras-go's auth.Client returns when the
// registry answered 401 to a request whose streamed body cannot be sent
// again: a Bearer token expired mid-run. The client has fetched a fresh
// token by then, so the request can simply be made again. oras-go returns
// it as an untyped error, hence the match on its text.
func Reauthenticated(err error) bool {
	return err != nil && strings.Contains(err.Error(), "request body is not rewindable")
}
