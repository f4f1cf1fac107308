package fastreboot

import (
	"testing"

	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/google/go-cmp/cmp"
)

func TestCrashE820(t *testing.T) {
	fw, err := memmap.E820Table(qemuMap)
	if err != nil {
		t.Fatal(err)
	}
	res := memmap.Range{Start: 0x30000000, End: 0x40000000}
	tests := []struct {
		name string
		hdr  memmap.Range
		want []memmap.E820Entry
	}{
		{
			name: "header inside",
			hdr:  memmap.Range{Start: 0x36000000, End: 0x36001000},
			want: []memmap.E820Entry{
				{Addr: 0, Size: 0x9fc00, Type: memmap.E820RAM},
				{Addr: 0x9fc00, Size: 0x400, Type: memmap.E820Reserved},
				{Addr: 0xf0000, Size: 0x10000, Type: memmap.E820Reserved},
				{Addr: 0x30000000, Size: 0x6000000, Type: memmap.E820RAM},
				{Addr: 0x36000000, Size: 0x1000, Type: memmap.E820Reserved},
				{Addr: 0x36001000, Size: 0x9fff000, Type: memmap.E820RAM},
			},
		},
		{
			name: "no header (direct images do not use it)",
			want: []memmap.E820Entry{
				{Addr: 0, Size: 0x9fc00, Type: memmap.E820RAM},
				{Addr: 0x9fc00, Size: 0x400, Type: memmap.E820Reserved},
				{Addr: 0xf0000, Size: 0x10000, Type: memmap.E820Reserved},
				{Addr: 0x30000000, Size: 0x10000000, Type: memmap.E820RAM},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crashE820(fw, res, tt.hdr)
			// The firmware map's ranges above 2 GiB that are not RAM follow
			// unchanged; compare the part below.
			var low []memmap.E820Entry
			for _, e := range got {
				if e.Addr < 0x7ffdf000 {
					low = append(low, e)
				}
			}
			if d := cmp.Diff(tt.want, low); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			for _, e := range got[len(low):] {
				if e.Type == memmap.E820RAM {
					t.Errorf("RAM outside the reservation and the first MiB: %+v", e)
				}
			}
		})
	}
}

func TestTrampolineFor(t *testing.T) {
	code := trampolineFor(0x77000000, 0x7c8f2000)
	want := []byte{
		0x48, 0x8b, 0x35, 0x11, 0, 0, 0, // mov 0x11(%rip), %rsi
		0x48, 0x8b, 0x05, 0x02, 0, 0, 0, // mov 0x02(%rip), %rax
		0xff, 0xe0, // jmp *%rax
		0x00, 0x00, 0x00, 0x77, 0, 0, 0, 0, // kernel entry
		0x00, 0x20, 0x8f, 0x7c, 0, 0, 0, 0, // boot_params
	}
	if d := cmp.Diff(want, code); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
