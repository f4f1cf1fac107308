package fastreboot

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// cmdlineMemory is what memmap= and mem= words of a kernel command line do
// to the memory map (arch/x86/kernel/e820.c parse_memmap_one, parse_memopt).
type cmdlineMemory struct {
	// Exact: memmap=exactmap; RAM then holds the memmap=SIZE@START ranges.
	Exact bool
	RAM   []memmap.Range
	// Kept are memmap=SIZE$START (reserved), SIZE!START (persistent
	// memory), SIZE#START (ACPI data) and SIZE%START... (type changes):
	// memory no kexec segment may overwrite.
	Kept []memmap.Range
	// Limit is mem=SIZE or memmap=SIZE: the kernel uses no RAM above it.
	// Zero means none.
	Limit uint64
}

// parseCmdlineMemory parses the memmap= and mem= words of a command line
// (up to "--", after which words go to init). A malformed value is an
// error: the region it would keep could not be kept away from.
func parseCmdlineMemory(cmdline string) (cmdlineMemory, error) {
	var cm cmdlineMemory
	params, _ := bootimage.SplitCmdline(cmdline)
	for _, w := range params {
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
			n, rest, err := parseSize(val)
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
	size, rest, err := parseSize(s)
	if err != nil {
		return err
	}
	if rest == "" {
		cm.limitTo(size)
		return nil
	}
	op := rest[0]
	start, rest, err := parseSize(rest[1:])
	if err != nil {
		return err
	}
	r := memmap.Range{Start: start, End: start + size}
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

// parseSize is memmap.ParseSize with an error naming s.
func parseSize(s string) (uint64, string, error) {
	n, rest, ok := memmap.ParseSize(s)
	if !ok {
		return 0, s, fmt.Errorf("%q: not a size (or out of range)", s)
	}
	return n, rest, nil
}

// placement is where kexec segments may go: RAM of the firmware memory map,
// minus what must be kept.
type placement struct {
	RAM   []memmap.Range
	Avoid []memmap.Avoided
}

// newPlacement computes where segments may go. RAM is the firmware map's
// System RAM, cut to the memmap=exactmap RAM and below the mem= limit of
// each command line given (the running kernel's and the next one's).
// Avoided are the crash kernel reservations and every top-level /proc/iomem
// resource over firmware RAM that is not System RAM (regions the running
// kernel keeps: memmap=SIZE$START shows as "Reserved", SIZE!START as
// "Persistent Memory (legacy)"), and the memmap= kept regions of the command
// lines.
func newPlacement(fw memmap.Map, iomem memmap.Iomem, cmdlines map[string]cmdlineMemory) placement {
	var p placement
	p.RAM = fw.RAM()
	overlapsRAM := func(r memmap.Range) bool {
		for _, ram := range p.RAM {
			if ram.Overlaps(r) {
				return true
			}
		}
		return false
	}
	avoid := func(r memmap.Range, why string) {
		if !r.Empty() && overlapsRAM(r) {
			p.Avoid = append(p.Avoid, memmap.Avoided{Range: r, Why: why})
		}
	}
	p.Avoid = iomem.Claimed(p.RAM)
	names := make([]string, 0, len(cmdlines))
	for n := range cmdlines {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		cm := cmdlines[n]
		if cm.Exact {
			p.RAM = memmap.IntersectAll(p.RAM, cm.RAM)
		}
		if cm.Limit != 0 {
			p.RAM = memmap.IntersectAll(p.RAM, []memmap.Range{{Start: 0, End: cm.Limit}})
		}
		for _, k := range cm.Kept {
			avoid(k, "kept by memmap= on the "+n+" command line")
		}
	}
	return p
}
