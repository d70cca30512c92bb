package transport

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder replaces the client's sleep and collects the computed waits.
type recorder struct {
	mu     sync.Mutex
	waits  []time.Duration
	events []RetryEvent
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recorder) onRetry(e RetryEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// newTestClient returns a client whose waits are recorded instead of slept.
func newTestClient(t *testing.T, opts Options) (*http.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.OnRetry = rec.onRetry
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rt := c.Transport.(*retryTransport)
	rt.sleep = rec.sleep
	rt.now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
	return c, rec
}

// step is one scripted answer of a test server.
type step struct {
	status     int
	retryAfter string
}

// scriptedServer answers with the steps in order, then 200 OK, and records
// the request bodies it saw.
func scriptedServer(t *testing.T, steps []step) (*httptest.Server, *atomic.Int32, *[]string) {
	t.Helper()
	var n atomic.Int32
	var mu sync.Mutex
	var bodies []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if i < len(steps) {
			if steps[i].retryAfter != "" {
				w.Header().Set("Retry-After", steps[i].retryAfter)
			}
			http.Error(w, "scripted failure", steps[i].status)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(ts.Close)
	return ts, &n, &bodies
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name       string
		steps      []step
		opts       Options
		method     string
		body       func() io.Reader // nil: no body
		noGetBody  bool
		wantStatus int
		wantCalls  int32
		wantWaits  []time.Duration // exact waits; nil means check count only
		wantNWaits int
	}{
		{name: "503 then 200", steps: []step{{status: 503}}, wantStatus: 200, wantCalls: 2, wantNWaits: 1},
		{name: "502 504 500 then 200", steps: []step{{status: 502}, {status: 504}, {status: 500}}, wantStatus: 200, wantCalls: 4, wantNWaits: 3},
		{name: "408 then 200", steps: []step{{status: 408}}, wantStatus: 200, wantCalls: 2, wantNWaits: 1},
		{
			name: "429 Retry-After seconds", steps: []step{{status: 429, retryAfter: "2"}},
			wantStatus: 200, wantCalls: 2, wantWaits: []time.Duration{2 * time.Second},
		},
		{
			name: "429 Retry-After HTTP date", steps: []step{{status: 429, retryAfter: "Thu, 02 Jan 2025 03:04:35 GMT"}},
			wantStatus: 200, wantCalls: 2, wantWaits: []time.Duration{30 * time.Second},
		},
		{
			name: "503 Retry-After above the cap", steps: []step{{status: 503, retryAfter: "3600"}},
			opts:       Options{MaxRetryAfter: 45 * time.Second},
			wantStatus: 200, wantCalls: 2, wantWaits: []time.Duration{45 * time.Second},
		},
		{
			name: "Retry-After beyond the default cap", steps: []step{{status: 429, retryAfter: "99999999999999"}},
			wantStatus: 200, wantCalls: 2, wantWaits: []time.Duration{DefaultMaxRetryAfter},
		},
		{name: "404 not retried", steps: []step{{status: 404}}, wantStatus: 404, wantCalls: 1},
		{name: "401 not retried", steps: []step{{status: 401}}, wantStatus: 401, wantCalls: 1},
		{name: "403 not retried", steps: []step{{status: 403}}, wantStatus: 403, wantCalls: 1},
		{name: "400 not retried", steps: []step{{status: 400}}, wantStatus: 400, wantCalls: 1},
		{
			name: "gives up after MaxRetries", steps: []step{{status: 503}, {status: 503}, {status: 503}, {status: 503}},
			opts: Options{MaxRetries: 2}, wantStatus: 503, wantCalls: 3, wantNWaits: 2,
		},
		{
			name: "default MaxRetries is 6", steps: []step{{status: 500}, {status: 500}, {status: 500}, {status: 500}, {status: 500}, {status: 500}, {status: 500}, {status: 500}},
			wantStatus: 500, wantCalls: 7, wantNWaits: 6,
		},
		{
			name: "POST without GetBody not retried", steps: []step{{status: 503}},
			method: http.MethodPost, body: func() io.Reader { return strings.NewReader("payload") }, noGetBody: true,
			wantStatus: 503, wantCalls: 1,
		},
		{
			name: "PUT with GetBody retried", steps: []step{{status: 503}, {status: 502}},
			method: http.MethodPut, body: func() io.Reader { return bytes.NewReader([]byte("payload")) },
			wantStatus: 200, wantCalls: 3, wantNWaits: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, calls, bodies := scriptedServer(t, tc.steps)
			c, rec := newTestClient(t, tc.opts)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			req, err := http.NewRequest(method, ts.URL+"/v2/", body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.noGetBody {
				req.Body = io.NopCloser(body)
				req.GetBody = nil
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("server saw %d requests, want %d", got, tc.wantCalls)
			}
			if tc.wantWaits != nil {
				if !equalDurations(rec.waits, tc.wantWaits) {
					t.Errorf("waits = %v, want %v", rec.waits, tc.wantWaits)
				}
			} else if len(rec.waits) != tc.wantNWaits {
				t.Errorf("waits = %v, want %d of them", rec.waits, tc.wantNWaits)
			}
			if len(rec.events) != len(rec.waits) {
				t.Errorf("OnRetry called %d times for %d waits", len(rec.events), len(rec.waits))
			}
			for i, e := range rec.events {
				if e.Attempt != i+1 || e.Method != method || e.Wait != rec.waits[i] || e.Reason == "" {
					t.Errorf("event %d = %+v", i, e)
				}
			}
			if tc.body != nil {
				for i, b := range *bodies {
					if b != "payload" {
						t.Errorf("attempt %d sent body %q, want the full payload", i+1, b)
					}
				}
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	for attempt, step := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		step *= time.Millisecond
		for range 50 {
			b := Retry{Stalls: 100, MinWait: 100 * time.Millisecond, MaxWait: time.Second}.Start()
			b.stalls = attempt + 1
			if d := b.backoff(); d < step/2 || d > step {
				t.Fatalf("backoff after %d stalls = %v, want within [%v, %v]", attempt+1, d, step/2, step)
			}
		}
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close() // connection reset without an answer
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer ts.Close()
	c, rec := newTestClient(t, Options{})
	resp, err := c.Get(ts.URL)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || n.Load() != 2 || len(rec.events) != 1 {
		t.Fatalf("status %d after %d requests, events %+v", resp.StatusCode, n.Load(), rec.events)
	}
	if !strings.HasPrefix(rec.events[0].Reason, "network: ") || rec.events[0].StatusCode != 0 {
		t.Errorf("event = %+v", rec.events[0])
	}
}

func TestContextCancelDuringWait(t *testing.T) {
	ts, calls, _ := scriptedServer(t, []step{{status: 503, retryAfter: "3600"}})
	waiting := make(chan struct{})
	c, err := New(Options{
		MaxRetryAfter: time.Hour,
		OnRetry:       func(RetryEvent) { close(waiting) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-waiting
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if Reason(err) != ReasonCanceled {
			t.Errorf("Reason = %q", Reason(err))
		}
	case <-time.After(30 * time.Second): // a hang guard, not a duration assertion
		t.Fatal("request still waiting after cancel")
	}
	if calls.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", calls.Load())
	}
}

func TestUserAgentAndDebugLog(t *testing.T) {
	var gotUA, gotAuth string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUA, gotAuth = r.UserAgent(), r.Header.Get("Authorization")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer ts.Close()
	var log bytes.Buffer
	c, _ := newTestClient(t, Options{UserAgent: "edgemirror/1.2.3", Debug: &log})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v2/r/blobs/uploads/abc?_state=SECRETSTATE&digest=sha256:1234", nil)
	req.Header.Set("User-Agent", "oras-go")
	req.Header.Set("Authorization", "Bearer SECRETTOKEN")
	req.Header.Set("Cookie", "session=SECRETCOOKIE")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if gotUA != "edgemirror/1.2.3" {
		t.Errorf("User-Agent = %q", gotUA)
	}
	if gotAuth != "Bearer SECRETTOKEN" {
		t.Errorf("Authorization not forwarded: %q", gotAuth)
	}
	if req.Header.Get("User-Agent") != "oras-go" {
		t.Errorf("caller's request was modified")
	}
	line := log.String()
	for _, want := range []string{"GET ", "/v2/r/blobs/uploads/abc?_state=REDACTED&digest=sha256:1234", "202 Accepted"} {
		if !strings.Contains(line, want) {
			t.Errorf("debug line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "SECRET") || strings.Count(line, "\n") != 1 {
		t.Errorf("debug line leaks or is not one line: %q", line)
	}
}

// writeCert writes the test server's certificate as a PEM file.
func writeCert(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestTLS(t *testing.T) {
	var calls atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the failing handshake is expected
	ts.StartTLS()
	defer ts.Close()
	caFile := writeCert(t, ts)
	caPEM, _ := os.ReadFile(caFile)

	tests := []struct {
		name    string
		opts    Options
		wantErr string // Reason of the request error; "" means success
	}{
		{name: "CA file trusted", opts: Options{CAFiles: []string{caFile}}},
		{name: "inline CA trusted", opts: Options{CAPEMs: [][]byte{caPEM}}},
		{name: "insecure", opts: Options{Insecure: true}},
		{name: "unknown CA is a tls error, not retried", opts: Options{}, wantErr: ReasonTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			c, rec := newTestClient(t, tc.opts)
			resp, err := c.Get(ts.URL)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				_ = resp.Body.Close()
				return
			}
			if err == nil {
				_ = resp.Body.Close()
				t.Fatal("Get succeeded, want an error")
			}
			if got := Reason(err); got != tc.wantErr {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tc.wantErr)
			}
			if len(rec.waits) != 0 {
				t.Errorf("TLS error was retried %d times", len(rec.waits))
			}
		})
	}
}

func TestCAErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "not-a-cert.pem")
	if err := os.WriteFile(bad, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-ca.pem")
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{name: "missing file", opts: Options{CAFiles: []string{missing}}, want: []string{missing, "no such file"}},
		{name: "not PEM", opts: Options{CAFiles: []string{bad}}, want: []string{bad, "no PEM certificate"}},
		{name: "inline not PEM", opts: Options{CAPEMs: [][]byte{[]byte("x")}}, want: []string{"inline CA certificate 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	if _, err := New(Options{CAFiles: []string{missing}}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA file error does not wrap os.ErrNotExist: %v", err)
	}
}

// TestInsecureHosts: only the hosts named skip certificate verification.
func TestInsecureHosts(t *testing.T) {
	ok := func(w http.ResponseWriter, _ *http.Request) {}
	trusted := httptest.NewTLSServer(http.HandlerFunc(ok))
	defer trusted.Close()
	other := httptest.NewTLSServer(http.HandlerFunc(ok))
	defer other.Close()
	c, err := New(Options{InsecureHosts: []string{strings.TrimPrefix(trusted.URL, "https://")}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(trusted.URL)
	if err != nil {
		t.Fatalf("insecure host: %v", err)
	}
	resp.Body.Close()
	if _, err := c.Get(other.URL); err == nil || Reason(err) != ReasonTLS {
		t.Fatalf("other host: error %v (reason %q), want a TLS failure", err, Reason(err))
	}
}
