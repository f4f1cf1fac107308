package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

const keptUsage = `  kept plan --size SIZE [--preserve SIZE] [--json]
  kept status [--json]`

func cmdKept(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("kept needs a subcommand:\n%s", keptUsage)
	}
	switch args[0] {
	case "plan":
		return keptPlan(e, args[1:])
	case "status":
		return keptStatus(e, args[1:])
	}
	return usagef("unknown kept subcommand %q:\n%s", args[0], keptUsage)
}

// keptPlanReport is what `kept plan` found.
type keptPlanReport struct {
	// Layout is the new region and its preserved part.
	Layout keptmem.Layout
	// Words are what to add to the boot loader's command line.
	Words []string
	// MemoryMapFrom is "handoff" (the map recorded while healthy) or
	// "firmware" (this boot's /sys/firmware/memmap).
	MemoryMapFrom string
	// Avoided are the ranges the region was kept out of.
	Avoided []memmap.Avoided
	// Running is the region the running command line keeps, if any.
	Running *keptmem.Region
}

func keptPlan(e *env, args []string) error {
	fs := newFlags("kept plan")
	size := fs.String("size", "", "`SIZE` of the region (K, M, G suffixes; a multiple of 2M): the module cache and the preserved part")
	preserve := fs.String("preserve", "", "`SIZE` of the region's end given to the areas workloads preserve (fastreboot.preserve=); default none")
	asJSON := fs.Bool("json", false, "print the plan as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("kept plan takes no arguments, got %q", pos)
	}
	n, rest, ok := memmap.ParseSize(*size)
	if *size == "" || !ok || rest != "" {
		return usagef("--size %q: want a size such as 64M", *size)
	}
	var p uint64
	if *preserve != "" {
		var ok bool
		if p, rest, ok = memmap.ParseSize(*preserve); !ok || rest != "" {
			return usagef("--preserve %q: want a size such as 16M", *preserve)
		}
	}
	rep, err := planKept(e.root, n, p)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, keptPlanDoc(rep))
	}
	printKeptPlan(e.stdout, rep)
	return nil
}

// planKept places a region of size bytes (preserve of them for the
// workloads' areas) in the recorded firmware memory map under root: the
// handoff's map when this generation has one (after a crash the running
// kernel's map is restricted), else root/sys/firmware/memmap; kept out of
// the crashkernel= reservation and of the RAM the running kernel does not
// use (/proc/iomem: the ramoops region, a region kept already).
func planKept(root string, size, preserve uint64) (*keptPlanReport, error) {
	rep := &keptPlanReport{}
	var fw memmap.Map
	if h, err := fastreboot.ReadHandoff(root); err == nil && h.MemoryMap.RAMBytes() > 0 {
		fw, rep.MemoryMapFrom = h.MemoryMap, "handoff"
	} else {
		if fw, err = memmap.ReadFirmware(root); err != nil {
			return nil, fmt.Errorf("kept plan: the firmware memory map: %w", err)
		}
		rep.MemoryMapFrom = "firmware"
	}
	iomem, err := memmap.ReadIomem(root)
	if err != nil {
		return nil, fmt.Errorf("kept plan: %w", err)
	}
	ram := iomem.RAM()
	if len(ram) == 0 {
		return nil, fmt.Errorf("kept plan: %s shows no System RAM (read without CAP_SYS_ADMIN it shows every address as 0)", filepath.Join(root, "proc/iomem"))
	}
	var avoid []memmap.Range
	for _, r := range iomem.CrashKernel() {
		avoid = append(avoid, r)
		rep.Avoided = append(rep.Avoided, memmap.Avoided{Range: r, Why: "crash kernel reservation (/proc/iomem)"})
	}
	for _, r := range memmap.Subtract(memmap.Merge(fw.RAM()), ram...) {
		avoid = append(avoid, r)
		rep.Avoided = append(rep.Avoided, memmap.Avoided{Range: r, Why: "not System RAM of the running kernel (/proc/iomem: a memmap= region, e.g. ramoops or a kept region)"})
	}
	r, err := keptmem.Plan(fw, size, avoid)
	if err != nil {
		return nil, fmt.Errorf("kept plan: %w", err)
	}
	words := r.CmdlineWords()
	if preserve > 0 {
		words = append(words, keptmem.PreserveKey+"="+memmap.FormatSize(preserve))
	}
	l, ok, err := keptmem.ParseLayout(strings.Join(words, " "))
	if err != nil || !ok {
		return nil, fmt.Errorf("kept plan: %w", err)
	}
	rep.Layout, rep.Words = l, l.Words()
	if b, err := os.ReadFile(filepath.Join(root, "proc/cmdline")); err == nil {
		if cur, ok, err := keptmem.ParseCmdline(strings.TrimSpace(string(b))); err == nil && ok {
			rep.Running = &cur
		}
	}
	return rep, nil
}

func printKeptPlan(w io.Writer, r *keptPlanReport) {
	fmt.Fprintf(w, "kept region: %s (module cache %s", r.Layout.Region, memmap.FormatSize(uint64(r.Layout.CacheSize)))
	if r.Layout.AreasSize > 0 {
		fmt.Fprintf(w, ", preserved areas %s", memmap.FormatSize(uint64(r.Layout.AreasSize)))
	}
	fmt.Fprintf(w, "), placed in the %s memory map\n", r.MemoryMapFrom)
	for _, a := range r.Avoided {
		fmt.Fprintf(w, "  avoided %s: %s\n", a.Range, a.Why)
	}
	if r.Running != nil {
		fmt.Fprintf(w, "the running command line keeps %s already: every staged image inherits it\n", *r.Running)
	}
	fmt.Fprintf(w, "add to the boot loader's command line (e.g. GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub), and reboot:\n  %s\n",
		strings.Join(r.Words, " "))
}

// keptStatusReport is what `kept status` found.
type keptStatusReport struct {
	// Layout is the running command line's region (nil: none).
	Layout *keptmem.Layout
	// Device is its block device; DeviceError why none was found.
	Device      string
	DeviceError string
	// Header is the index's header (nil: none valid); Modules and Bytes
	// what the index holds; IndexError why there is no valid index.
	Header     *keptmem.Header
	Modules    int
	Bytes      int64
	IndexError string
}

func keptStatus(e *env, args []string) error {
	fs := newFlags("kept status")
	asJSON := fs.Bool("json", false, "print the status as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("kept status takes no arguments, got %q", pos)
	}
	rep, err := readKeptStatus(e.root)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, keptStatusDoc(rep))
	}
	printKeptStatus(e.stdout, rep)
	return nil
}

func readKeptStatus(root string) (*keptStatusReport, error) {
	rep := &keptStatusReport{}
	l, ok, err := keptmem.RunningLayout(root)
	if err != nil {
		return nil, fmt.Errorf("kept status: %w", err)
	}
	if !ok {
		return rep, nil
	}
	rep.Layout = &l
	if rep.Device, err = keptmem.FindDevice(root, l.Region); err != nil {
		rep.Device, rep.DeviceError = "", err.Error()
		return rep, nil
	}
	dev, err := keptmem.OpenFileDevice(rep.Device)
	if err != nil {
		rep.IndexError = err.Error()
		return rep, nil
	}
	defer dev.Close()
	win, err := keptmem.Window(dev, 0, l.CacheSize)
	if err != nil {
		rep.IndexError = err.Error()
		return rep, nil
	}
	ix, err := keptmem.Open(win)
	if err != nil {
		rep.IndexError = err.Error()
		return rep, nil
	}
	h := ix.Header()
	rep.Header = &h
	rep.Modules = ix.Len()
	for _, en := range ix.Entries() {
		rep.Bytes += en.Size
	}
	return rep, nil
}

func printKeptStatus(w io.Writer, r *keptStatusReport) {
	if r.Layout == nil {
		fmt.Fprintln(w, "kept region: none (the running command line has no memmap=SIZE!START; `fastreboot kept plan --size 64M` says which words to add)")
		return
	}
	fmt.Fprintf(w, "kept region: %s (module cache %s", r.Layout.Region, memmap.FormatSize(uint64(r.Layout.CacheSize)))
	if r.Layout.AreasSize > 0 {
		fmt.Fprintf(w, ", preserved areas %s", memmap.FormatSize(uint64(r.Layout.AreasSize)))
	}
	fmt.Fprintln(w, ")")
	if r.DeviceError != "" {
		fmt.Fprintf(w, "  device: none: %s\n", r.DeviceError)
		return
	}
	fmt.Fprintf(w, "  device: %s\n", r.Device)
	if h := r.Header; h != nil {
		fmt.Fprintf(w, "  index: sequence %d, written by generation %d: %d modules, %s (index SHA-256 %s)\n",
			h.Sequence, h.Generation, r.Modules, human(r.Bytes), hex.EncodeToString(h.IndexSHA256[:]))
	} else {
		fmt.Fprintf(w, "  index: none: %s\n", r.IndexError)
	}
}
