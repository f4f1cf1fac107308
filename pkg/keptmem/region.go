package keptmem

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Align is the alignment of a region's start and size: 2 MiB, an x86 huge
// page, so that the region and the RAM around it fall on whole large pages.
const Align = 2 << 20

// fourGiB is where Plan prefers the region to start: above the 32-bit
// space, where the firmware, the PCI hole, the low memory DMA needs and
// kexec_file_load's segments (placed top-down in the lowest large RAM
// range, see crashhandler.PlaceRamoops) are not.
const fourGiB = 4 << 30

// Region is a range of physical memory that every kernel fastreboot boots
// keeps out of its RAM (memmap=SIZE!START: e820 type 12, legacy persistent
// memory), holding the module cache across kexec.
type Region struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
}

// Range is the region's addresses.
func (r Region) Range() memmap.Range { return memmap.Range{Start: r.Start, End: r.Start + r.Size} }

func (r Region) String() string {
	return fmt.Sprintf("%s at %#x", memmap.FormatSize(r.Size), r.Start)
}

// CmdlineWords returns the kernel command line word that keeps the region:
// memmap=SIZE!START (START in hex, SIZE as memmap.FormatSize writes it,
// like the ramoops region's memmap=SIZE$START). The kernel marks the range
// legacy persistent memory (arch/x86/kernel/e820.c parse_memmap_one); with
// X86_PMEM_LEGACY (nd_e820), libnvdimm and nd_pmem it becomes the block
// device /dev/pmemN that FindDevice finds. Every generation's command line
// must carry it (InheritCmdline), after any memmap=exactmap.
func (r Region) CmdlineWords() []string {
	return []string{fmt.Sprintf("memmap=%s!%#x", memmap.FormatSize(r.Size), r.Start)}
}

// Plan chooses where a new region of size bytes goes: inside one System RAM
// range of the recorded firmware map fw (adjacent RAM entries count as one
// range), outside every range of avoid (the crashkernel= reservation, the
// ramoops region, other kept regions), start and size aligned to Align. It
// takes the highest such start: above 4 GiB when any range there holds the
// region, else the highest below. Given the same map it always answers the
// same region.
//
// size must be a non-zero multiple of Align. ErrNoRoom names the largest
// aligned room there is.
//
// The firmware map still lists a kept region as System RAM (only the
// memmap= word on each command line keeps it; docs/kernel-facts.md, Kept
// memory region): Plan is for a machine that keeps none yet, and the
// running one's region is found with ParseCmdline on /proc/cmdline.
// Nothing is known yet about regions that are not 16 MiB aligned (the nd
// region's align attribute read 0x1000000 with one at 1 GiB).
func Plan(fw memmap.Map, size uint64, avoid []memmap.Range) (Region, error) {
	switch {
	case size == 0:
		return Region{}, errors.New("keptmem: plan: the region size is 0")
	case size%Align != 0:
		return Region{}, fmt.Errorf("keptmem: plan: the region size %#x is not a multiple of 2 MiB (round it up to %s)",
			size, memmap.FormatSize((size+Align-1)/Align*Align))
	}
	free := memmap.Subtract(memmap.Merge(fw.RAM()), avoid...)
	var best Region
	var found bool
	var largest memmap.Range
	for _, r := range free {
		lo := (r.Start + Align - 1) &^ (Align - 1)
		hi := r.End &^ (Align - 1)
		if hi <= lo {
			continue
		}
		if hi-lo > largest.Size() {
			largest = memmap.Range{Start: lo, End: hi}
		}
		if hi-lo < size {
			continue
		}
		if start := hi - size; !found || start > best.Start {
			best, found = Region{Start: start, Size: size}, true
		}
	}
	if !found {
		if largest.Empty() {
			return Region{}, fmt.Errorf("%w: %s: the memory map has no 2 MiB-aligned System RAM outside the avoided ranges", ErrNoRoom, memmap.FormatSize(size))
		}
		return Region{}, fmt.Errorf("%w: %s: the largest 2 MiB-aligned System RAM outside the avoided ranges is %s at %s",
			ErrNoRoom, memmap.FormatSize(size), memmap.FormatSize(largest.Size()), largest)
	}
	return best, nil
}

// ParseCmdline reads the kept region a command line asks for: its
// memmap=SIZE!START word (words after "--" go to init and do not count).
// Other memmap= words (exactmap, @, #, $) are ignored, and a word may hold
// several comma-separated regions as the kernel allows. ok is false when
// the line has no such region. Two regions, a malformed one, or one whose
// start or size is not aligned to Align, are errors naming the word.
func ParseCmdline(cmdline string) (r Region, ok bool, err error) {
	words, _ := bootimage.SplitCmdline(cmdline)
	var word string
	for _, w := range words {
		rs, found, err := parseWord(w)
		if err != nil {
			return Region{}, false, err
		}
		if !found {
			continue
		}
		if ok || len(rs) > 1 {
			return Region{}, false, fmt.Errorf("keptmem: the command line keeps two memmap=SIZE!START regions (%s and %s); fastreboot keeps one", firstNonEmpty(word, w), w)
		}
		r, ok, word = rs[0], true, w
	}
	return r, ok, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// parseWord returns the SIZE!START regions of one memmap= word.
func parseWord(w string) ([]Region, bool, error) {
	v, ok := strings.CutPrefix(w, "memmap=")
	if !ok {
		return nil, false, nil
	}
	var out []Region
	for _, part := range strings.Split(v, ",") {
		size, rest, ok := memmap.ParseSize(part)
		if !ok || rest == "" || rest[0] != '!' {
			continue // exactmap, @, #, $ or something the kernel reads its own way
		}
		start, rest, ok := memmap.ParseSize(rest[1:])
		switch {
		case !ok || rest != "":
			return nil, false, fmt.Errorf("keptmem: %s: not memmap=SIZE!START", w)
		case size == 0:
			return nil, false, fmt.Errorf("keptmem: %s: the region's size is 0", w)
		case start%Align != 0 || size%Align != 0:
			return nil, false, fmt.Errorf("keptmem: %s: start and size must be multiples of 2 MiB", w)
		case start+size < start:
			return nil, false, fmt.Errorf("keptmem: %s: the region wraps around the address space", w)
		}
		out = append(out, Region{Start: start, Size: size})
	}
	return out, len(out) > 0, nil
}

// InheritCmdline returns next, the command line of an image about to be
// staged, with the running system's kept region (its memmap=SIZE!START
// word, rewritten by CmdlineWords, and its fastreboot.preserve= word:
// Layout.Words) appended before any "--" when next keeps
// none of its own: without it the generation next boots would use the
// region as RAM and the cache kept there would be lost. A region of next
// always wins (next is returned unchanged), as it is when running keeps
// none. An unreadable region on either line is an error, and next is
// returned unchanged with it.
//
// running is the running kernel's command line (/proc/cmdline). The word
// goes after next's own words, so after any memmap=exactmap (which would
// erase it). Like crashhandler.InheritCrashkernel, it is idempotent.
func InheritCmdline(next, running string) (string, error) {
	if _, ok, err := ParseCmdline(next); ok || err != nil {
		return next, err
	}
	l, ok, err := ParseLayout(running)
	if err != nil {
		return next, fmt.Errorf("the running command line: %w", err)
	}
	if !ok {
		return next, nil
	}
	words, initArgs := bootimage.SplitCmdline(next)
	return bootimage.JoinCmdline(append(slices.Clip(words), l.Words()...), initArgs), nil
}
