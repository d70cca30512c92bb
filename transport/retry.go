package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryTransport retries failed round trips. It is our own rather than
// oras-go's retry.Transport because that one replaces req.Body of the
// caller's request in place (RoundTrip must not modify the request), gives
// the policy no access to the request for a hook or a debug line, and has no
// way to inject the sleep for tests. Its retries follow the Retry policy: a
// request whose context carries a Budget (WithBudget) draws on it, any other
// one gets a budget of its own.
type retryTransport struct {
	base      http.RoundTripper
	userAgent string
	policy    Retry
	onRetry   func(RetryEvent)
	debug     *lockedWriter

	// sleep waits between attempts of a request's own budget and must
	// return ctx.Err() as soon as ctx is done; tests replace it to observe
	// the computed waits.
	sleep func(ctx context.Context, d time.Duration) error
	// now is the clock used to evaluate a Retry-After HTTP date.
	now func() time.Time
}

// maxDrain bounds how much of a failed response body is read so that its
// connection can be reused; anything longer is simply closed.
const maxDrain = 64 << 10

// RoundTrip implements http.RoundTripper.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if t.userAgent != "" {
		req = req.Clone(ctx) // RoundTrip must not modify the caller's request
		req.Header.Set("User-Agent", t.userAgent)
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	replayable := !hasBody || req.GetBody != nil
	budget := BudgetFrom(ctx)
	if budget == nil {
		budget = t.policy.Start()
		budget.sleep = t.sleep
	}

	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && hasBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("rewind request body for retry: %w", err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		start := time.Now()
		resp, err := t.base.RoundTrip(r)
		t.logAttempt(r, attempt, resp, err, time.Since(start))
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		retry, status, reason := retryable(resp, err)
		if !retry || !replayable {
			return resp, err
		}
		after := time.Duration(0)
		if resp != nil {
			after, _ = RetryAfter(resp.Header.Get("Retry-After"), t.now())
		}
		wait, spent := budget.Next(false, after, errors.New(reason))
		if spent != nil {
			return resp, err
		}
		if resp != nil {
			_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
			_ = resp.Body.Close()
		}
		if t.onRetry != nil {
			t.onRetry(RetryEvent{
				Method:     r.Method,
				URL:        Redact(r.URL.String()),
				Attempt:    attempt,
				Wait:       wait,
				StatusCode: status,
				Reason:     reason,
			})
		}
		if err := budget.Wait(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// retryable reports whether a round trip result is worth another attempt,
// with the status and a short redacted reason.
func retryable(resp *http.Response, err error) (bool, int, string) {
	if err != nil {
		return retryableError(err), 0, "network: " + Redact(err.Error())
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, resp.StatusCode, strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	return false, resp.StatusCode, ""
}

// retryableError reports whether a transport error may go away on its own.
// Certificate problems, a plain-HTTP server spoken to with TLS, unknown host
// names and malformed requests will not, so retrying them only delays the
// report.
func retryableError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if isTLSError(err) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false
	}
	return true
}

// isTLSError reports whether err is a certificate or TLS protocol failure.
func isTLSError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
		alert            tls.AlertError
		systemRoots      x509.SystemRootsError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &verification),
		errors.As(err, &record), errors.As(err, &alert), errors.As(err, &systemRoots):
		return true
	}
	// net/http reports a TLS handshake with a plain-HTTP server as an
	// untyped error.
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// maxRetryAfterValue bounds a parsed Retry-After, so absurd values do not
// overflow a time.Duration.
const maxRetryAfterValue = 24 * time.Hour

// RetryAfter parses a Retry-After header value: delta-seconds or an HTTP
// date (relative to now). ok is false for an empty or invalid value.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRetryAfterValue/time.Second) {
			return maxRetryAfterValue, true
		}
		return time.Duration(secs) * time.Second, true
	}
	if when, err := http.ParseTime(v); err == nil {
		return max(when.Sub(now), 0), true
	}
	return 0, false
}

// logAttempt writes one redacted debug line for an attempt.
func (t *retryTransport) logAttempt(req *http.Request, attempt int, resp *http.Response, err error, d time.Duration) {
	if t.debug == nil {
		return
	}
	var b strings.Builder
	b.WriteString("http: ")
	b.WriteString(req.Method)
	b.WriteByte(' ')
	b.WriteString(Redact(req.URL.String()))
	if err != nil {
		b.WriteString(" error: ")
		b.WriteString(Redact(err.Error()))
	} else {
		fmt.Fprintf(&b, " %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	fmt.Fprintf(&b, " (%s", d.Round(time.Millisecond))
	if attempt > 1 {
		fmt.Fprintf(&b, ", attempt %d", attempt)
	}
	b.WriteByte(')')
	t.debug.writeLine(b.String())
}
