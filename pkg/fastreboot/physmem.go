package fastreboot

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// physRange is the physical address range [Start, End).
type physRange struct{ Start, End uint64 }

func (r physRange) empty() bool { return r.End <= r.Start }

func (r physRange) intersect(o physRange) physRange {
	return physRange{max(r.Start, o.Start), min(r.End, o.End)}
}

// intersectAll returns the parts of rs inside any range of with.
func intersectAll(rs, with []physRange) []physRange {
	var out []physRange
	for _, r := range rs {
		for _, w := range with {
			if i := r.intersect(w); !i.empty() {
				out = append(out, i)
			}
		}
	}
	return out
}

// iomemEntry is one line of /proc/iomem.
type iomemEntry struct {
	// Start and End are inclusive, as the kernel prints them.
	Start, End uint64
	Name       string
	// Depth is the nesting level: 0 for top-level resources.
	Depth int
}

// parseIomem reads /proc/iomem: lines "START-END : NAME", indented by two
// spaces per nesting level (kernel/resource.c r_show). Lines that do not
// have this shape are skipped. Read without CAP_SYS_ADMIN, every address is
// 0: such entries are empty and harmless.
func parseIomem(r io.Reader) ([]iomemEntry, error) {
	var out []iomemEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		body := strings.TrimLeft(line, " ")
		indent := len(line) - len(body)
		rng, name, ok := strings.Cut(body, " : ")
		if !ok {
			continue
		}
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end < start {
			continue
		}
		out = append(out, iomemEntry{Start: start, End: end, Name: strings.TrimSpace(name), Depth: indent / 2})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// cmdlineMemory is what memmap= and mem= words of a kernel command line do
// to the memory map (arch/x86/kernel/e820.c parse_memmap_one, parse_memopt).
type cmdlineMemory struct {
	// Exact: memmap=exactmap; RAM then holds the memmap=SIZE@START ranges.
	Exact bool
	RAM   []physRange
	// Kept are memmap=SIZE$START (reserved), SIZE!START (persistent
	// memory), SIZE#START (ACPI data) and SIZE%START... (type changes):
	// memory no kexec segment may overwrite.
	Kept []physRange
	// Limit is mem=SIZE or memmap=SIZE: the kernel uses no RAM above it.
	// Zero means none.
	Limit uint64
}

// parseCmdlineMemory parses the memmap= and mem= words of a command line
// (up to "--", after which words go to init). A malformed value is an
// error: the region it would keep could not be kept away from.
func parseCmdlineMemory(cmdline string) (cmdlineMemory, error) {
	var cm cmdlineMemory
	for _, w := range strings.Fields(cmdline) {
		if w == "--" {
			break
		}
		w = strings.Trim(w, `"`)
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		switch key {
		case "mem":
			if val == "nopentium" {
				continue
			}
			n, rest, err := memparse(val)
			if err != nil || rest != "" {
				return cm, fmt.Errorf("command line word %q: not a size", w)
			}
			cm.limitTo(n)
		case "memmap":
			for _, one := range strings.Split(val, ",") {
				if err := cm.addMemmap(one); err != nil {
					return cm, fmt.Errorf("command line word %q: %w", w, err)
				}
			}
		}
	}
	return cm, nil
}

func (cm *cmdlineMemory) limitTo(n uint64) {
	if cm.Limit == 0 || n < cm.Limit {
		cm.Limit = n
	}
}

func (cm *cmdlineMemory) addMemmap(s string) error {
	if s == "exactmap" {
		cm.Exact = true
		return nil
	}
	size, rest, err := memparse(s)
	if err != nil {
		return err
	}
	if rest == "" {
		cm.limitTo(size)
		return nil
	}
	op := rest[0]
	start, rest, err := memparse(rest[1:])
	if err != nil {
		return err
	}
	r := physRange{start, start + size}
	if r.End < r.Start {
		return fmt.Errorf("range %s wraps around the address space", s)
	}
	switch {
	case op == '@' && rest == "":
		cm.RAM = append(cm.RAM, r)
	case (op == '$' || op == '!' || op == '#') && rest == "":
		cm.Kept = append(cm.Kept, r)
	case op == '%':
		// SIZE%START-OLDTYPE+NEWTYPE: a type change; keep the range.
		cm.Kept = append(cm.Kept, r)
	default:
		return fmt.Errorf("%q: unknown memmap= form", s)
	}
	return nil
}

// memparse is crashhandler.ParseMemSize with an error naming s.
func memparse(s string) (uint64, string, error) {
	n, rest, ok := crashhandler.ParseMemSize(s)
	if !ok {
		return 0, s, fmt.Errorf("%q: not a size (or out of range)", s)
	}
	return n, rest, nil
}

// placement is where kexec segments may go: RAM of the firmware memory map,
// minus what must be kept.
type placement struct {
	RAM   []physRange
	Avoid []AvoidedRange
}

// iomemCrashKernel names the crash kernel reservation in /proc/iomem
// (kernel/crash_core.c, crashk_res).
const iomemCrashKernel = "Crash kernel"

// newPlacement computes where segments may go. RAM is the firmware map's
// System RAM, cut to the memmap=exactmap RAM and below the mem= limit of
// each command line given (the running kernel's and the next one's).
// Avoided are the crash kernel reservations and every top-level /proc/iomem
// resource over firmware RAM that is not System RAM (regions the running
// kernel keeps: memmap=SIZE$START shows as "Reserved", SIZE!START as
// "Persistent Memory (legacy)"), and the memmap= kept regions of the command
// lines.
func newPlacement(fw crashhandler.MemoryMap, iomem []iomemEntry, cmdlines map[string]cmdlineMemory) placement {
	var p placement
	for _, r := range fw {
		if r.Type == crashhandler.TypeRAM && r.End >= r.Start {
			p.RAM = append(p.RAM, physRange{r.Start, r.End + 1})
		}
	}
	overlapsRAM := func(r physRange) bool {
		for _, ram := range p.RAM {
			if !ram.intersect(r).empty() {
				return true
			}
		}
		return false
	}
	avoid := func(r physRange, why string) {
		if !r.empty() && overlapsRAM(r) {
			p.Avoid = append(p.Avoid, AvoidedRange{Start: r.Start, End: r.End, Why: why})
		}
	}
	for _, e := range iomem {
		r := physRange{e.Start, e.End + 1}
		switch {
		case e.Name == iomemCrashKernel:
			avoid(r, "crash kernel reservation (/proc/iomem)")
		case e.Depth == 0 && e.Name != crashhandler.TypeRAM:
			avoid(r, fmt.Sprintf("kept by the running kernel: %s (/proc/iomem)", e.Name))
		}
	}
	names := make([]string, 0, len(cmdlines))
	for n := range cmdlines {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		cm := cmdlines[n]
		if cm.Exact {
			p.RAM = intersectAll(p.RAM, cm.RAM)
		}
		if cm.Limit != 0 {
			p.RAM = intersectAll(p.RAM, []physRange{{0, cm.Limit}})
		}
		for _, k := range cm.Kept {
			avoid(k, "kept by memmap= on the "+n+" command line")
		}
	}
	return p
}

// e820 entry types (arch/x86/include/asm/e820/types.h).
const (
	e820RAM          = 1
	e820Reserved     = 2
	e820ACPI         = 3
	e820NVS          = 4
	e820Unusable     = 5
	e820PMEM         = 7
	e820PRAM         = 12
	e820SoftReserved = 0xefffffff
)

type e820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// e820Type maps a firmware memory map type (as /sys/firmware/memmap names
// it) to its e820 number; unknown types become reserved.
func e820Type(s string) uint32 {
	switch s {
	case crashhandler.TypeRAM:
		return e820RAM
	case crashhandler.TypeACPI:
		return e820ACPI
	case crashhandler.TypeNVS:
		return e820NVS
	case crashhandler.TypeUnusable:
		return e820Unusable
	case crashhandler.TypePMEM:
		return e820PMEM
	case crashhandler.TypePRAM:
		return e820PRAM
	case crashhandler.TypeSoftReserved:
		return e820SoftReserved
	}
	return e820Reserved
}

// e820MaxZeroPage is how many entries the zero page's e820 table holds
// (E820_MAX_ENTRIES_ZEROPAGE); more would need SETUP_E820_EXT setup data.
const e820MaxZeroPage = 128

// e820Table turns the firmware map into the e820 table of the next kernel,
// sorted, adjacent ranges of one type merged.
func e820Table(fw crashhandler.MemoryMap) ([]e820Entry, error) {
	rs := slices.Clone(fw)
	slices.SortFunc(rs, func(a, b crashhandler.MemoryRange) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	var out []e820Entry
	for _, r := range rs {
		if r.End < r.Start {
			return nil, fmt.Errorf("memory map range %#x-%#x ends before it starts", r.Start, r.End)
		}
		e := e820Entry{Addr: r.Start, Size: r.End - r.Start + 1, Type: e820Type(r.Type)}
		if n := len(out); n > 0 && out[n-1].Type == e.Type && out[n-1].Addr+out[n-1].Size == e.Addr {
			out[n-1].Size += e.Size
			continue
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty memory map")
	}
	if len(out) > e820MaxZeroPage {
		return nil, fmt.Errorf("memory map has %d ranges, the boot parameters hold %d (SETUP_E820_EXT is not implemented)", len(out), e820MaxZeroPage)
	}
	return out, nil
}
