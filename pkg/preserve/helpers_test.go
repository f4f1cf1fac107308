package preserve

import (
	"errors"
	"fmt"
)

// memDevice is a keptmem.Device over a byte slice.
type memDevice struct {
	b     []byte
	syncs int
	// failWrite, when set, makes writes fail after copying that many bytes.
	failWrite int
}

func newMem(size int) *memDevice { return &memDevice{b: make([]byte, size), failWrite: -1} }

func (d *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(d.b)) {
		return 0, fmt.Errorf("read at %d: out of range", off)
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func (d *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return 0, fmt.Errorf("write at %d: out of range", off)
	}
	if d.failWrite >= 0 {
		n := copy(d.b[off:], p[:min(d.failWrite, len(p))])
		return n, errors.New("torn write")
	}
	return copy(d.b[off:], p), nil
}

func (d *memDevice) Sync() error  { d.syncs++; return nil }
func (d *memDevice) Size() int64  { return int64(len(d.b)) }
func (d *memDevice) Name() string { return "mem" }
