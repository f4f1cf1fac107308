package memmap

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NameCrashKernel names the crash kernel reservation in /proc/iomem
// (kernel/crash_core.c, crashk_res; with crashkernel=X,high a second, low
// one, crashk_low_res, has the same name).
const NameCrashKernel = "Crash kernel"

// Resource is one line of /proc/iomem.
type Resource struct {
	Range
	Name string
	// Depth is the nesting level: 0 for top-level resources.
	Depth int
}

// Iomem is the kernel's resource tree as /proc/iomem lists it, in its
// order (a resource's children follow it).
type Iomem []Resource

// ParseIomem reads /proc/iomem: lines "START-END : NAME" (END inclusive),
// indented by two spaces per nesting level (kernel/resource.c r_show).
// Lines that do not have this shape are skipped, and so are the "0-0"
// lines: read without CAP_SYS_ADMIN every address is 0, and the result is
// then empty.
func ParseIomem(r io.Reader) (Iomem, error) {
	var out Iomem
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
		if err1 != nil || err2 != nil || end < start || end == 0 || end == ^uint64(0) {
			continue
		}
		out = append(out, Resource{Range: RangeInclusive(start, end), Name: strings.TrimSpace(name), Depth: indent / 2})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading /proc/iomem: %w", err)
	}
	return out, nil
}

// ReadIomem reads root/proc/iomem (ParseIomem). Reading the addresses
// needs CAP_SYS_ADMIN.
func ReadIomem(root string) (Iomem, error) {
	path := filepath.Join(rootDir(root), "proc/iomem")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := ParseIomem(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

// RAM returns the top-level System RAM resources: the RAM the running
// kernel uses (it leaves out what it keeps, e.g. memmap= regions).
func (m Iomem) RAM() []Range {
	var out []Range
	for _, r := range m {
		if r.Depth == 0 && r.Name == TypeRAM {
			out = append(out, r.Range)
		}
	}
	return out
}

// CrashKernel returns every "Crash kernel" resource (nested inside System
// RAM): the crashkernel= reservations.
func (m Iomem) CrashKernel() []Range {
	var out []Range
	for _, r := range m {
		if r.Name == NameCrashKernel {
			out = append(out, r.Range)
		}
	}
	return out
}

// Avoided is a range of physical memory something must stay out of, and
// why. Its range is exclusive of End, as every Range.
type Avoided struct {
	Range
	Why string `json:"why"`
}

// Claimed returns what the running kernel holds back from its own RAM
// inside ram (the System RAM of the firmware map): the crashkernel=
// reservations (nested in System RAM) and every top-level resource over
// ram that is not System RAM (memmap= regions: SIZE$START shows as
// "Reserved", SIZE!START as "Persistent Memory (legacy)"). Kexec segments
// and a new kept region must avoid both.
func (m Iomem) Claimed(ram []Range) []Avoided {
	overlaps := func(r Range) bool {
		for _, x := range ram {
			if x.Overlaps(r) {
				return true
			}
		}
		return false
	}
	var out []Avoided
	for _, e := range m {
		switch {
		case !overlaps(e.Range):
		case e.Name == NameCrashKernel:
			out = append(out, Avoided{Range: e.Range, Why: "crash kernel reservation (/proc/iomem)"})
		case e.Depth == 0 && e.Name != TypeRAM:
			out = append(out, Avoided{Range: e.Range, Why: fmt.Sprintf("kept by the running kernel: %s (/proc/iomem)", e.Name)})
		}
	}
	return out
}
