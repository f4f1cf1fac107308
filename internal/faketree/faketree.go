// Package faketree writes the fake /proc and /sys trees that the tests of
// fastreboot's packages read through their injectable root (every /proc and
// /sys read takes one), so that the packages testing one machine share its
// description.
package faketree

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// QEMUIomem is /proc/iomem of a QEMU q35 guest with 2 GiB and a crash
// kernel reservation (as the crash tests' roots have).
const QEMUIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
00100000-7ffdefff : System RAM
  01000000-01e00816 : Kernel code
  5e000000-75ffffff : Crash kernel
7ffdf000-7fffffff : Reserved
`

// RamoopsWords is the pstore region a root with QEMUIomem gets (the lowest
// 1 MiB of RAM above 1 MiB).
var RamoopsWords = []string{
	"memmap=1M$0x100000", "ramoops.mem_address=0x100000", "ramoops.mem_size=0x100000",
	"ramoops.record_size=0x40000", "crash_kexec_post_notifiers",
}

// Write writes content to root/rel, making the directories; t fails on an
// error.
func Write(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// CrashRoot returns a new root with a crash reservation of reserve bytes
// (0: none), the fault sysctls at 0 (but hardlockup_panic: no PMU, as
// under QEMU TCG), 2000000 kB of RAM, a command line with crashkernel=384M,
// a stand-in fastreboot binary as /proc/self/exe (the /init of a minimal
// crash initramfs) and a 2 GiB firmware memory map.
func CrashRoot(t testing.TB, reserve int64) string {
	t.Helper()
	root := t.TempDir()
	w := func(rel, s string) { Write(t, root, rel, s) }
	w("sys/kernel/kexec_crash_size", strconv.FormatInt(reserve, 10)+"\n")
	w("sys/kernel/kexec_crash_loaded", "0\n")
	for _, n := range crashhandler.DefaultFaults {
		if n == crashhandler.SysctlHardlockupPanic {
			continue
		}
		w(filepath.Join("proc/sys", strings.ReplaceAll(n, ".", "/")), "0\n")
	}
	w("proc/meminfo", "MemTotal:        2000000 kB\n")
	w("proc/cmdline", "console=ttyS0 crashkernel=384M\n")
	w("proc/self/exe", strings.Repeat("static fastreboot binary ", 400))
	for i, e := range []struct{ start, end, typ string }{
		{"0x0", "0x9fbff", memmap.TypeRAM},
		{"0x9fc00", "0x9ffff", memmap.TypeReserved},
		{"0x100000", "0x7ffdefff", memmap.TypeRAM},
		{"0x7ffdf000", "0x7fffffff", memmap.TypeReserved},
	} {
		d := filepath.Join("sys/firmware/memmap", strconv.Itoa(i))
		w(filepath.Join(d, "start"), e.start+"\n")
		w(filepath.Join(d, "end"), e.end+"\n")
		w(filepath.Join(d, "type"), e.typ+"\n")
	}
	return root
}
