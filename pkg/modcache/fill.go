package modcache

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"sync"
)

// Copy buffers: fill keeps fillBufs chunks in flight, so that hashing one
// chunk overlaps with reading and writing the next ones.
const (
	chunkSize = 1 << 20
	fillBufs  = 4
)

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, chunkSize)
	return &b
}}

// fill copies r into w while hashing the bytes: each chunk is read once into
// a buffer, then written to w by this goroutine while a second goroutine
// hashes it, so the copy costs little more than the hash alone (on one core
// it is the same work as io.Copy through a MultiWriter).
//
// fill expects exactly size bytes: it never asks r for more than size+1
// bytes, so an over-long source is detected without being read to its end.
// It returns the number of bytes read from r, also on error, and the
// SHA-256 of the bytes when there was no error.
func fill(ctx context.Context, w io.Writer, r io.Reader, size int64) (read int64, sum [sha256.Size]byte, err error) {
	p := startHasher()
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
			p.work <- bp // hashed while written
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

// hasher is a goroutine hashing the buffers sent on work, in order, and
// handing each back on free.
type hasher struct {
	h          hash.Hash
	work, free chan *[]byte
	done       chan struct{}
	stopped    bool
}

func startHasher() *hasher {
	p := &hasher{
		h:    sha256.New(),
		work: make(chan *[]byte, fillBufs),
		free: make(chan *[]byte, fillBufs),
		done: make(chan struct{}),
	}
	for range fillBufs {
		p.free <- bufPool.Get().(*[]byte)
	}
	go func() {
		defer close(p.done)
		for bp := range p.work {
			p.h.Write(*bp)
			*bp = (*bp)[:cap(*bp)]
			p.free <- bp
		}
	}()
	return p
}

// stop waits until every buffer sent was hashed and returns the buffers to
// the pool. It may be called more than once.
func (p *hasher) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	close(p.work)
	<-p.done
	for range fillBufs {
		bufPool.Put(<-p.free)
	}
}
