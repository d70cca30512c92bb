package faultproxy

import (
	"context"
	"crypto/tls"
	"math"
	"math/rand/v2"
	"net"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// linkCut is the name of a link failure in Stats.Faults.
const linkCut = "link-cut"

// linkStream keeps the link's RNG apart from the per-request one: both are
// seeded with Faults.Seed, and a request's fate must not depend on how many
// link failures were drawn before it.
const linkStream = 0x6c696e6b2d637574

// link is the per-byte failure model of Faults.CutEvery: one link carrying
// all blob bytes, in both directions. It carries left more bytes, then fails
// on the next one; the distance to the following failure is drawn afresh,
// exponentially distributed with mean every.
type link struct {
	mu    sync.Mutex
	every int64
	rng   *rand.Rand
	left  int64
}

// reset restarts the model for seed and every (<= 0: a link that never
// fails).
func (l *link) reset(seed uint64, every int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.every = every
	l.rng = rand.New(rand.NewPCG(seed, linkStream))
	l.left = 0
	if every > 0 {
		l.left = l.draw()
	}
}

// draw returns the bytes until the next failure (at least 1).
func (l *link) draw() int64 {
	return max(1, int64(math.Ceil(l.rng.ExpFloat64()*float64(l.every))))
}

// take passes n bytes over the link. pass is how many of them cross; cut
// reports that the link failed after pass bytes (pass < n), and the rest
// of this transfer never crosses.
func (l *link) take(n int) (pass int, cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.every <= 0 || int64(n) <= l.left {
		if l.every > 0 {
			l.left -= int64(n)
		}
		return n, false
	}
	pass = int(l.left)
	l.left = l.draw()
	return pass, true
}

// next returns the bytes the link carries before it fails next, and false
// when it never fails.
func (l *link) next() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.left, l.every > 0
}

// NextCut returns how many bytes of blob traffic (upload bodies and blob
// GET bodies, in the order they cross) the link carries before it fails
// next, and false when Faults.CutEvery is off. A transfer that would carry
// byte NextCut()+1 is cut right before it.
func (p *Proxy) NextCut() (bytes int64, ok bool) { return p.link.next() }

// meterConn is an upstream connection that counts the bytes written to it
// (the plaintext, for TLS), so that a cut upload can confirm that the bytes
// before the cut left the proxy before it breaks the connection.
type meterConn struct {
	net.Conn
	wrote atomic.Int64
}

// Write implements net.Conn.
func (c *meterConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wrote.Add(int64(n))
	return n, err
}

// dialer dials upstream connections for the transport.
type dialer struct {
	net *net.Dialer
	tls *tls.Config
}

// dial is the transport's DialContext.
func (d dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &meterConn{Conn: c}, nil
}

// dialTLS is the transport's DialTLSContext. The proxy runs the handshake
// itself so that meterConn sits above TLS and counts request bytes, not
// records.
func (d dialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d.net, Config: d.tls}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &meterConn{Conn: c}, nil
}

const (
	// tlsHandshakeTimeout bounds an upstream TLS dial and handshake.
	tlsHandshakeTimeout = 10 * time.Second
	// sendWait bounds how long a cut upload waits for its last bytes to
	// be written upstream. With net/http's transport they already are
	// (see countingBody.Read), so the wait only guards against a change.
	sendWait = 2 * time.Second
)

// withConnTrace returns ctx with a trace that records the upstream
// connection of st's request.
func withConnTrace(ctx context.Context, st *reqState) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) {
			if c, ok := ci.Conn.(*meterConn); ok {
				st.conn.Store(c)
			}
		},
	})
}

// sent waits until st's upstream connection has written mark bytes in
// all, and reports whether it did before sendWait passed or ctx ended.
func (st *reqState) sent(ctx context.Context, mark int64) bool {
	c := st.conn.Load()
	if c == nil {
		return false
	}
	deadline := time.Now().Add(sendWait)
	for c.wrote.Load() < mark {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
