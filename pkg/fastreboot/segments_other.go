//go:build !(linux && amd64)

package fastreboot

import (
	"fmt"
	"os"
	"runtime"
)

// errSegmentsNotSupported is what the segments load method returns off
// linux/amd64: it loads an x86-64 kernel with an x86 zero page and an
// x86-64 purgatory through kexec_load(2).
var errSegmentsNotSupported = fmt.Errorf("%s load method (kexec_load): %w on %s/%s, only on linux/amd64",
	LoadSegments, ErrNotSupported, runtime.GOOS, runtime.GOARCH)

// segmentsSupported returns ErrNotSupported (wrapped): Stage refuses the
// segments load method before it reads or decompresses anything.
func segmentsSupported() error { return errSegmentsNotSupported }

// SegmentsLoad returns ErrNotSupported (wrapped): the segments load method
// is linux/amd64 only.
func (KexecLoader) SegmentsLoad(entry uint64, segments []Segment) error {
	return errSegmentsNotSupported
}

// loadSegments returns ErrNotSupported (wrapped): the segments are planned
// with u-root's Linux-only kexec package and an x86-64 purgatory.
func (mc *Machine) loadSegments(prep *segmentsPrep, initrd *os.File, cmdline string, dryRun bool) error {
	return errSegmentsNotSupported
}

// SegmentsLoadOnCrash returns ErrNotSupported (wrapped): the segments load
// method is linux/amd64 only.
func (KexecLoader) SegmentsLoadOnCrash(entry uint64, segments []Segment) error {
	return errSegmentsNotSupported
}

// withMapped returns ErrNotSupported (wrapped): the crash segments are
// mapped with Linux-only mmap flags and loaded as x86-64 segments.
func (c *crashSegments) withMapped(fn func(elfData, initrdData []byte) error) error {
	return errSegmentsNotSupported
}
