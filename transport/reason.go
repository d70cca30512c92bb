package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Reasons returned by Reason.
const (
	ReasonUnauthorized    = "unauthorized"
	ReasonForbidden       = "forbidden"
	ReasonNotFound        = "not found"
	ReasonTooManyRequests = "too many requests"
	ReasonServerError     = "server error"
	ReasonNetwork         = "network"
	ReasonTLS             = "tls"
	ReasonTimeout         = "timeout"
	ReasonCanceled        = "canceled"
)

// Reason classifies err for a report: "unauthorized", "forbidden",
// "not found", "too many requests", "server error", "network", "tls",
// "timeout", "canceled", or "" when it is none of these (including nil).
// It understands oras-go's *errcode.ErrorResponse (by status code) and
// errdef.ErrNotFound, context errors, TLS and x509 errors, and net errors.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		if r := statusReason(resp.StatusCode); r != "" {
			return r
		}
	}
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return ReasonUnauthorized
	case isTLSError(err):
		return ReasonTLS
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return ReasonTimeout
	}
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
	)
	switch {
	case errors.As(err, &opErr), errors.As(err, &dnsErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed):
		return ReasonNetwork
	}
	// *url.Error from http.Client wraps every transport failure; io.EOF
	// there means the server closed the connection without an answer.
	if errors.As(err, &netErr) && errors.Is(err, io.EOF) {
		return ReasonNetwork
	}
	return ""
}

// statusReason maps an HTTP status to a reason.
func statusReason(code int) string {
	switch {
	case code == http.StatusUnauthorized:
		return ReasonUnauthorized
	case code == http.StatusForbidden:
		return ReasonForbidden
	case code == http.StatusNotFound:
		return ReasonNotFound
	case code == http.StatusTooManyRequests:
		return ReasonTooManyRequests
	case code == http.StatusRequestTimeout:
		return ReasonTimeout
	case code >= 500 && code <= 599:
		return ReasonServerError
	}
	return ""
}

// Describe is err as a report or a message gives it: its reason, then its
// redacted text ("unauthorized: GET …: 401 …").
func Describe(err error) string {
	msg := Redact(err.Error())
	if r := Reason(err); r != "" {
		msg = r + ": " + msg
	}
	return msg
}
