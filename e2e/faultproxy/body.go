package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// errCut is returned by the body wrappers when a fault or the link cuts a
// transfer.
var errCut = errors.New("faultproxy: transfer cut by injected fault")

// countingBody wraps a request body: it counts and throttles upload bytes,
// passes them over the link, cuts the body at cutAt and flips the byte at
// corruptAt (when >= 0).
//
// A cut must leave the registry with exactly the bytes before the cut
// point, as a real link failure does. net/http's transport copies the
// body of a request whose reader is not an in-memory one straight to the
// connection (it flushes the headers first, and its bufio.Writer hands the
// copy to the connection's ReadFrom), so every Read's bytes are written
// before the next Read, and the bytes of a Read that returns an error are
// written too; only bytes still in that bufio.Writer would be lost when
// the transport aborts the connection on the error. So Read hands over the
// bytes before the point and fails only the next Read, after confirming
// with the upstream connection's byte counter (meterConn) that they were
// written: the guarantee does not rest on the transport's internals alone,
// and a transport that kept them buffered would be logged.
type countingBody struct {
	rc        io.ReadCloser
	ctx       context.Context // the client request's
	p         *Proxy
	st        *reqState
	cutAt     int64
	corruptAt int64
	read      int64 // bytes handed to the transport
	upload    bool  // blob content: counted, throttled and sent over the link
	mark      int64 // the upstream connection's byte count once the last bytes are written
	cutBy     string
}

// Read implements io.Reader.
func (b *countingBody) Read(buf []byte) (int, error) {
	if b.cutBy != "" {
		return 0, b.cut()
	}
	if b.cutAt >= 0 {
		left := b.cutAt - b.read
		if left <= 0 {
			b.cutBy = b.st.fault.name()
			return 0, b.cut()
		}
		if int64(len(buf)) > left {
			buf = buf[:left]
		}
	}
	rate := int64(0)
	if b.upload {
		rate = b.p.uploadRate()
		if c := chunkFor(rate); c > 0 && len(buf) > c {
			buf = buf[:c]
		}
	}
	n, err := b.rc.Read(buf)
	if b.upload && n > 0 {
		if pass, cut := b.p.link.take(n); cut {
			// The rest was read from the client but never crosses.
			n, err = pass, nil
			b.cutBy = linkCut
		}
	}
	if b.corruptAt >= b.read && b.corruptAt < b.read+int64(n) {
		buf[b.corruptAt-b.read] ^= 0xff
		b.p.count(func(s *Stats) { s.Faults[FaultCorrupt.String()]++ })
	}
	b.read += int64(n)
	if n > 0 && b.upload {
		if rate > 0 {
			// Pay for the bytes before passing them on, so the upstream
			// sees them (and the counter grows) at the configured rate.
			if werr := b.p.up.wait(b.ctx, rate, n); werr != nil {
				return 0, werr
			}
		}
		b.p.count(func(s *Stats) { s.BytesUploaded += int64(n) })
	}
	if n > 0 {
		if c := b.st.conn.Load(); c != nil {
			b.mark = c.wrote.Load() + int64(n)
		}
	}
	if n == 0 && b.cutBy != "" {
		return 0, b.cut()
	}
	return n, err
}

// cut counts the cut once the bytes before it are written upstream, and
// returns errCut, which makes the transport break the upstream connection.
func (b *countingBody) cut() error {
	if b.st.cut.Swap(true) {
		return errCut
	}
	sent := b.st.sent(b.ctx, b.mark)
	b.p.count(func(s *Stats) {
		s.Faults[b.cutBy]++
		if sent {
			s.BytesSentBeforeCut += b.read
		}
	})
	if !sent {
		b.p.logger.Printf("%s: the %d body bytes before the cut were not confirmed written upstream", b.cutBy, b.read)
	}
	return errCut
}

// Close implements io.Closer.
func (b *countingBody) Close() error { return b.rc.Close() }

// countingWriter wraps the client response writer: it counts, throttles
// and passes blob GET bytes over the link, cuts the body at cutAt and flips
// the byte at corruptAt (when >= 0).
type countingWriter struct {
	http.ResponseWriter
	ctx       context.Context // the client request's
	p         *Proxy
	st        *reqState
	blob      bool // a blob GET's body: counted, throttled and sent over the link
	cutAt     int64
	corruptAt int64
	written   int64
}

// Write implements io.Writer, in pieces of chunkFor(DownloadBytesPerSec)
// when downloads are throttled.
func (w *countingWriter) Write(b []byte) (int, error) {
	if !w.blob {
		return w.write(b)
	}
	total := 0
	for len(b) > 0 {
		c := b
		rate := w.p.downloadRate()
		if n := chunkFor(rate); n > 0 && len(c) > n {
			c = c[:n]
		}
		if rate > 0 {
			if err := w.p.down.wait(w.ctx, rate, len(c)); err != nil {
				return total, err
			}
		}
		n, err := w.write(c)
		total += n
		if err != nil {
			return total, err
		}
		b = b[len(c):]
	}
	return total, nil
}

func (w *countingWriter) write(b []byte) (int, error) {
	if i := w.corruptAt - w.written; w.corruptAt >= 0 && i >= 0 && i < int64(len(b)) {
		// b belongs to the ReverseProxy's copy loop: flip in a copy.
		c := append([]byte(nil), b...)
		c[i] ^= 0xff
		b = c
		w.p.count(func(s *Stats) { s.Faults[FaultCorrupt.String()]++ })
	}
	cutBy := ""
	if w.cutAt >= 0 && w.written+int64(len(b)) > w.cutAt {
		b = b[:w.cutAt-w.written]
		cutBy = w.st.fault.name()
	}
	if w.blob {
		if pass, cut := w.p.link.take(len(b)); cut {
			b = b[:pass]
			cutBy = linkCut
		}
	}
	// Count before writing: once written, the client may have the bytes
	// and look at the stats before this goroutine runs again.
	if w.blob {
		w.p.count(func(s *Stats) { s.BytesDownloaded += int64(len(b)) })
	}
	if cutBy != "" {
		w.st.cut.Store(true)
		w.p.count(func(s *Stats) { s.Faults[cutBy]++ })
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	if w.blob && n < len(b) {
		w.p.count(func(s *Stats) { s.BytesDownloaded -= int64(len(b) - n) })
	}
	if err != nil {
		return n, err
	}
	if cutBy != "" {
		// Push the bytes before the cut to the client, then fail the copy.
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		return n, errCut
	}
	return n, nil
}

// Unwrap lets http.ResponseController (used by ReverseProxy to flush)
// reach the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
