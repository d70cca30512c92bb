package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// FaultType says what the proxy does to a request.
type FaultType int

const (
	// FaultNone forwards the request untouched.
	FaultNone FaultType = iota
	// FaultStatus answers with Fault.Status without forwarding.
	FaultStatus
	// FaultCut forwards the request and cuts the transfer mid-body, then
	// closes the client connection abruptly. When the request has a body
	// (an upload PATCH/PUT), the proxy reads and forwards Fault.CutAfter
	// bytes of it, then breaks both connections: the registry keeps what
	// it received, as after a real network cut. Otherwise the response
	// body is cut after Fault.CutAfter bytes, and the client sees an
	// unexpected EOF; a response without a body is not delivered at all
	// (the registry did the work, the client never hears of it).
	FaultCut
	// FaultDrop closes the client connection without forwarding or
	// answering.
	FaultDrop
	// FaultRespond answers with Fault.Status, Fault.Header and Fault.Body
	// without forwarding (see Respond).
	FaultRespond
	// FaultRewrite forwards the request and replaces the response body
	// with Fault.RewriteBody of it (see Rewrite).
	FaultRewrite
	// FaultCorrupt forwards the request and flips one byte of the
	// transferred body at Fault.Offset (see CorruptBody).
	FaultCorrupt
)

// String returns a short name of the fault type.
func (t FaultType) String() string {
	switch t {
	case FaultNone:
		return "none"
	case FaultStatus:
		return "status"
	case FaultCut:
		return "cut"
	case FaultDrop:
		return "drop"
	case FaultRespond:
		return "respond"
	case FaultRewrite:
		return "rewrite"
	case FaultCorrupt:
		return "corrupt"
	}
	return "FaultType(" + strconv.Itoa(int(t)) + ")"
}

// Fault describes one injected fault.
type Fault struct {
	// Type is what to do.
	Type FaultType
	// Status is the answer of a FaultStatus; 0 means 503.
	Status int
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds) with
	// a FaultStatus answer.
	RetryAfter int
	// CutAfter is how many body bytes pass before a FaultCut; <= 0 means
	// half the body by its Content-Length (32 KiB when the length is
	// unknown). It is clamped below the body length.
	CutAfter int64
	// Header holds the headers of a FaultRespond answer. A Content-Length
	// here wins over len(Body), so an answer can announce a size it does
	// not send (a HEAD of a huge manifest, or a GET cut short).
	Header http.Header
	// Body is the body of a FaultRespond answer (not sent to a HEAD).
	Body []byte
	// RewriteBody maps the upstream response body of a FaultRewrite to
	// the body sent to the client.
	RewriteBody func(body []byte) []byte
	// Offset is the body offset of the byte a FaultCorrupt flips; < 0
	// means the middle of the body by its Content-Length. It is clamped to
	// the last byte.
	Offset int64
}

// Status503 returns a fault answering 503 Service Unavailable.
func Status503() Fault { return Fault{Type: FaultStatus, Status: http.StatusServiceUnavailable} }

// Status429 returns a fault answering 429 Too Many Requests with
// Retry-After: retryAfter (seconds).
func Status429(retryAfter int) Fault {
	return Fault{Type: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// Cut returns a fault cutting the transfer after n body bytes (n <= 0:
// half the body).
func Cut(n int64) Fault { return Fault{Type: FaultCut, CutAfter: n} }

// Drop returns a fault closing the connection without an answer.
func Drop() Fault { return Fault{Type: FaultDrop} }

// Respond returns a fault answering status (0 means 200) with header and
// body instead of forwarding the request. Content-Length defaults to
// len(body); a HEAD gets the headers only. header and body are not copied:
// do not change them while the fault is in use.
func Respond(status int, header http.Header, body []byte) Fault {
	if status == 0 {
		status = http.StatusOK
	}
	return Fault{Type: FaultRespond, Status: status, Header: header, Body: body}
}

// Rewrite returns a fault that forwards the request and sends the client
// f(body) instead of the upstream response body, with Content-Length
// updated and every other header (Docker-Content-Digest included) kept as
// the registry sent it. The whole body is buffered (at most 64 MiB; a
// larger body fails the request with 502), so it is meant for manifests
// and other small answers. Answers to HEAD requests pass untouched.
func Rewrite(f func(body []byte) []byte) Fault {
	return Fault{Type: FaultRewrite, RewriteBody: f}
}

// CorruptBody returns a fault that forwards the request and flips (XOR
// 0xff) the byte at offset of the transferred body while it streams: the
// request body of an upload, otherwise the response body (e.g. a blob GET).
// The length and headers stay as they are, so only a digest check can tell.
// offset < 0 means the middle of the body.
func CorruptBody(offset int64) Fault {
	return Fault{Type: FaultCorrupt, Offset: offset}
}

// name is the key of the fault in Stats.Faults.
func (f Fault) name() string {
	switch f.Type {
	case FaultStatus:
		return "status-" + strconv.Itoa(f.status())
	case FaultRespond:
		return "respond-" + strconv.Itoa(f.respondStatus())
	default:
		return f.Type.String()
	}
}

func (f Fault) status() int {
	if f.Status == 0 {
		return http.StatusServiceUnavailable
	}
	return f.Status
}

func (f Fault) respondStatus() int {
	if f.Status == 0 {
		return http.StatusOK
	}
	return f.Status
}

// Faults configures the random faults and the link the proxy simulates.
// The zero value injects none and passes traffic at full speed.
//
// Rate503, Rate429 and RateCut pick requests; a Hook that returns ok
// replaces them for its request. CutEvery, the two rate limits and
// Latency describe the link itself and apply to every request, hooked
// or not.
type Faults struct {
	// Seed seeds the RNG that picks the faulted requests, and the
	// separate RNG of the link failures (CutEvery). Each request draws
	// the same number of values whatever happens to it, so the same seed
	// and the same request order fault the same requests; the link fails
	// at the same byte offsets for the same seed and the same order of
	// blob bytes.
	Seed uint64
	// Rate503 is the fraction (0..1) of requests answered 503.
	Rate503 float64
	// Rate429 is the fraction (0..1) of requests answered 429 with
	// Retry-After.
	Rate429 float64
	// RetryAfter is the Retry-After of the 429 answers, in seconds;
	// <= 0 means the default, 1.
	RetryAfter int
	// RateCut is the fraction (0..1) of blob transfers (blob GETs, and
	// upload POST/PATCH/PUT with a body) cut mid-body.
	RateCut float64
	// CutAfter is Fault.CutAfter for random cuts; <= 0 means half the body.
	CutAfter int64
	// Kinds restricts the 503 and 429 faults to these request kinds;
	// empty means every kind.
	Kinds []Kind
	// CutEvery, when > 0, makes the link fail on average once every
	// CutEvery bytes of blob traffic: upload request bodies and blob GET
	// response bodies, all requests in flight together, as one link.
	// The distance to the next failure is drawn from an exponential
	// distribution with this mean (Proxy.NextCut tells it). When the
	// failure point falls inside an upload body, the registry receives
	// the bytes before it, then both connections drop and the client
	// gets no answer; inside a blob GET, the client receives the bytes
	// before it and then the connection is aborted. Only the transfer in
	// which the point falls is cut. Counted as "link-cut" in
	// Stats.Faults. <= 0 means a link that never fails.
	CutEvery int64
	// UploadBytesPerSec limits the rate at which the proxy reads the
	// bodies of upload POST/PATCH/PUT requests, all uploads in flight
	// together (one token bucket, like one slow link); <= 0 means
	// unlimited. Bodies still stream, and Stats.BytesUploaded grows at
	// this rate. A change by SetFaults applies to uploads in flight.
	UploadBytesPerSec int64
	// DownloadBytesPerSec limits the rate at which the proxy writes blob
	// GET response bodies to clients, all downloads in flight together.
	// It is a bucket of its own, separate from UploadBytesPerSec: the
	// link is full duplex. <= 0 means unlimited; a change by SetFaults
	// applies to downloads in flight.
	//
	// Neither limit applies to manifests and other API answers: they
	// are a few KiB next to blobs of MiB or GiB, so on a slow link their
	// cost is the round trip (see Latency), not the bandwidth; and
	// keeping them out keeps the limits, the byte counters and CutEvery
	// on the same bytes, which a test can predict from blob sizes.
	DownloadBytesPerSec int64
	// Latency delays every request by this long before the proxy acts on
	// it (forwards it, or answers it with an injected fault): one added
	// round trip per request. The wait ends early, without an answer,
	// when the client gives up. A waiting request counts as in flight
	// (Stats.MaxInFlight), as it does for the client. <= 0 means none.
	Latency time.Duration
}

// Info describes a request to a Hook.
type Info struct {
	// Kind is the request's kind.
	Kind Kind
	// Seq is the 1-based index of the request among the requests of its
	// kind since the proxy started or was Reset.
	Seq int64
	// Total is the 1-based index of the request among all requests since
	// the proxy started or was Reset.
	Total int64
}

// Hook picks the fault of one request. When ok is false the random faults
// apply; when ok is true the returned fault (FaultNone included) is used.
// It is called concurrently and must not block for long. Chain combines
// hooks.
type Hook func(r *http.Request, info Info) (f Fault, ok bool)

// randomFault applies the configured random faults to the draws u1, u2.
func randomFault(f Faults, r *http.Request, kind Kind, u1, u2 float64) Fault {
	eligible := len(f.Kinds) == 0
	for _, k := range f.Kinds {
		if k == kind {
			eligible = true
			break
		}
	}
	if eligible {
		if u1 < f.Rate503 {
			return Status503()
		}
		if u1 < f.Rate503+f.Rate429 {
			ra := f.RetryAfter
			if ra <= 0 {
				ra = 1
			}
			return Status429(ra)
		}
	}
	if (kind == KindBlobGet || (kind.isUpload() && hasBody(r))) && u2 < f.RateCut {
		return Cut(f.CutAfter)
	}
	return Fault{}
}

// hasBody reports whether r carries a request body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// cutPoint returns where to cut a body of length n (-1: unknown).
func cutPoint(after, n int64) int64 {
	if after <= 0 {
		if n < 0 {
			return 32 << 10
		}
		after = n / 2
	}
	if n >= 0 && after >= n {
		after = max(n-1, 0)
	}
	return after
}

// corruptPoint returns the offset of the byte to flip in a body of length n
// (-1: unknown).
func corruptPoint(off, n int64) int64 {
	if off < 0 {
		off = max(n/2, 0)
	}
	if n > 0 && off >= n {
		off = n - 1
	}
	return off
}

// writeCanned answers a FaultRespond.
func writeCanned(w http.ResponseWriter, r *http.Request, f Fault) {
	h := w.Header()
	for k, v := range f.Header {
		h[k] = append([]string(nil), v...)
	}
	if h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	}
	w.WriteHeader(f.respondStatus())
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.Body)
	}
}

// writeStatus answers an injected status with a distribution-style error.
func writeStatus(w http.ResponseWriter, f Fault) {
	code := "UNAVAILABLE"
	if f.status() == http.StatusTooManyRequests {
		code = "TOOMANYREQUESTS"
	}
	body := fmt.Sprintf(`{"errors":[{"code":%q,"message":"injected by faultproxy"}]}`+"\n", code)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	w.WriteHeader(f.status())
	_, _ = io.WriteString(w, body)
}

// maxRewrite bounds the body a FaultRewrite buffers.
const maxRewrite = 64 << 20

// rewriteBody applies a FaultRewrite to resp.
func (p *Proxy) rewriteBody(resp *http.Response, f func([]byte) []byte) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRewrite+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) > maxRewrite {
		return fmt.Errorf("faultproxy: response body over %d bytes cannot be rewritten", maxRewrite)
	}
	body = f(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.TransferEncoding = nil
	p.count(func(s *Stats) { s.Faults[FaultRewrite.String()]++ })
	return nil
}
