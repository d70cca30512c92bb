package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   string   // exact result, when set
		keep   []string // substrings that must survive
		secret []string // substrings that must be gone
	}{
		{
			name: "upload URL with _state",
			in:   `PUT "https://reg.example:5000/v2/edge/blobs/uploads/3f2a?_state=eyJOYW1lIjoi.SECRET&digest=sha256:abcd": response status code 400`,
			want: `PUT "https://reg.example:5000/v2/edge/blobs/uploads/3f2a?_state=REDACTED&digest=sha256:abcd": response status code 400`,
		},
		{
			name: "relative upload location",
			in:   `Location: /v2/edge/blobs/uploads/3f2a?_state=SECRET`,
			want: `Location: /v2/edge/blobs/uploads/3f2a?_state=REDACTED`,
		},
		{
			name:   "presigned S3 link",
			in:     `GET https://bucket.s3.amazonaws.com/docker/blobs/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASECRET&X-Amz-Signature=deadbeefSECRET: EOF`,
			keep:   []string{"https://bucket.s3.amazonaws.com/docker/blobs/data?", "X-Amz-Signature=REDACTED", ": EOF"},
			secret: []string{"AKIASECRET", "deadbeefSECRET"},
		},
		{
			name: "userinfo",
			in:   `dial https://user:pass@registry.example.com/v2/: refused`,
			want: `dial https://registry.example.com/v2/: refused`,
		},
		{
			name: "userinfo without password",
			in:   `http://token@host:5000`,
			want: `http://host:5000`,
		},
		{
			name: "bearer token",
			in:   `request failed with Bearer abc.def`,
			want: `request failed with Bearer REDACTED`,
		},
		{
			name: "authorization header",
			in:   "Authorization: Basic dXNlcjpwYXNz\nnext line",
			want: "Authorization: REDACTED\nnext line",
		},
		{
			name: "palette api key header",
			in:   "ApiKey: c2VjcmV0LWtleQ==\nProjectUid: 6650",
			want: "ApiKey: REDACTED\nProjectUid: 6650",
		},
		{
			name: "header map print",
			in:   `map[Authorization:[Bearer abc.def] Cookie:[s=1]]`,
			keep: []string{"Authorization:", "Cookie:"}, secret: []string{"abc.def", "s=1"},
		},
		{
			name: "challenge is kept",
			in:   `Www-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
			want: `Www-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
		},
		{
			name: "token JSON",
			in:   `{"token":"SECRET1","access_token":"SECRET2","expires_in":300}`,
			want: `{"token":"REDACTED","access_token":"REDACTED","expires_in":300}`,
		},
		{
			name: "mount and paging are kept",
			in:   `POST https://r/v2/a/blobs/uploads/?mount=sha256:1&from=b/c then GET /v2/_catalog?n=100&last=x`,
			want: `POST https://r/v2/a/blobs/uploads/?mount=sha256:1&from=b/c then GET /v2/_catalog?n=100&last=x`,
		},
		{name: "plain text untouched", in: "basic credential not found", want: "basic credential not found"},
		{name: "empty", in: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in)
			if tc.want != "" || tc.in == "" {
				if got != tc.want {
					t.Errorf("Redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
				}
			}
			for _, k := range tc.keep {
				if !strings.Contains(got, k) {
					t.Errorf("Redact(%q) = %q lost %q", tc.in, got, k)
				}
			}
			for _, s := range tc.secret {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q) = %q still has %q", tc.in, got, s)
				}
			}
			if again := Redact(got); again != got {
				t.Errorf("Redact is not idempotent: %q -> %q", got, again)
			}
		})
	}
}

func TestReason(t *testing.T) {
	u, _ := url.Parse("https://reg.example/v2/a/manifests/1")
	resp := func(code int) error {
		return fmt.Errorf("copy: %w", &errcode.ErrorResponse{Method: http.MethodGet, URL: u, StatusCode: code})
	}
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: u.String(), Err: err} }
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"401", resp(401), ReasonUnauthorized},
		{"403", resp(403), ReasonForbidden},
		{"404", resp(404), ReasonNotFound},
		{"429", resp(429), ReasonTooManyRequests},
		{"500", resp(500), ReasonServerError},
		{"503", resp(503), ReasonServerError},
		{"408", resp(408), ReasonTimeout},
		{"400", resp(400), ""},
		{"errdef not found", fmt.Errorf("busybox:1: %w", errdef.ErrNotFound), ReasonNotFound},
		{"no basic credential", fmt.Errorf("x: %w", auth.ErrBasicCredentialNotFound), ReasonUnauthorized},
		{"canceled", urlErr(context.Canceled), ReasonCanceled},
		{"deadline", urlErr(context.DeadlineExceeded), ReasonTimeout},
		{"unknown authority", urlErr(x509.UnknownAuthorityError{}), ReasonTLS},
		{"hostname", urlErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}), ReasonTLS},
		{"http to https", urlErr(errors.New("http: server gave HTTP response to HTTPS client")), ReasonTLS},
		{"refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), ReasonNetwork},
		{"reset", urlErr(syscall.ECONNRESET), ReasonNetwork},
		{"dns", urlErr(&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}), ReasonNetwork},
		{"eof", urlErr(io.EOF), ReasonNetwork},
		{"unexpected eof", fmt.Errorf("read blob: %w", io.ErrUnexpectedEOF), ReasonNetwork},
		{"net timeout", urlErr(&net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}), ReasonTimeout},
		{"other", errors.New("boom"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
