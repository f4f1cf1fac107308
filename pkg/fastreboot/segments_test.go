package fastreboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

func TestParseLoadMethod(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    LoadMethod
		wantErr bool
	}{
		{"", LoadFile, false},
		{"file", LoadFile, false},
		{"segments", LoadSegments, false},
		{"Segments", "", true},
		{"kexec_load", "", true},
	} {
		got, err := ParseLoadMethod(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseLoadMethod(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

const testIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  02000000-02e00fff : Kernel code
  30000000-3fffffff : Crash kernel
40000000-40ffffff : Reserved
41000000-7ffdffff : System RAM
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
    b0000000-bfffffff : Reserved
100000000-17fffffff : System RAM
`

func TestParseCmdlineMemory(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		want          cmdlineMemory
		wantErr       string
	}{
		{name: "none", cmdline: "console=ttyS0 root=/dev/vda", want: cmdlineMemory{}},
		{
			name:    "kept regions",
			cmdline: `console=ttyS0 memmap=16M$0x40000000 "memmap=1M!0x50000000" memmap=4K#0x60000000,2M%0x70000000-1+12 quiet`,
			want: cmdlineMemory{Kept: []memmap.Range{
				{Start: 0x40000000, End: 0x41000000}, {Start: 0x50000000, End: 0x50100000}, {Start: 0x60000000, End: 0x60001000}, {Start: 0x70000000, End: 0x70200000},
			}},
		},
		{
			name:    "exactmap",
			cmdline: "memmap=exactmap memmap=640K@0 memmap=1023M@1M memmap=64K#0x7ffe0000",
			want: cmdlineMemory{Exact: true, RAM: []memmap.Range{{Start: 0, End: 640 << 10}, {Start: 1 << 20, End: 1024 << 20}},
				Kept: []memmap.Range{{Start: 0x7ffe0000, End: 0x7fff0000}}},
		},
		{name: "limits", cmdline: "mem=2G memmap=1G mem=nopentium", want: cmdlineMemory{Limit: 1 << 30}},
		{name: "init args ignored", cmdline: "quiet -- memmap=1G$0", want: cmdlineMemory{}},
		{name: "-- inside quotes is a word", cmdline: `dyndbg="a -- b" memmap=16M$0x40000000`,
			want: cmdlineMemory{Kept: []memmap.Range{{Start: 0x40000000, End: 0x41000000}}}},
		{name: "bad memmap", cmdline: "memmap=16M^0x1000", wantErr: `"memmap=16M^0x1000"`},
		{name: "bad mem", cmdline: "mem=lots", wantErr: `"mem=lots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCmdlineMemory(tc.cmdline)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseCmdlineMemory(f *testing.F) {
	f.Add("memmap=exactmap memmap=640K@0 memmap=16M$0x40000000 mem=2G")
	f.Add("memmap=0x1%0x2-1+2,4k!8k")
	f.Fuzz(func(t *testing.T, s string) {
		cm, err := parseCmdlineMemory(s)
		if err != nil {
			return
		}
		for _, r := range append(cm.RAM, cm.Kept...) {
			if r.End < r.Start {
				t.Fatalf("range %+v of %q ends before it starts", r, s)
			}
		}
	})
}

// qemuMap is the firmware memory map of a 2 GiB q35 guest under SeaBIOS.
var qemuMap = memmap.Map{
	{Start: 0, End: 0x9fbff, Type: memmap.TypeRAM},
	{Start: 0x9fc00, End: 0x9ffff, Type: memmap.TypeReserved},
	{Start: 0xf0000, End: 0xfffff, Type: memmap.TypeReserved},
	{Start: 0x100000, End: 0x7ffdffff, Type: memmap.TypeRAM},
	{Start: 0x7ffe0000, End: 0x7fffffff, Type: memmap.TypeReserved},
	{Start: 0xb0000000, End: 0xbfffffff, Type: memmap.TypeReserved},
	{Start: 0x100000000, End: 0x17fffffff, Type: memmap.TypeRAM},
}

func TestNewPlacement(t *testing.T) {
	iomem, err := memmap.ParseIomem(strings.NewReader(testIomem))
	if err != nil {
		t.Fatal(err)
	}
	running, _ := parseCmdlineMemory("memmap=16M$0x40000000")
	next, _ := parseCmdlineMemory("memmap=16M$0x40000000 memmap=1M!0x60000000 mem=5G")
	got := newPlacement(qemuMap, iomem, map[string]cmdlineMemory{"running": running, "next": next})
	want := placement{
		RAM: []memmap.Range{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x7ffe0000}, {Start: 0x100000000, End: 0x140000000}},
		Avoid: []memmap.Avoided{
			{Range: memmap.Range{Start: 0, End: 0x1000}, Why: "kept by the running kernel: Reserved (/proc/iomem)"},
			{Range: memmap.Range{Start: 0x30000000, End: 0x40000000}, Why: "crash kernel reservation (/proc/iomem)"},
			{Range: memmap.Range{Start: 0x40000000, End: 0x41000000}, Why: "kept by the running kernel: Reserved (/proc/iomem)"},
			{Range: memmap.Range{Start: 0x40000000, End: 0x41000000}, Why: "kept by memmap= on the next command line"},
			{Range: memmap.Range{Start: 0x60000000, End: 0x60100000}, Why: "kept by memmap= on the next command line"},
			{Range: memmap.Range{Start: 0x40000000, End: 0x41000000}, Why: "kept by memmap= on the running command line"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("newPlacement (-want +got):\n%s", diff)
	}

	exact, _ := parseCmdlineMemory("memmap=exactmap memmap=640K@0 memmap=511M@1M")
	got = newPlacement(qemuMap, nil, map[string]cmdlineMemory{"next": exact})
	if diff := cmp.Diff([]memmap.Range{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x20000000}}, got.RAM); diff != "" {
		t.Errorf("with exactmap, RAM (-want +got):\n%s", diff)
	}
}

func TestBuildBootParams(t *testing.T) {
	le := binary.LittleEndian
	running := make([]byte, zeroPageSize)
	copy(running[0x10:], "screen info")                // past ext_mem_k
	le.PutUint64(running[0x070:], 0xf5a40)             // acpi_rsdp_addr
	copy(running[bpEFIInfo:], "EL64")                  // efi_loader_signature: booted through EFI
	le.PutUint32(running[bpHardwareSubarch:], 1)       // X86_SUBARCH_LGUEST, say
	le.PutUint64(running[bpSetupData:], 0x7f000000)    // the running kernel's setup_data list
	copy(running[bpAPMBIOSInfo:], "apm")               // cleared
	running[0x1e9] = 2                                 // eddbuf_entries, kept
	copy(running[0xd00:], "edd")                       // eddbuf, kept
	le.PutUint32(running[bpRamdiskImage:], 0x12345678) // replaced
	kernel := testimage.Kernel(testimage.KernelOptions{})

	e820 := []memmap.E820Entry{{Addr: 0, Size: 0x9fc00, Type: memmap.E820RAM}, {Addr: 0x100000, Size: 0x7fee0000, Type: memmap.E820RAM}, {Addr: 0x100000000, Size: 0x80000000, Type: memmap.E820RAM}}
	bp, efi, err := buildBootParams(bootParamsInput{
		Running: running, Kernel: kernel, E820: e820,
		InitrdAddr: 0x1_2000_0000, InitrdSize: 0x123456, CmdlineAddr: 0x100000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !efi {
		t.Error("efiDropped = false for a running kernel booted through EFI")
	}
	checks := []struct {
		what string
		got  uint64
		want uint64
	}{
		{"acpi_rsdp_addr", le.Uint64(bp[0x070:]), 0xf5a40},
		{"efi_info", le.Uint64(bp[bpEFIInfo:]), 0},
		{"hardware_subarch", uint64(le.Uint32(bp[bpHardwareSubarch:])), 1},
		{"setup_data", le.Uint64(bp[bpSetupData:]), 0},
		{"apm", uint64(bp[bpAPMBIOSInfo]), 0},
		{"eddbuf_entries", uint64(bp[0x1e9]), 2},
		{"type_of_loader", uint64(bp[bpTypeOfLoader]), loaderTypeKexec},
		{"loadflags", uint64(bp[bpLoadflags]), 0},
		{"version (the new kernel's)", uint64(le.Uint16(bp[0x206:])), 0x020f},
		{"kernel_alignment (the new kernel's)", uint64(le.Uint32(bp[0x230:])), 0x200000},
		{"ramdisk_image", uint64(le.Uint32(bp[bpRamdiskImage:])), 0x20000000},
		{"ext_ramdisk_image", uint64(le.Uint32(bp[bpExtRamdiskImage:])), 1},
		{"ramdisk_size", uint64(le.Uint32(bp[bpRamdiskSize:])), 0x123456},
		{"cmd_line_ptr", uint64(le.Uint32(bp[bpCmdLinePtr:])), 0x100000},
		{"ext_cmd_line_ptr", uint64(le.Uint32(bp[bpExtCmdLinePtr:])), 0},
		{"e820_entries", uint64(bp[bpE820Entries]), 3},
		{"e820[2].addr", le.Uint64(bp[bpE820Table+2*e820EntrySize:]), 0x100000000},
		{"e820[2].size", le.Uint64(bp[bpE820Table+2*e820EntrySize+8:]), 0x80000000},
		{"e820[2].type", uint64(le.Uint32(bp[bpE820Table+2*e820EntrySize+16:])), memmap.E820RAM},
		{"e820[3] (cleared)", le.Uint64(bp[bpE820Table+3*e820EntrySize:]), 0},
		{"alt_mem_k", uint64(le.Uint32(bp[bpAltMemK:])), 0x7ffdffff>>10 - 1024},
		{"ext_mem_k", uint64(le.Uint16(bp[bpExtMemK:])), 0xfc00},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
		}
	}
	if !bytes.HasPrefix(bp[0x10:], []byte("screen info")) || !bytes.HasPrefix(bp[0xd00:], []byte("edd")) {
		t.Error("screen_info or eddbuf of the running kernel not kept")
	}
	// The setup header is the new kernel's, from 0x1f1 to the end its
	// jump at 0x200 gives.
	end := 0x202 + int(kernel[0x201])
	if !bytes.Equal(bp[0x1f1:0x210], kernel[0x1f1:0x210]) || !bytes.Equal(bp[0x214:0x218], kernel[0x214:0x218]) ||
		!bytes.Equal(bp[0x22c:0x23c], kernel[0x22c:0x23c]) || !bytes.Equal(bp[0x240:0x250], kernel[0x240:0x250]) ||
		!bytes.Equal(bp[0x258:end], kernel[0x258:end]) {
		t.Error("setup header not copied from the new kernel")
	}

	if _, _, err := buildBootParams(bootParamsInput{Running: running[:616], Kernel: kernel}); err == nil {
		t.Error("a short running zero page was accepted")
	}
	if _, _, err := buildBootParams(bootParamsInput{Running: running, Kernel: make([]byte, 4096)}); err == nil {
		t.Error("a kernel without HdrS was accepted")
	}
}

func TestLockdownForbidsKexecLoad(t *testing.T) {
	for _, tc := range []struct {
		content string // "-" means no file
		forbid  bool
	}{
		{"-", false},
		{"[none] integrity confidentiality\n", false},
		{"none [integrity] confidentiality\n", true},
		{"none integrity [confidentiality]\n", true},
		{"garbage\n", false},
	} {
		files := map[string]string{}
		if tc.content != "-" {
			files[pathLockdown] = tc.content
		}
		root := fakeTree(t, files)
		err := lockdownForbidsKexecLoad(root + "/" + pathLockdown)
		if (err != nil) != tc.forbid {
			t.Errorf("lockdown %q: err = %v, want forbidden %v", tc.content, err, tc.forbid)
			continue
		}
		if err != nil && (!errors.Is(err, ErrKexecLoadForbidden) || !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "--load=file")) {
			t.Errorf("lockdown %q: err = %v, want ErrKexecLoadForbidden and ErrNotPermitted, pointing at --load=file", tc.content, err)
		}
	}
}

func TestDecompressKernel(t *testing.T) {
	kernel := testimage.Kernel(testimage.KernelOptions{PayloadBytes: 10000})
	got, err := decompressKernel(bytes.NewReader(kernel), int64(len(kernel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckKernelELF(bytes.NewReader(got), int64(len(got))); err != nil {
		t.Fatalf("the decompressed kernel does not check: %v", err)
	}
	k, err := readKernelELF(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Progs) != 1 || k.Progs[0].Paddr != 0x1000000 || k.Entry != 0x1000000+64+56 {
		t.Errorf("ELF = %+v, want one PT_LOAD at 0x1000000 and the entry after the headers", k)
	}
	if _, err := decompressKernel(bytes.NewReader(got), int64(len(got))); err == nil {
		t.Error("an ELF was decompressed as a bzImage")
	}
}

func TestCheckKernelELF(t *testing.T) {
	kernel := testimage.Kernel(testimage.KernelOptions{})
	elfBytes, err := decompressKernel(bytes.NewReader(kernel), int64(len(kernel)))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for _, tc := range []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"not an ELF", func(b []byte) []byte { return kernel }},
		{"truncated segment", func(b []byte) []byte { return b[:len(b)-2] }},
		{"32-bit machine", func(b []byte) []byte { le.PutUint16(b[18:], 3); return b }},
		{"entry outside", func(b []byte) []byte { le.PutUint64(b[24:], 0x5000000); return b }},
	} {
		b := tc.mutate(bytes.Clone(elfBytes))
		err := CheckModule(KernelELF{Kernel: testimage.Digest(kernel), SHA256: testimage.Digest(b), Size: int64(len(b))}.Module(), bytes.NewReader(b))
		if !errors.Is(err, ErrNotKernelELF) || !strings.Contains(err.Error(), "kernel-elf:") {
			t.Errorf("%s: err = %v, want ErrNotKernelELF naming the module", tc.name, err)
		}
	}
}
