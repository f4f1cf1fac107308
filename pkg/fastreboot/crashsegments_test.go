package fastreboot

import (
	"testing"

	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/google/go-cmp/cmp"
)

func TestCrashE820(t *testing.T) {
	fw, err := e820Table(qemuMap)
	if err != nil {
		t.Fatal(err)
	}
	res := memmap.Range{Start: 0x30000000, End: 0x40000000}
	tests := []struct {
		name string
		hdr  memmap.Range
		want []e820Entry
	}{
		{
			name: "header inside",
			hdr:  memmap.Range{Start: 0x36000000, End: 0x36001000},
			want: []e820Entry{
				{0, 0x9fc00, memmap.E820RAM},
				{0x9fc00, 0x400, memmap.E820Reserved},
				{0xf0000, 0x10000, memmap.E820Reserved},
				{0x30000000, 0x6000000, memmap.E820RAM},
				{0x36000000, 0x1000, memmap.E820Reserved},
				{0x36001000, 0x9fff000, memmap.E820RAM},
			},
		},
		{
			name: "no header (direct images do not use it)",
			want: []e820Entry{
				{0, 0x9fc00, memmap.E820RAM},
				{0x9fc00, 0x400, memmap.E820Reserved},
				{0xf0000, 0x10000, memmap.E820Reserved},
				{0x30000000, 0x10000000, memmap.E820RAM},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crashE820(fw, res, tt.hdr)
			// The firmware map's ranges above 2 GiB that are not RAM follow
			// unchanged; compare the part below.
			var low []e820Entry
			for _, e := range got {
				if e.Addr < 0x7ffdf000 {
					low = append(low, e)
				}
			}
			if d := cmp.Diff(tt.want, low, cmp.AllowUnexported(e820Entry{})); d != "" {
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
