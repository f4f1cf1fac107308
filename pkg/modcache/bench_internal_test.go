package modcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"
)

// benchBytes is 64 MiB of non-zero bytes, like the exported benchmarks use.
func benchBytes() []byte {
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// BenchmarkFillDiscard is Sync's copy-while-hashing pipeline without the
// memfd: it isolates the user-space cost from the kernel's page allocation.
func BenchmarkFillDiscard(b *testing.B) {
	data := benchBytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := fill(context.Background(), io.Discard, bytes.NewReader(data), int64(len(data)), sha256.New); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemfdWrite is the kernel side alone: 64 MiB written in chunkSize
// pieces into a fresh memfd, then sealed.
func BenchmarkMemfdWrite(b *testing.B) {
	data := benchBytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f, err := newBacking("fastreboot:bench")
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += chunkSize {
			if _, err := f.Write(data[off : off+chunkSize]); err != nil {
				b.Fatal(err)
			}
		}
		if err := seal(f); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		f.Close()
		b.StartTimer()
	}
}
