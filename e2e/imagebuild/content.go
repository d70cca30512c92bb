package imagebuild

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/opencontainers/go-digest"
)

// blockSize is the unit of generation: block b of a layer is the ChaCha8
// stream keyed by (seed, b), so any offset can be read without generating
// what precedes it.
const blockSize = 64 << 10

// Layer is deterministic pseudo-random blob content: the same Seed and Size
// always give the same bytes, hence the same digest. It is generated while
// read, never held in memory, so it can be gigabytes long. The bytes are not
// a real tarball; registries and copy tools do not look inside layers.
type Layer struct {
	// Seed selects the content.
	Seed uint64
	// Size is the length in bytes.
	Size int64
}

// Reader returns a reader of the layer's content from the start.
func (l Layer) Reader() io.Reader { return l.ReaderFrom(0) }

// ReaderFrom returns a reader of the layer's content from offset off (as
// a registry client resuming an upload would read the source).
func (l Layer) ReaderFrom(off int64) io.Reader {
	return &layerReader{l: l, off: min(max(off, 0), l.Size), block: -1}
}

// ReaderAt returns a stateless io.ReaderAt over the layer's content, e.g.
// for io.NewSectionReader.
func (l Layer) ReaderAt() io.ReaderAt { return layerReaderAt(l) }

// digestCache memoizes Layer digests: hashing a big layer takes seconds,
// and the result is a pure function of (Seed, Size), so a process-wide cache
// is safe.
var digestCache sync.Map // Layer -> digest.Digest

// Digest returns the sha256 digest of the layer's content, reading it once
// per process (the result is cached).
func (l Layer) Digest() digest.Digest {
	if d, ok := digestCache.Load(l); ok {
		return d.(digest.Digest)
	}
	h := sha256.New()
	// layerReader.WriteTo avoids an extra copy.
	_, _ = l.Reader().(io.WriterTo).WriteTo(h)
	d := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	digestCache.Store(l, d)
	return d
}

// fillBlock writes block b of the stream seeded by seed into buf (which
// must be at most blockSize long; a shorter buf gets the block's prefix).
func fillBlock(seed uint64, b int64, buf []byte) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(b))
	copy(key[16:], "edgemirror-e2e..")
	c := rand.NewChaCha8(key)
	_, _ = c.Read(buf) // never fails
}

type layerReader struct {
	l     Layer
	off   int64
	block int64 // block held in buf, -1 none
	buf   []byte
}

func (r *layerReader) Read(p []byte) (int, error) {
	if r.off >= r.l.Size {
		return 0, io.EOF
	}
	b := r.off / blockSize
	if r.block != b {
		if r.buf == nil {
			r.buf = make([]byte, blockSize)
		}
		fillBlock(r.l.Seed, b, r.buf)
		r.block = b
	}
	start := r.off - b*blockSize
	end := min(int64(blockSize), r.l.Size-b*blockSize)
	n := copy(p, r.buf[start:end])
	r.off += int64(n)
	return n, nil
}

// WriteTo implements io.WriterTo, generating each block straight into
// one buffer.
func (r *layerReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	buf := make([]byte, blockSize)
	for r.off < r.l.Size {
		b := r.off / blockSize
		start := r.off - b*blockSize
		end := min(int64(blockSize), r.l.Size-b*blockSize)
		fillBlock(r.l.Seed, b, buf[:end])
		m, err := w.Write(buf[start:end])
		total += int64(m)
		r.off += int64(m)
		if err != nil {
			return total, err
		}
		if int64(m) < end-start {
			return total, io.ErrShortWrite
		}
	}
	r.block = -1
	return total, nil
}

type layerReaderAt Layer

func (r layerReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("imagebuild: negative offset")
	}
	var block []byte
	n := 0
	for n < len(p) && off < r.Size {
		b := off / blockSize
		start := off - b*blockSize
		end := min(int64(blockSize), r.Size-b*blockSize)
		if start == 0 && int64(len(p)-n) >= end {
			fillBlock(r.Seed, b, p[n:n+int(end)])
			n += int(end)
			off += end
			continue
		}
		if block == nil {
			block = make([]byte, blockSize)
		}
		fillBlock(r.Seed, b, block[:end])
		c := copy(p[n:], block[start:end])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// splitmix64 mixes x into a well-spread 64-bit value.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// DeriveSeed returns a seed derived from seed and i, distinct for distinct
// (seed, i) in practice: a way to give an image's layers distinct content.
func DeriveSeed(seed uint64, i int) uint64 {
	return splitmix64(splitmix64(seed) ^ uint64(i))
}

// Layers returns one layer per size, with seeds DeriveSeed(seed, i).
func Layers(seed uint64, sizes ...int64) []Layer {
	ls := make([]Layer, len(sizes))
	for i, s := range sizes {
		ls[i] = Layer{Seed: DeriveSeed(seed, i), Size: s}
	}
	return ls
}
