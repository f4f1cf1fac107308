package crashhandler

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Evidence by default: a direct-mode crash kernel cannot read the crashed
// kernel's memory through /proc/vmcore (see CollectPstoreEvidence), so its
// only evidence is what a pstore backend kept. Debian's kernel builds pstore
// in (CONFIG_PSTORE=y) but its RAM backend, ramoops, as a module
// (CONFIG_PSTORE_RAM=m), and without CONFIG_PSTORE_CONSOLE a panic reaches
// the backend only through kmsg_dump, which panic() (kernel/panic.c) runs
// before the crash kexec only with crash_kexec_post_notifiers. The functions
// here give every image fastreboot stages a small ramoops region
// (EvidenceCmdline), load ramoops in the kernel that boots with it
// (LoadRamoops), and mount pstore to read it (MountPstore).

// ErrNoRamoopsRoom: no free System RAM was found for a ramoops region.
var ErrNoRamoopsRoom = errors.New("no room for a ramoops region")

// ramoops region defaults: 1 MiB holds four 256 KiB dmesg records, each a
// log tail longer than anything pstore dumps at once (it stops after
// kmsg_bytes, CONFIG_PSTORE_DEFAULT_KMSG_BYTES, 10 KiB on Debian, once a
// record is written).
const (
	DefaultRamoopsSize       = 1 << 20
	DefaultRamoopsRecordSize = 0x40000
)

// ramoopsFloor is the lowest address PlaceRamoops considers: below 1 MiB
// lie the BIOS areas, the real-mode trampoline and the RAM x86 keeps back
// (arch/x86/kernel/setup.c reserves the first 1 MiB). ramoopsAlign aligns
// the region.
const (
	ramoopsFloor = 1 << 20
	ramoopsAlign = 1 << 20
)

// Files read under PstoreOptions.Root.
const (
	pstoreBackendParam = "sys/module/pstore/parameters/backend"
	postNotifiersParam = "sys/module/kernel/parameters/crash_kexec_post_notifiers"
	procCmdline        = "proc/cmdline"
	procIomem          = "proc/iomem"
	procMounts         = "proc/self/mounts"
	procOSRelease      = "proc/sys/kernel/osrelease"
)

// postNotifiers is the kernel parameter that makes panic() dump the log
// (kmsg_dump, hence ramoops) before it jumps to the crash image.
const postNotifiers = "crash_kexec_post_notifiers"

// PstoreOptions say where the pstore functions read and what they call.
type PstoreOptions struct {
	// Root holds proc/ and sys/ ("/" when empty).
	Root string
	// MemoryMap is the firmware memory map recorded while healthy;
	// EvidenceCmdline places a new ramoops region inside its RAM.
	MemoryMap memmap.Map
	// Modules loads a kernel module file; nil is finit_module(2) (Linux
	// only).
	Modules ModuleLoader
	// Mount mounts the pstore file system on target; nil is mount(2)
	// (Linux only).
	Mount func(target string) error
	// Logger receives what was done; nil discards.
	Logger *slog.Logger
}

func (o PstoreOptions) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o PstoreOptions) log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// PstoreBackend returns the name of the registered pstore backend
// ("ramoops", "efi_pstore", "erst", ...), or "" if none is.
//
// It reads Root/sys/module/pstore/parameters/backend: pstore_register
// (fs/pstore/platform.c) sets the module parameter "backend" to the
// backend's name when one registers, and pstore_unregister clears it
// (reading "(null)", the charp parameter's empty value). A missing file
// means pstore is not in the kernel (or not loaded). One blind spot: a
// pstore.backend=NAME on the command line shows NAME before NAME has
// registered.
func PstoreBackend(root string) (string, error) {
	if root == "" {
		root = "/"
	}
	b, err := os.ReadFile(filepath.Join(root, pstoreBackendParam))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the pstore backend: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if name == "(null)" {
		return "", nil
	}
	return name, nil
}

// PostNotifiers reports whether the running kernel dumps its log to pstore
// before a crash kexec: Root/sys/module/kernel/parameters/
// crash_kexec_post_notifiers reads "Y". A missing file reads as false.
func PostNotifiers(root string) bool {
	if root == "" {
		root = "/"
	}
	b, err := os.ReadFile(filepath.Join(root, postNotifiersParam))
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// Ramoops is a ramoops region as its command line words describe it.
type Ramoops struct {
	// Address and Size are ramoops.mem_address and ramoops.mem_size.
	Address uint64 `json:"address"`
	Size    uint64 `json:"size"`
	// RecordSize is ramoops.record_size (one dmesg dump).
	RecordSize uint64 `json:"record_size"`
}

// Words returns the command line words that keep the region out of every
// kernel's hands and give it to ramoops, and make panic() dump the log
// there before the crash kexec:
//
//	memmap=SIZE$ADDR ramoops.mem_address=ADDR ramoops.mem_size=SIZE
//	ramoops.record_size=RECORD crash_kexec_post_notifiers
//
// memmap=SIZE$ADDR marks the region reserved in the e820 table (arch/x86/
// kernel/e820.c parse_memmap_one), which kexec carries into every later
// kernel's table too; the kernel never allocates it, and kexec_file_load
// never places a segment there (it only walks System RAM). The ramoops.*
// words reach ramoops through modprobe or LoadRamoops: the kernel applies
// MODULE.PARAM words itself only to built-in modules.
func (r Ramoops) Words() []string {
	return []string{
		fmt.Sprintf("memmap=%s$%#x", memmap.FormatSize(r.Size), r.Address),
		fmt.Sprintf("ramoops.mem_address=%#x", r.Address),
		fmt.Sprintf("ramoops.mem_size=%#x", r.Size),
		fmt.Sprintf("ramoops.record_size=%#x", r.RecordSize),
		postNotifiers,
	}
}

// RamoopsWords returns the ramoops.* words of a command line (before any
// "--"), in order.
func RamoopsWords(cmdline string) []string {
	words, _ := bootimage.SplitCmdline(cmdline)
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, "ramoops.") {
			out = append(out, w)
		}
	}
	return out
}

// ramoopsAddress returns the value of ramoops.mem_address among words.
func ramoopsAddress(words []string) (uint64, bool) {
	for _, w := range words {
		if v, ok := strings.CutPrefix(w, "ramoops.mem_address="); ok {
			n, rest, ok := memmap.ParseSize(v)
			if ok && rest == "" {
				return n, true
			}
		}
	}
	return 0, false
}

// keptRegionWords returns the memmap=SIZE$START and memmap=SIZE!START words
// among words whose region contains addr: the words that keep a ramoops
// region.
func keptRegionWords(words []string, addr uint64) []string {
	var out []string
	for _, w := range words {
		v, ok := strings.CutPrefix(w, "memmap=")
		if !ok {
			continue
		}
		size, rest, ok := memmap.ParseSize(v)
		if !ok || rest == "" || (rest[0] != '$' && rest[0] != '!') {
			continue
		}
		start, rest, ok := memmap.ParseSize(rest[1:])
		if ok && rest == "" && start <= addr && addr < start+size {
			out = append(out, w)
		}
	}
	return out
}

// EvidenceCmdline completes the command line of the next image so that a
// crash of the kernel it boots leaves its panic log in pstore:
//
//   - a line that already names a ramoops region (ramoops.mem_address=)
//     gets only crash_kexec_post_notifiers if it lacks it;
//   - else, when the running kernel's command line (Root/proc/cmdline)
//     names one, its words are repeated: its ramoops.* words and the
//     memmap= word that keeps the region. The kernel that crashes and the
//     one that reads its dump must agree on the address, and every
//     generation after the first inherits it this way;
//   - else, when a pstore backend is registered (PstoreBackend: efi_pstore,
//     erst, a ramoops configured by other means), only
//     crash_kexec_post_notifiers is added, which that backend needs too;
//   - else a new region of DefaultRamoopsSize is placed by PlaceRamoops
//     from opts.MemoryMap and Root/proc/iomem, and its Ramoops.Words are
//     added.
//
// A word is never added twice, and crash_kexec_post_notifiers is not added
// when the line sets it (to any value), so the function is idempotent. New
// words go before any "--" (after it the words go to init), after the
// line's own words, so a memmap=SIZE$START follows any memmap=exactmap
// (which would otherwise erase it). On error the line is returned
// unchanged with the error.
func EvidenceCmdline(next string, opts PstoreOptions) (string, error) {
	words, initArgs := bootimage.SplitCmdline(next)
	var add []string
	if _, ok := ramoopsAddress(words); !ok {
		region, err := evidenceRegionWords(opts)
		if err != nil {
			return next, err
		}
		add = region
	}
	if !hasKey(words, postNotifiers) && !hasKey(add, postNotifiers) {
		add = append(add, postNotifiers)
	}
	var out []string
	for _, w := range add {
		if !hasWord(words, w) && !hasWord(out, w) {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return next, nil
	}
	opts.log().Info("the next image keeps a pstore region for crash evidence", "words", strings.Join(out, " "))
	return bootimage.JoinCmdline(append(append([]string(nil), words...), out...), initArgs), nil
}

// evidenceRegionWords returns the words naming a ramoops region for a line
// that has none: the running kernel's, none when another backend is
// registered, or a new region.
func evidenceRegionWords(opts PstoreOptions) ([]string, error) {
	root := opts.root()
	b, err := os.ReadFile(filepath.Join(root, procCmdline))
	if err != nil {
		return nil, fmt.Errorf("pstore region: the running command line: %w", err)
	}
	running, _ := bootimage.SplitCmdline(string(b))
	if addr, ok := ramoopsAddress(running); ok {
		out := keptRegionWords(running, addr)
		for _, w := range running {
			if strings.HasPrefix(w, "ramoops.") {
				out = append(out, w)
			}
		}
		return out, nil
	}
	backend, err := PstoreBackend(root)
	if err != nil {
		return nil, fmt.Errorf("pstore region: %w", err)
	}
	if backend != "" {
		return nil, nil
	}
	iomem, err := memmap.ReadIomem(root)
	if err != nil {
		return nil, fmt.Errorf("pstore region: %w", err)
	}
	addr, err := PlaceRamoops(opts.MemoryMap, iomem, DefaultRamoopsSize)
	if err != nil {
		return nil, fmt.Errorf("pstore region: %w", err)
	}
	return Ramoops{Address: addr, Size: DefaultRamoopsSize, RecordSize: DefaultRamoopsRecordSize}.Words(), nil
}

func hasWord(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

func hasKey(words []string, key string) bool {
	for _, w := range words {
		if k, _, _ := strings.Cut(w, "="); k == key {
			return true
		}
	}
	return false
}

// PlaceRamoops chooses where a new ramoops region of size bytes goes: the
// lowest ramoopsAlign-aligned address at or above 1 MiB whose whole region
// is System RAM both in the firmware map fw and among the top-level
// "System RAM" resources of iomem (memmap.ReadIomem: it leaves out what the
// running kernel keeps, e.g. other memmap= regions), outside every "Crash
// kernel" resource (the crashkernel= reservation, where the crash image
// lives). Given the same map, it always answers the same address.
//
// Why low. kexec_file_load places every segment of the next image the
// same way (arch/x86/kernel/kexec-bzimage64.c bzImage64_load: top_down =
// true for the purgatory and the boot parameters, at or above 0x3000, the
// kernel with its whole init_size, at or above 1 MiB, and the initrd, at or
// above 16 MiB): kernel/kexec_file.c kexec_locate_mem_hole walks the System
// RAM resources from the lowest (walk_system_ram_res) and takes the first
// one large enough, filling it from its top down (locate_mem_hole_top_down).
// So the segments sit at the top of the lowest large RAM range (the small
// ones usually below 640 KiB), and reach its bottom only if the image
// nearly fills the range; the initrd never goes below 16 MiB. The kernel
// that boots decompresses itself inside its segment or, with KASLR, at a
// random address at or above 16 MiB (LOAD_PHYSICAL_ADDR) away from memmap=
// regions (arch/x86/boot/compressed/kaslr.c); the segments load method
// places the kernel at its link address (16 MiB) and keeps every segment
// off the memmap= regions of the next command line. A region just above
// 1 MiB is where none of them goes. Once a kernel runs with the region's
// memmap= word, the region is reserved and no segment can land on it at
// all.
func PlaceRamoops(fw memmap.Map, iomem memmap.Iomem, size uint64) (uint64, error) {
	if size == 0 {
		size = DefaultRamoopsSize
	}
	ram := iomem.RAM()
	if len(ram) == 0 {
		return 0, fmt.Errorf("%w: /proc/iomem shows no System RAM (read without CAP_SYS_ADMIN it shows every address as 0)", ErrNoRamoopsRoom)
	}
	free := memmap.Merge(memmap.Subtract(memmap.IntersectAll(fw.RAM(), ram), iomem.CrashKernel()...))
	best := uint64(0)
	found := false
	for _, r := range free {
		start := max(r.Start, ramoopsFloor)
		start = (start + ramoopsAlign - 1) &^ (ramoopsAlign - 1)
		if start+size > r.End || start+size < start {
			continue
		}
		if !found || start < best {
			best, found = start, true
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: no %d bytes of System RAM above 1 MiB outside the crash kernel reservation", ErrNoRamoopsRoom, size)
	}
	return best, nil
}
