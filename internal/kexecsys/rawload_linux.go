package kexecsys

import (
	"fmt"
	"runtime"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageSize is the page size kexec_load requires of every segment's
// physical start and size (kernel/kexec_core.c, sanity_check_segment_list:
// -EADDRNOTAVAIL otherwise). It is 4 KiB on every architecture this
// package loads segments for.
const pageSize = 4096

// kexecSegment is struct kexec_segment (include/uapi/linux/kexec.h).
type kexecSegment struct {
	buf   unsafe.Pointer
	bufsz uintptr
	mem   uintptr
	memsz uintptr
}

// pageAligned reports whether every segment starts on a page, so that
// the segments can go to kexec_load as they are, their sizes rounded up to
// whole pages (the kernel zeroes what the buffer does not fill). u-root's
// kexec.Load copies every buffer to prepend the bytes of an unaligned start
// (kexec.AlignPhysStart), which doubles the memory an image takes while it
// loads: in a crash kernel's reservation that copy is what runs it out of
// memory.
func pageAligned(segments []Segment) bool {
	for _, s := range segments {
		if s.Phys%pageSize != 0 || uint64(len(s.Buf)) > s.Size {
			return false
		}
	}
	return true
}

// checkDisjoint returns the segments' physical ranges, rounded up to whole
// pages, sorted by address, and an error naming the first two that overlap
// or an entry outside every segment.
func checkDisjoint(entry uint64, segments []Segment) ([]Segment, error) {
	segs := make([]Segment, len(segments))
	for i, s := range segments {
		s.Size = (s.Size + pageSize - 1) &^ (pageSize - 1)
		segs[i] = s
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Phys < segs[j].Phys })
	inside := false
	for i, s := range segs {
		if i > 0 && segs[i-1].Phys+segs[i-1].Size > s.Phys {
			p := segs[i-1]
			return nil, fmt.Errorf("%s: segments %#x-%#x and %#x-%#x overlap (rounded to pages)", OpLoad, p.Phys, p.Phys+p.Size, s.Phys, s.Phys+s.Size)
		}
		if entry >= s.Phys && entry < s.Phys+s.Size {
			inside = true
		}
	}
	if !inside {
		return nil, fmt.Errorf("%s: entry %#x is inside no segment", OpLoad, entry)
	}
	return segs, nil
}

// rawLoad calls kexec_load(2) with the buffers as they are: no copy in
// this process. The segments must be page-aligned (pageAligned) and
// disjoint (checkDisjoint).
func rawLoad(entry uint64, segs []Segment, flags uint64) unix.Errno {
	ks := make([]kexecSegment, len(segs))
	for i, s := range segs {
		ks[i] = kexecSegment{bufsz: uintptr(len(s.Buf)), mem: uintptr(s.Phys), memsz: uintptr(s.Size)}
		if len(s.Buf) > 0 {
			ks[i].buf = unsafe.Pointer(&s.Buf[0])
		}
	}
	var p unsafe.Pointer
	if len(ks) > 0 {
		p = unsafe.Pointer(&ks[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, uintptr(entry), uintptr(len(ks)), uintptr(p), uintptr(flags), 0, 0)
	runtime.KeepAlive(segs)
	runtime.KeepAlive(ks)
	return errno
}
