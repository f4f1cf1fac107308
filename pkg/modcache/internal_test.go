package modcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// insertEntry puts content into the cache under a digest and size that
// need not match it: the only way to exercise Verify's mismatch path, since
// sealed memfds cannot be changed.
func insertEntry(t *testing.T, c *Cache, name string, content []byte, digest string, size int64) *Entry {
	t.Helper()
	f, err := newBacking("fastreboot:" + name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := seal(f); err != nil {
		t.Fatal(err)
	}
	e := &Entry{digest: digest, size: size, origin: OriginAdded, f: f, names: []string{name}}
	c.mu.Lock()
	c.entries[digest] = e
	c.mu.Unlock()
	return e
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestVerifyMismatch(t *testing.T) {
	tests := []struct {
		name    string
		digest  string
		size    int64
		wantErr error
	}{
		{name: "digest", digest: hexSum([]byte("world")), size: 5, wantErr: ErrDigestMismatch},
		{name: "size", digest: hexSum([]byte("hello!")), size: 6, wantErr: ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Options{})
			defer c.Close()
			good := insertEntry(t, c, "good", []byte("fine"), hexSum([]byte("fine")), 4)
			insertEntry(t, c, "rotten", []byte("hello"), tt.digest, tt.size)

			rep, err := c.Verify(context.Background())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.digest) || !strings.Contains(msg, "rotten") || strings.Contains(msg, "good") {
				t.Errorf("Verify error %q should name the rotten entry only", msg)
			}
			if rep.Modules != 2 || len(rep.Bad) != 1 || rep.Bad[0] != tt.digest {
				t.Errorf("report = %+v, want 2 modules, bad = [%s]", rep, tt.digest)
			}
			if _, err := c.Get(tt.digest); !errors.Is(err, ErrNotCached) {
				t.Errorf("bad entry still cached: Get = %v", err)
			}
			if e, err := c.Get(good.digest); err != nil || e != good {
				t.Errorf("good entry lost: %v", err)
			}
		})
	}
}

// stuckReader returns no bytes and no error, forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestFill(t *testing.T) {
	data := make([]byte, pipelineMin+3*chunkSize+17)
	for i := range data {
		data[i] = byte(i * 31)
	}
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		r        func() io.Reader
		size     int64
		wantRead int64
		wantErr  error
	}{
		{name: "exact", r: func() io.Reader { return bytes.NewReader(data) }, size: int64(len(data)), wantRead: int64(len(data))},
		{name: "one byte reads", r: func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:5000])) }, size: 5000, wantRead: 5000},
		{name: "data with EOF", r: func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }, size: int64(len(data)), wantRead: int64(len(data))},
		{name: "empty", r: func() io.Reader { return bytes.NewReader(nil) }, size: 0},
		{name: "short", r: func() io.Reader { return bytes.NewReader(data[:100]) }, size: 101, wantRead: 100, wantErr: ErrSizeMismatch},
		{name: "long", r: func() io.Reader { return bytes.NewReader(data) }, size: chunkSize, wantRead: chunkSize + 1, wantErr: ErrSizeMismatch},
		{name: "read error", r: func() io.Reader { return io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(errBoom)) }, size: 20, wantRead: 10, wantErr: errBoom},
		{name: "no progress", r: func() io.Reader { return stuckReader{} }, size: 1, wantErr: io.ErrNoProgress},
	}
	for _, async := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/async=%v", tt.name, async), func(t *testing.T) {
				var w bytes.Buffer
				read, sum, err := fillWith(context.Background(), &w, tt.r(), tt.size, async, sha256.New)
				if read != tt.wantRead {
					t.Errorf("read %d bytes, want %d", read, tt.wantRead)
				}
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("err = %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := sha256.Sum256(data[:tt.size]); sum != want {
					t.Errorf("sum = %x, want %x", sum, want)
				}
				if !bytes.Equal(w.Bytes(), data[:tt.size]) {
					t.Errorf("wrote %d bytes that differ from the input", w.Len())
				}
			})
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// cancelReader cancels its context after the first read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c cancelReader) Read(p []byte) (int, error) {
	defer c.cancel()
	return c.r.Read(p)
}

// TestFillAborts checks that fill stops cleanly (no goroutine left waiting)
// on a failing write and on cancellation in the middle of a module.
func TestFillAborts(t *testing.T) {
	data := make([]byte, pipelineMin+chunkSize)
	errFull := errors.New("no space")
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			size := int64(len(data))
			if _, _, err := fillWith(context.Background(), failWriter{errFull}, bytes.NewReader(data), size, async, sha256.New); !errors.Is(err, errFull) {
				t.Errorf("fill to a failing writer = %v, want %v", err, errFull)
			}
			ctx, cancel := context.WithCancel(context.Background())
			read, _, err := fillWith(ctx, io.Discard, cancelReader{bytes.NewReader(data), cancel}, size, async, sha256.New)
			if !errors.Is(err, context.Canceled) || read != chunkSize {
				t.Errorf("fill canceled after one chunk = %d bytes, %v; want %d, context.Canceled", read, err, chunkSize)
			}
		})
	}
}
