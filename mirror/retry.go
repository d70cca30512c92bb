package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgemirror/edgemirror/transport"
)

// Retry is how a blob transfer that fails part-way goes on. A transfer
// keeps going for as long as its attempts make progress (a chunk the
// registry acknowledged, or the blob completed); attempts that move nothing
// back off, and after Stalls of them in a row the blob fails. That keeps a
// large layer alive over a link that fails every few hundred MiB, and gives
// up quickly on a registry that refuses every byte.
type Retry struct {
	// Stalls is how many attempts in a row may fail without progress before
	// the blob fails; <= 0 means the default, 8.
	Stalls int
	// For bounds the retries of one blob: no attempt starts after a
	// failure once the blob has been in transfer this long; <= 0 means no
	// bound (Stalls still applies).
	For time.Duration
	// MinWait is the first wait after an attempt without progress; it
	// doubles with each further one. <= 0 means the default, 500ms.
	MinWait time.Duration
	// MaxWait caps the wait between attempts; <= 0 means the default, 30s.
	MaxWait time.Duration
}

// Defaults of Retry.
const (
	DefaultStalls  = 8
	DefaultMinWait = 500 * time.Millisecond
	DefaultMaxWait = 30 * time.Second
)

func (r Retry) withDefaults() Retry {
	if r.Stalls <= 0 {
		r.Stalls = DefaultStalls
	}
	if r.MinWait <= 0 {
		r.MinWait = DefaultMinWait
	}
	if r.MaxWait <= 0 {
		r.MaxWait = DefaultMaxWait
	}
	return r
}

// maxRestarts is how often a blob may start over from byte 0 because its
// registry lost the upload session (distribution 2.8, Harbor and zot lose it
// on every cut chunk): four times Stalls. Such a restart may follow an
// attempt that made progress, so Stalls alone would never end a link that
// always fails before the blob is complete.
func maxRestarts(r Retry) int { return 4 * r.withDefaults().Stalls }

// errGaveUp marks a transfer that spent its retry budget.
var errGaveUp = errors.New("gave up")

// budget tracks the attempts of one blob transfer under a Retry policy.
type budget struct {
	policy   Retry
	started  time.Time
	attempts int
	stalls   int // failed attempts in a row without progress
}

func (r Retry) start() *budget {
	return &budget{policy: r.withDefaults(), started: time.Now()}
}

// failed records a failed attempt (progress says whether it moved the
// transfer forward) and waits before the next one. It returns an error
// wrapping cause when the budget is spent or ctx ends.
func (b *budget) failed(ctx context.Context, progress bool, cause error) error {
	b.attempts++
	wait := time.Duration(0)
	if progress {
		// The link works: go on at once from where the registry stands.
		b.stalls = 0
	} else {
		b.stalls++
		if b.stalls >= b.policy.Stalls {
			return fmt.Errorf("%w: %d attempts in a row made no progress: %w", errGaveUp, b.stalls, cause)
		}
		wait = b.policy.MinWait << (b.stalls - 1)
		if wait > b.policy.MaxWait || wait <= 0 {
			wait = b.policy.MaxWait
		}
	}
	if b.policy.For > 0 && time.Since(b.started) >= b.policy.For {
		return fmt.Errorf("%w: still failing after %s of retries (%d attempts): %w", errGaveUp, b.policy.For, b.attempts, cause)
	}
	var ra *retryAfter
	if errors.As(cause, &ra) {
		// The registry said when to come back: not sooner, not much later.
		wait = max(wait, min(ra.wait, b.policy.MaxWait))
	}
	if err := sleep(ctx, wait); err != nil {
		return cause
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
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

// transient reports whether a failure may pass on its own: a network
// error, a 5xx, a 429, a timeout, or credentials that expired while a
// request body was on its way (the client has fresh ones now).
func transient(err error) bool {
	switch transport.Reason(err) {
	case transport.ReasonNetwork, transport.ReasonServerError, transport.ReasonTooManyRequests, transport.ReasonTimeout:
		return true
	}
	return reauthenticated(err)
}

// reauthenticated reports the error oras-go's auth.Client returns when the
// registry answered 401 to a request whose streamed body cannot be sent
// again: a Bearer token expired mid-run. The client has already fetched a
// fresh token by then, so the request can simply be made again (at a chunk
// boundary, from the offset the registry holds). oras-go returns this as an
// untyped error, hence the match on its text.
func reauthenticated(err error) bool {
	return err != nil && strings.Contains(err.Error(), "request body is not rewindable")
}
