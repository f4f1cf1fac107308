package keptmem

import (
	"fmt"
	"io"
	"os"
)

// Device is the storage behind a kept region: the bytes Write lays out and
// Open reads, addressed from the region's start. The legacy persistent
// memory carrier is the block device /dev/pmemN (FileDevice); a carrier
// that preserves memory another way (Linux 6.16+ Kexec HandOver and the
// Live Update Orchestrator's memfd preservation) can sit behind the same
// interface.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync returns once what was written is in the region (fsync(2) on
	// the block device), so that it is there for the next kernel.
	Sync() error
	// Size is the region's size in bytes.
	Size() int64
}

// FileDevice is a Device over an open file: the block device /dev/pmemN
// on a machine, a regular file in tests. Writes go to the page cache;
// with another process holding the device open, an unsynced write was
// lost across a kexec (docs/kernel-facts.md, Kept memory region), which is
// why Write syncs after each step.
type FileDevice struct {
	f    *os.File
	size int64
}

// OpenFileDevice opens path for reading and writing as a Device. Its size
// is the file's end (a block device's stat size is 0, so it seeks).
func OpenFileDevice(path string) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("keptmem: opening the kept region's device: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keptmem: the size of %s: %w", path, err)
	}
	return &FileDevice{f: f, size: size}, nil
}

// ReadAt reads from the device.
func (d *FileDevice) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt writes to the device; it refuses to write past its size.
func (d *FileDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return 0, fmt.Errorf("keptmem: %s: writing %d bytes at %d: past the device's %d bytes", d.f.Name(), len(p), off, d.size)
	}
	return d.f.WriteAt(p, off)
}

// Sync is fsync(2).
func (d *FileDevice) Sync() error { return d.f.Sync() }

// Size is the device's size in bytes.
func (d *FileDevice) Size() int64 { return d.size }

// Name is the path the device was opened with.
func (d *FileDevice) Name() string { return d.f.Name() }

// Close closes the file; sections of an Index over it stop working.
func (d *FileDevice) Close() error { return d.f.Close() }

// deviceName names dev in messages: its Name if it has one.
func deviceName(dev Device) string {
	if n, ok := dev.(interface{ Name() string }); ok {
		return n.Name()
	}
	return "the kept region's device"
}
