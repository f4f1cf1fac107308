//go:build !linux

package fastreboot

import (
	"fmt"
	"os"
)

// SegmentsLoad returns ErrNotSupported: kexec_load is Linux-only.
func (KexecLoader) SegmentsLoad(entry uint64, segments []Segment) error {
	return fmt.Errorf("kexec_load: %w on this system", ErrNotSupported)
}

// loadSegments returns ErrNotSupported: the segments are planned with
// u-root's Linux-only kexec package.
func (mc *Machine) loadSegments(prep *segmentsPrep, initrd *os.File, cmdline string, dryRun bool) error {
	return fmt.Errorf("segments load method: kexec_load %w on this system", ErrNotSupported)
}

// SegmentsLoadOnCrash returns ErrNotSupported: kexec_load is Linux-only.
func (KexecLoader) SegmentsLoadOnCrash(entry uint64, segments []Segment) error {
	return fmt.Errorf("kexec_load(KEXEC_ON_CRASH): %w on this system", ErrNotSupported)
}

// withMapped returns ErrNotSupported: the segments are mapped with
// Linux-only mmap flags.
func (c *crashSegments) withMapped(fn func(elfData, initrdData []byte) error) error {
	return fmt.Errorf("segments load method: kexec_load %w on this system", ErrNotSupported)
}
