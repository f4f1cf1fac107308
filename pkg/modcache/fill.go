package modcache

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
)

// Copy buffers. chunkSize is large enough that per-chunk costs (syscall,
// goroutine hand-off) vanish next to the memory bandwidth; pipelineBufs
// buffers are in flight when fill hashes in a second goroutine, which it
// does for modules of at least pipelineMin bytes. Measured on a 2-vCPU VM:
// more or smaller buffers lost to cache misses and hand-offs.
const (
	chunkSize    = 1 << 20
	pipelineBufs = 2
	pipelineMin  = 4 * chunkSize
)

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, chunkSize)
	return &b
}}

// fill copies r into w while hashing the bytes, in one pass: each chunk is
// read once into a buffer, then hashed and written to w from that buffer.
// For large modules on more than one CPU, a second goroutine hashes chunk k
// while this one writes it to the memfd and reads chunk k+1 (the kernel's
// page allocation in write(2) costs about as much as SHA-256 itself, so the
// overlap brings Sync close to plain hashing speed when a core is free).
// Otherwise it hashes inline, like io.Copy through an io.MultiWriter.
//
// fill expects exactly size bytes: it never asks r for more than size+1
// bytes, so an over-long source is detected without being read to its end.
// It returns the number of bytes read from r, also on error, and the
// SHA-256 of the bytes when there was no error.
//
// newHash makes the hash (sha256.New; tests count what is hashed).
func fill(ctx context.Context, w io.Writer, r io.Reader, size int64, newHash func() hash.Hash) (read int64, sum [sha256.Size]byte, err error) {
	return fillWith(ctx, w, r, size, size >= pipelineMin && runtime.GOMAXPROCS(0) > 1, newHash)
}

// fillWith is fill with the choice of hashing in a second goroutine made.
func fillWith(ctx context.Context, w io.Writer, r io.Reader, size int64, async bool, newHash func() hash.Hash) (read int64, sum [sha256.Size]byte, err error) {
	p := startHasher(async, newHash)
	defer p.stop()
	for empty := 0; ; {
		if err := ctx.Err(); err != nil {
			return read, sum, err
		}
		bp := <-p.free
		buf := *bp
		want := int64(len(buf))
		if rest := size - read + 1; rest < want {
			want = rest
		}
		n, rerr := r.Read(buf[:want])
		if n > 0 {
			empty = 0
			read += int64(n)
			if read > size {
				p.free <- bp
				return read, sum, fmt.Errorf("%w: source has more than the %d bytes of the manifest", ErrSizeMismatch, size)
			}
			*bp = buf[:n]
			p.submit(bp) // hashed while written, when pipelined
			if _, err := w.Write(buf[:n]); err != nil {
				return read, sum, fmt.Errorf("write: %w", err)
			}
		} else {
			p.free <- bp
			if rerr == nil {
				if empty++; empty > 100 {
					return read, sum, fmt.Errorf("read: %w", io.ErrNoProgress)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return read, sum, fmt.Errorf("read: %w", rerr)
		}
	}
	if read != size {
		return read, sum, fmt.Errorf("%w: source ended after %d of the %d bytes of the manifest", ErrSizeMismatch, read, size)
	}
	p.stop()
	p.h.Sum(sum[:0])
	return read, sum, nil
}

// hasher hashes the buffers submitted to it, in order, and hands each back
// on free: in a goroutine of its own when async, else inline in submit.
type hasher struct {
	h          hash.Hash
	async      bool
	work, free chan *[]byte
	done       chan struct{}
	nbuf       int
	stopped    bool
}

func startHasher(async bool, newHash func() hash.Hash) *hasher {
	p := &hasher{h: newHash(), async: async, nbuf: 1}
	if async {
		p.nbuf = pipelineBufs
		p.work = make(chan *[]byte, p.nbuf)
		p.done = make(chan struct{})
		go func() {
			defer close(p.done)
			for bp := range p.work {
				p.hash(bp)
			}
		}()
	}
	p.free = make(chan *[]byte, p.nbuf)
	for range p.nbuf {
		p.free <- bufPool.Get().(*[]byte)
	}
	return p
}

func (p *hasher) hash(bp *[]byte) {
	p.h.Write(*bp)
	*bp = (*bp)[:cap(*bp)]
	p.free <- bp
}

// submit hands a filled buffer over; the caller may still read it until it
// takes the next buffer from free.
func (p *hasher) submit(bp *[]byte) {
	if p.async {
		p.work <- bp
		return
	}
	p.hash(bp)
}

// stop waits until every submitted buffer was hashed and returns the
// buffers to the pool. It may be called more than once.
func (p *hasher) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	if p.async {
		close(p.work)
		<-p.done
	}
	for range p.nbuf {
		bufPool.Put(<-p.free)
	}
}
