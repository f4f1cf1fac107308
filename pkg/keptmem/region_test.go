package keptmem

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// qemu2G is the firmware map of the QEMU q35 reference guest with 2 GiB
// (the same as pkg/memmap's test fixture).
var qemu2G = memmap.Map{
	{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM},
	{Start: 0x9fc00, End: 0x9ffff, Type: memmap.TypeReserved},
	{Start: 0xf0000, End: 0xfffff, Type: memmap.TypeReserved},
	{Start: 0x100000, End: 0x7ffdefff, Type: memmap.TypeRAM},
	{Start: 0x7ffdf000, End: 0x7fffffff, Type: memmap.TypeReserved},
	{Start: 0xb0000000, End: 0xbfffffff, Type: memmap.TypeReserved},
	{Start: 0xfed1c000, End: 0xfed1ffff, Type: memmap.TypeReserved},
	{Start: 0xfeffc000, End: 0xfeffffff, Type: memmap.TypeReserved},
	{Start: 0xfffc0000, End: 0xffffffff, Type: memmap.TypeReserved},
}

// qemu6G is the same guest with 6 GiB: 2 GiB below the PCI hole, 4 GiB
// above 4 GiB, given as two adjacent entries.
var qemu6G = append(memmap.Map{}, append(qemu2G,
	memmap.Entry{Start: 0x100000000, End: 0x17fffffff, Type: memmap.TypeRAM},
	memmap.Entry{Start: 0x180000000, End: 0x1ffffffff, Type: memmap.TypeRAM},
)...)

func TestPlan(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		fw    memmap.Map
		size  uint64
		avoid []memmap.Range
		want  Region
		err   error
		msg   string
	}{
		{name: "above 4 GiB, at the top of joined entries", fw: qemu6G, size: 256 * mib,
			want: Region{Start: 0x200000000 - 256*mib, Size: 256 * mib}},
		{name: "avoid the top", fw: qemu6G, size: 256 * mib,
			avoid: []memmap.Range{{Start: 0x1f0000000, End: 0x200000000}},
			want:  Region{Start: 0x1f0000000 - 256*mib, Size: 256 * mib}},
		{name: "rooms between unaligned avoided ranges shrink to 2 MiB", fw: qemu6G, size: 2 * mib,
			avoid: []memmap.Range{{Start: 0x1ff000000, End: 0x200000000}, {Start: 0x1fe000000, End: 0x1fe001000}},
			want:  Region{Start: 0x1ff000000 - 2*mib, Size: 2 * mib}},
		{name: "below 4 GiB: the highest aligned start", fw: qemu2G, size: 64 * mib,
			want: Region{Start: 0x7fe00000 - 64*mib, Size: 64 * mib}},
		{name: "below 4 GiB, away from the crash kernel", fw: qemu2G, size: 64 * mib,
			avoid: []memmap.Range{{Start: 0x60000000, End: 0x80000000}},
			want:  Region{Start: 0x60000000 - 64*mib, Size: 64 * mib}},
		{name: "too large above, fits below", fw: qemu6G, size: 1536 * mib,
			avoid: []memmap.Range{{Start: 0x100000000, End: 0x1c0000000}},
			want:  Region{Start: 0x7fe00000 - 1536*mib, Size: 1536 * mib}},
		{name: "no room names the largest", fw: qemu2G, size: 4096 * mib, err: ErrNoRoom, msg: "largest 2 MiB-aligned System RAM outside the avoided ranges is 2044M at 0x200000-0x7fe00000"},
		{name: "no RAM", fw: memmap.Map{{Start: 0, End: 0xfffff, Type: memmap.TypeReserved}}, size: 2 * mib, err: ErrNoRoom, msg: "no 2 MiB-aligned"},
		{name: "size 0", fw: qemu2G, size: 0, msg: "size is 0"},
		{name: "unaligned size", fw: qemu2G, size: 3 * mib, msg: "round it up to 4M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Plan(tc.fw, tc.size, tc.avoid)
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.err != nil && !errors.Is(err, tc.err)) {
					t.Fatalf("Plan = %v, %v; want an error (%v) saying %q", got, err, tc.err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Plan (-want +got):\n%s", d)
			}
			if got.Start%Align != 0 || got.Size%Align != 0 {
				t.Errorf("%v is not 2 MiB aligned", got)
			}
			for _, a := range tc.avoid {
				if got.Range().Overlaps(a) {
					t.Errorf("%v overlaps the avoided %v", got, a)
				}
			}
		})
	}
}

func TestCmdlineRoundTrip(t *testing.T) {
	for _, r := range []Region{
		{Start: 0x1f0000000, Size: 256 << 20},
		{Start: 0x40000000, Size: 1 << 30},
		{Start: 0x200000, Size: 6 << 20},
	} {
		words := r.CmdlineWords()
		line := "console=ttyS0 memmap=exactmap memmap=2042M@0x200000 " + strings.Join(words, " ") + " memmap=1M$0x100000 -- init args memmap=2M!0x0"
		got, ok, err := ParseCmdline(line)
		if err != nil || !ok || got != r {
			t.Errorf("ParseCmdline(%q) = %v, %v, %v; want %v", line, got, ok, err, r)
		}
	}
	if w := (Region{Start: 0x1f0000000, Size: 256 << 20}).CmdlineWords(); !cmp.Equal(w, []string{"memmap=256M!0x1f0000000"}) {
		t.Errorf("CmdlineWords = %q", w)
	}
}

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Region
		ok   bool
		msg  string
	}{
		{line: "quiet"},
		{line: "memmap=1M$0x100000 memmap=exactmap"},
		{line: "memmap=2M!4M", want: Region{Start: 4 << 20, Size: 2 << 20}, ok: true},
		{line: "memmap=1M$0x100000,64M!0x100000000", want: Region{Start: 1 << 32, Size: 64 << 20}, ok: true},
		{line: "memmap=2M!4M memmap=4M!8M", msg: "two memmap=SIZE!START regions"},
		{line: "memmap=2M!4M,4M!8M", msg: "two memmap=SIZE!START regions"},
		{line: "memmap=2M!4Mjunk", msg: "not memmap=SIZE!START"},
		{line: "memmap=0!4M", msg: "size is 0"},
		{line: "memmap=1M!4M", msg: "multiples of 2 MiB"},
		{line: "memmap=2M!0x100001", msg: "multiples of 2 MiB"},
		{line: "-- memmap=2M!4M"},
	} {
		got, ok, err := ParseCmdline(tc.line)
		if tc.msg != "" {
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseCmdline(%q) = %v, %v, %v; want an error saying %q", tc.line, got, ok, err, tc.msg)
			}
			continue
		}
		if err != nil || ok != tc.ok || got != tc.want {
			t.Errorf("ParseCmdline(%q) = %v, %v, %v; want %v, %v", tc.line, got, ok, err, tc.want, tc.ok)
		}
	}
}

func TestInheritCmdline(t *testing.T) {
	running := "BOOT_IMAGE=/vmlinuz root=/dev/vda memmap=256M!0x1f0000000 crashkernel=512M"
	for _, tc := range []struct {
		next, running, want, msg string
	}{
		{next: "console=ttyS0", running: running, want: "console=ttyS0 memmap=256M!0x1f0000000"},
		{next: "console=ttyS0 -- single", running: running, want: "console=ttyS0 memmap=256M!0x1f0000000 -- single"},
		{next: "memmap=exactmap memmap=2042M@0x200000", running: running, want: "memmap=exactmap memmap=2042M@0x200000 memmap=256M!0x1f0000000"},
		{next: "console=ttyS0 memmap=64M!0x100000000", running: running, want: "console=ttyS0 memmap=64M!0x100000000"},
		{next: "console=ttyS0", running: "quiet", want: "console=ttyS0"},
		{next: "console=ttyS0", running: "memmap=1M!0", want: "console=ttyS0", msg: "running command line"},
		{next: "memmap=2M!4M memmap=2M!8M", running: running, want: "memmap=2M!4M memmap=2M!8M", msg: "two"},
	} {
		got, err := InheritCmdline(tc.next, tc.running)
		if got != tc.want || (tc.msg == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("InheritCmdline(%q, %q) = %q, %v; want %q, error saying %q", tc.next, tc.running, got, err, tc.want, tc.msg)
		}
		if err == nil {
			if again, _ := InheritCmdline(got, tc.running); again != got {
				t.Errorf("InheritCmdline is not idempotent: %q -> %q", got, again)
			}
		}
	}
}
