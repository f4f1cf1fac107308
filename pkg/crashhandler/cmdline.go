package crashhandler

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Command line words the crash path adds and recognises.
const (
	// markerKey starts the crash-only words CrashCmdline appends:
	// "fastreboot.crash=two-stage". Everything from it to the end (or to
	// "--") is dropped by ProductionCmdline. Being dotted, the kernel takes
	// it for a parameter of a module it does not have and ignores it.
	markerKey = "fastreboot.crash"
	// origKey saves a production word CrashCmdline had to remove:
	// "fastreboot.orig=crashkernel%3D512M" restores "crashkernel=512M".
	// The saved word is %-escaped ('=', '%', '"', white space) so that it never
	// contains "crashkernel=": the kernel finds that string anywhere in the
	// line, not only at a word start (kernel/crash_core.c
	// get_last_crashkernel uses strstr).
	origKey = "fastreboot.orig"
)

// twoStageWords follow the marker on a two-stage crash kernel's line:
// reset_devices and irqpoll, as for kdump (drivers reset their devices, and
// interrupts still routed the crashed kernel's way get polled).
//
// There is no nr_cpus=1, unlike kdump: the crash kernel brings up every
// CPU. The panic stops the other CPUs in the crashed kernel's NMI handler
// (halted, in its text, on its stacks and page tables), and only INIT
// takes a CPU out of there; the crash kernel is the last kernel that can
// send it before the production kernel, whose RAM includes all of the
// crashed kernel's memory, boots. A crash kernel that left them parked
// (nr_cpus=1) handed production a machine where any wake-up of such a CPU
// runs memory production is already reusing: under QEMU TCG the crashed
// kernel's boot CPU does wake up while production boots on another CPU
// (its logical APIC id, 1, is also production's), and production died in a
// triple fault before it woke the CPUs itself (TestCrashOnCPU3, crash
// soak). With every CPU brought up, the crash kernel's own kexec parks them
// in its own memory the way every kexec does (stop_this_cpu), and the
// production kernel finds what an update reboot leaves. The cost is the
// crash kernel's per-CPU memory (PerCPUBudget in RequiredReservation).
var twoStageWords = []string{"reset_devices", "irqpoll"}

// DefaultPanicTimeout is the panic=N of a two-stage crash kernel: if the
// crash kernel panics itself, it reboots through firmware after N seconds.
const DefaultPanicTimeout = 10

// CmdlineOptions tune CrashCmdline.
type CmdlineOptions struct {
	// PanicTimeout is N in panic=N (two-stage); 0 means
	// DefaultPanicTimeout, negative leaves panic= out.
	PanicTimeout int
	// ExtraWords are appended to the crash-only words (e.g. loglevel=7 for
	// a talkative crash kernel). ProductionCmdline drops them again.
	ExtraWords []string
	// MemoryMap is the firmware memory map. Direct mode needs it; in
	// two-stage mode it only identifies stale map words to drop.
	MemoryMap memmap.Map
	// PossibleCPUs is the number of possible CPUs of the running system
	// (0: unknown). Direct mode raises it past flatAPICMaxCPUs with
	// possible_cpus= (see physicalAPICWord).
	PossibleCPUs int
}

// flatAPICMaxCPUs: an x86-64 kernel with at most this many possible CPUs
// routes interrupts in flat logical destination mode (xAPIC; 6.1
// arch/x86/kernel/apic/apic_flat_64.c: physflat_probe wants
// num_possible_cpus() > 8), where each CPU's logical APIC id is one bit
// given out in the order the kernel brings CPUs up, so a new kernel's
// boot CPU gets logical id 1.
const flatAPICMaxCPUs = 8

// physicalAPICWord returns the word that makes a direct crash kernel route
// interrupts in physical destination mode on a machine with possible CPUs:
// possible_cpus=N with N the larger of possible and flatAPICMaxCPUs+1 (""
// when the count is unknown or words set possible_cpus= already). It is
// given even where possible is past flatAPICMaxCPUs, because a direct crash
// kernel becomes production: when it arms the next crash image it counts
// the possible CPUs its own possible_cpus= made, not the firmware's.
//
// Why: a panic leaves the other CPUs halted with interrupts off in the
// crashed kernel's NMI handler, and a direct crash kernel reuses the
// crashed kernel's memory before it takes them back with INIT at SMP
// bring-up. In flat logical mode the crashed kernel's boot CPU still holds
// logical id 1, the id the new kernel's boot CPU gets, so the interrupts the
// new kernel aims at itself (the APIC timer calibration) also reach the
// halted CPU. Hardware keeps such a CPU halted, but QEMU TCG wakes it now
// and then, into memory the new kernel has already reused: the new kernel
// dies ("kernel BUG at mm/vmalloc.c", seen in the QEMU test of a direct
// crash set up as a user would, -smp 4). In physical mode nothing is
// addressed to the halted CPU. possible_cpus= is honoured by x86
// (arch/x86/kernel/smpboot.c prefill_possible_map, in setup_arch, before
// the APIC driver is chosen); each extra possible CPU costs its per-CPU
// area (about 260 KiB).
func physicalAPICWord(possible int, words []string) string {
	if possible <= 0 {
		return ""
	}
	for _, w := range words {
		if k, _, _ := strings.Cut(w, "="); k == "possible_cpus" {
			return ""
		}
	}
	return "possible_cpus=" + strconv.Itoa(max(possible, flatAPICMaxCPUs+1))
}

// twoStageStrip are production words a two-stage crash kernel must not
// inherit; they are saved as fastreboot.orig= so ProductionCmdline restores
// them:
//   - crashkernel=: the crash kernel's RAM is the reservation itself; x86's
//     reserve_crashkernel (arch/x86/kernel/setup.c) has no is_kdump_kernel()
//     guard (riscv has one), so it would carve a second reservation out of
//     the memory the crash kernel needs to reload the image.
//   - nr_cpus=: the crash kernel brings up every CPU (see twoStageWords).
//   - panic=, reset_devices, irqpoll: replaced by the crash words.
var twoStageStrip = map[string]bool{
	"crashkernel": true, "nr_cpus": true, "panic": true, "reset_devices": true, "irqpoll": true,
}

// CrashCmdline derives the crash kernel's command line from the production
// one.
//
// Any mode other than ModeDirect is taken as ModeTwoStage.
//
// Both modes drop words that only the kernel adds (elfcorehdr=,
// dmcryptkeys=: kexec_file_load prepends them again for a crash image) and
// stale memory map words (memmap=exactmap, memmap=SIZE@START and words of
// opts.MemoryMap); other memmap= words (regions kept out of the kernel's
// hands) stay. Crash-only words follow the marker "fastreboot.crash=MODE",
// before any "--" (the words after it go to init).
//
// Two-stage appends "reset_devices irqpoll panic=N" (see twoStageWords) and
// the extra words, and moves crashkernel= (see twoStageStrip; also any other word
// containing "crashkernel=") into fastreboot.orig= words that
// ProductionCmdline turns back.
//
// Direct appends the full memory map (memmap=exactmap ...), after the
// marker possible_cpus= of at least 9 (see physicalAPICWord), and keeps
// crashkernel=: the direct crash kernel owns all RAM once its memmap= words
// are parsed (early in setup_arch, before reserve_crashkernel), becomes the
// production system and must be able to re-arm (each generation must add
// crashkernel= again, or the next crash has nowhere to go:
// docs/kernel-facts.md, Recovery modes).
func CrashCmdline(prod string, mode Mode, opts CmdlineOptions) string {
	if mode != ModeDirect {
		mode = ModeTwoStage
	}
	words, initArgs := bootimage.SplitCmdline(prod)
	generated := wordSet(opts.MemoryMap.CmdlineWords())
	var kept, userMap, saved []string
	for _, w := range words {
		key, val, _ := strings.Cut(w, "=")
		switch {
		case key == "elfcorehdr" || key == "dmcryptkeys" || key == markerKey || key == origKey:
		case key == "memmap":
			if isMapWord(val, generated, w) {
				continue
			}
			userMap = append(userMap, w)
		case mode == ModeTwoStage && (twoStageStrip[key] || strings.Contains(w, "crashkernel=")):
			saved = append(saved, origKey+"="+escapeWord(w))
		default:
			kept = append(kept, w)
		}
	}
	out := kept
	if mode == ModeDirect {
		out = append(out, opts.MemoryMap.CmdlineWords()...)
	}
	out = append(out, userMap...)
	out = append(out, markerKey+"="+string(mode))
	if w := physicalAPICWord(opts.PossibleCPUs, words); mode == ModeDirect && w != "" {
		out = append(out, w)
	}
	if mode == ModeTwoStage {
		out = append(out, twoStageWords...)
		switch t := opts.PanicTimeout; {
		case t == 0:
			out = append(out, "panic="+strconv.Itoa(DefaultPanicTimeout))
		case t > 0:
			out = append(out, "panic="+strconv.Itoa(t))
		}
	}
	out = append(out, opts.ExtraWords...)
	out = append(out, saved...)
	return bootimage.JoinCmdline(out, initArgs)
}

// ProductionCmdline turns a crash kernel's command line (as in its
// /proc/cmdline, elfcorehdr= included) into the command line of the next
// production kernel: it drops elfcorehdr=/dmcryptkeys=, the marker and every
// crash-only word after it (reset_devices, irqpoll, panic=, extra words; and
// nr_cpus=1, which crash images armed by earlier versions carry), restores
// the words CrashCmdline saved, and puts the full memory
// map of mm in place of any memory map words (memmap=exactmap must come
// before other memmap= words, which it would otherwise erase).
//
// Every generation after a crash needs the map: its kexec'd e820 is still
// the crash kernel's restricted one. With an empty mm no map words are
// added and the next kernel inherits whatever map kexec passes.
//
// A line without the marker (not made by CrashCmdline, e.g. the production
// cmdline of a later update) loses elfcorehdr=, dmcryptkeys=,
// reset_devices, irqpoll and nr_cpus=1 and gets the map; panic= is kept
// since it cannot be told apart from a production setting.
func ProductionCmdline(crash string, mm memmap.Map) string {
	words, initArgs := bootimage.SplitCmdline(crash)
	var restored []string
	marked := false
	for i, w := range words {
		if key, _, _ := strings.Cut(w, "="); key == markerKey {
			for _, c := range words[i+1:] {
				if k, v, _ := strings.Cut(c, "="); k == origKey {
					if orig, err := url.PathUnescape(v); err == nil && orig != "" {
						restored = append(restored, orig)
					}
				}
			}
			words, marked = words[:i], true
			break
		}
	}
	generated := wordSet(mm.CmdlineWords())
	var kept, userMap []string
	for _, w := range words {
		key, val, _ := strings.Cut(w, "=")
		switch {
		case key == "elfcorehdr" || key == "dmcryptkeys" || key == origKey:
		case key == "memmap":
			if !isMapWord(val, generated, w) {
				userMap = append(userMap, w)
			}
		case !marked && (w == "reset_devices" || w == "irqpoll" || w == "nr_cpus=1"):
		default:
			kept = append(kept, w)
		}
	}
	out := append(kept, restored...)
	out = append(out, mm.CmdlineWords()...)
	out = append(out, userMap...)
	return bootimage.JoinCmdline(out, initArgs)
}

// escapeWord %-escapes the bytes that must not appear in a saved word: '%',
// '=', '"' and every byte the kernel splits a command line at (its isspace:
// blank, \t, \n, \v, \f, \r, and NUL, which ends the line).
func escapeWord(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		switch c := w[i]; c {
		case '%', '=', '"', ' ', '\t', '\n', '\v', '\f', '\r', 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isMapWord reports memmap= words that belong to a memory map definition
// (exactmap, RAM ranges) or to the map being generated.
func isMapWord(val string, generated map[string]bool, w string) bool {
	return val == "exactmap" || strings.Contains(val, "@") || generated[w]
}

func wordSet(ws []string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// CrashModeOf reports whether a command line (e.g. /proc/cmdline) is one
// CrashCmdline made, and for which mode: the crash kernel's early-boot code
// uses it to pick its path.
func CrashModeOf(cmdline string) (Mode, bool) {
	words, _ := bootimage.SplitCmdline(cmdline)
	for _, w := range words {
		if k, v, _ := strings.Cut(w, "="); k == markerKey {
			return Mode(v), true
		}
	}
	return "", false
}

// crashkernelKey is the parameter that asks the kernel for the crash
// reservation.
const crashkernelKey = "crashkernel"

// InheritCrashkernel returns next, the command line of an image about to be
// staged or armed, with the running system's crashkernel= words appended
// before any "--" when next has none of its own: without them the
// generation next boots has no reservation and cannot re-arm the crash
// path. A crashkernel word of next (any word whose key is crashkernel,
// including the ",high" and ",low" forms) always wins; next is then
// returned unchanged, as it is when running has no crashkernel word.
//
// running is the running kernel's command line (/proc/cmdline). On a
// two-stage crash kernel, whose line carries crashkernel= only saved in
// fastreboot.orig= words (see CrashCmdline), the saved words are taken.
// Only kernel words count: the words after "--" go to init.
func InheritCrashkernel(next, running string) string {
	words, initArgs := bootimage.SplitCmdline(next)
	if len(crashkernelWords(words)) > 0 {
		return next
	}
	inherit := runningCrashkernel(running)
	if len(inherit) == 0 {
		return next
	}
	return bootimage.JoinCmdline(append(slices.Clip(words), inherit...), initArgs)
}

// crashkernelWords returns the words whose key is crashkernel.
func crashkernelWords(words []string) []string {
	var out []string
	for _, w := range words {
		if key, _, _ := strings.Cut(w, "="); key == crashkernelKey {
			out = append(out, w)
		}
	}
	return out
}

// runningCrashkernel returns the crashkernel words of a running kernel's
// command line: its own, and those a two-stage crash line saved after its
// marker.
func runningCrashkernel(running string) []string {
	words, _ := bootimage.SplitCmdline(running)
	var out []string
	marked := false
	for _, w := range words {
		key, val, _ := strings.Cut(w, "=")
		switch {
		case key == markerKey:
			marked = true
		case key == crashkernelKey:
			out = append(out, w)
		case marked && key == origKey:
			orig, err := url.PathUnescape(val)
			if k, _, _ := strings.Cut(orig, "="); err == nil && k == crashkernelKey {
				out = append(out, orig)
			}
		}
	}
	return out
}
