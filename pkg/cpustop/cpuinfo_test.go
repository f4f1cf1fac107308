package cpustop

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUInfo(t *testing.T) {
	arm64 := `processor	: 0
BogoMIPS	: 48.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd03
CPU revision	: 4

processor	: 1
BogoMIPS	: 48.00
`
	for _, tc := range []struct {
		name    string
		in      string
		want    []cpuInfo
		wantErr string
	}{
		{
			name: "qemu x86 -smp 2",
			in:   qemuCPUInfo(0, 0, 2) + qemuCPUInfo(1, 1, 2),
			want: []cpuInfo{{0, 0, 0}, {1, 1, 1}},
		},
		{
			name: "x86 with cpu2 offline and sparse APIC ids",
			in:   qemuCPUInfo(0, 0, 4) + qemuCPUInfo(1, 2, 4) + qemuCPUInfo(3, 6, 4),
			want: []cpuInfo{{0, 0, 0}, {1, 2, 2}, {3, 6, 6}},
		},
		{
			name: "apicid differs from initial apicid",
			in:   "processor\t: 0\napicid\t\t: 16\ninitial apicid\t: 0\n",
			want: []cpuInfo{{0, 16, 0}},
		},
		{
			name: "arm64 has no APIC",
			in:   arm64,
			want: []cpuInfo{{0, -1, -1}, {1, -1, -1}},
		},
		{name: "empty", in: "", want: nil},
		{name: "bad processor", in: "processor\t: zero\n", wantErr: "line 1: processor"},
		{name: "duplicate processor", in: "processor\t: 0\n\nprocessor\t: 0\n", wantErr: "listed twice"},
		{name: "negative apicid", in: "processor\t: 0\napicid\t\t: -1\n", wantErr: "line 2: apicid"},
		{name: "apicid first", in: "apicid\t\t: 0\nprocessor\t: 0\n", wantErr: "before any processor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPUInfo(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseCPUInfo: err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseCPUInfo (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseCPUInfo(f *testing.F) {
	f.Add(qemuCPUInfo(0, 0, 2) + qemuCPUInfo(1, 1, 2))
	f.Add("processor\t: 0\napicid\t\t: 16\ninitial apicid\t: 0\n")
	f.Add("processor : 1\n\nprocessor : 1\n")
	f.Add("apicid: 4294967296\n")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := parseCPUInfo(strings.NewReader(s))
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, c := range infos {
			if seen[c.Processor] || c.Processor < 0 || c.APICID < -1 || c.InitialAPICID < -1 {
				t.Fatalf("parseCPUInfo(%q) = %+v", s, infos)
			}
			seen[c.Processor] = true
		}
	})
}
