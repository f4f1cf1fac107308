package bootimage

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCleanCmdline(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"newline from /proc", "console=ttyS0 quiet\n", "console=ttyS0 quiet"},
		{"GRUB", "BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=UUID=1234 ro quiet\n", "root=UUID=1234 ro quiet"},
		{"EFI stub and SYSLINUX initrd", `initrd=\EFI\debian\initrd.img console=ttyS0 initrd=/initrd.img`, "console=ttyS0"},
		{"crash image", "console=ttyS0 crashkernel=256M elfcorehdr=0x7b000000 reset_devices", "console=ttyS0 crashkernel=256M"},
		{"crash words after the marker", "console=ttyS0 crashkernel=256M fastreboot.crash nr_cpus=1 irqpoll reset_devices", "console=ttyS0 crashkernel=256M"},
		{"marker before init args", "quiet fastreboot.crash nr_cpus=1 -- single", "quiet -- single"},
		{"nr_cpus without the marker stays", "nr_cpus=1 irqpoll", "nr_cpus=1 irqpoll"},
		{"quoted values", `BOOT_IMAGE="/boot/my kernel" dyndbg="file x.c +p" quiet`, `dyndbg="file x.c +p" quiet`},
		{"quoted whole word", `"BOOT_IMAGE=/a b" x`, "x"},
		{"extra spaces", "  a\t\tb  \n", "a b"},
		{"init args kept verbatim", "BOOT_IMAGE=/k quiet rdinit=/init -- --addr 0.0.0.0:2024  initrd=keep\n", "quiet rdinit=/init -- --addr 0.0.0.0:2024  initrd=keep"},
		{"bare -- at the end", "quiet --", "quiet --"},
		{"-- inside quotes is a word", `x="a -- b" y`, `x="a -- b" y`},
		{"prefix is not a match", "initrdmem=0x1000 BOOT_IMAGEX=1 elfcorehdrx", "initrdmem=0x1000 BOOT_IMAGEX=1 elfcorehdrx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanCmdline(tt.in); got != tt.want {
				t.Errorf("CleanCmdline(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	for _, tc := range []struct {
		in       string
		params   []string
		initArgs string
	}{
		{"  a  b=\"c d\"\te \"f g\"=h\n", []string{"a", `b="c d"`, "e", `"f g"=h`}, ""},
		{"a\x00b\vc\fd", []string{"a", "b", "c", "d"}, ""},
		{"quiet -- single  user \n", []string{"quiet"}, "-- single  user"},
		{"quiet --", []string{"quiet"}, "--"},
		{"quiet --  ", []string{"quiet"}, "--"},
		{"-- x", nil, "-- x"},
		{`x="a -- b" y`, []string{`x="a -- b"`, "y"}, ""},
		{"a --b c", []string{"a", "--b", "c"}, ""},
		{"", nil, ""},
	} {
		params, initArgs := SplitCmdline(tc.in)
		if d := cmp.Diff(tc.params, params); d != "" || initArgs != tc.initArgs {
			t.Errorf("SplitCmdline(%q): init args %q, want %q; params (-want +got):\n%s", tc.in, initArgs, tc.initArgs, d)
		}
		want := strings.Join(append(append([]string(nil), tc.params...), tc.initArgs), " ")
		want = strings.TrimSpace(want)
		if got := JoinCmdline(params, initArgs); got != want {
			t.Errorf("JoinCmdline(SplitCmdline(%q)) = %q, want %q", tc.in, got, want)
		}
	}
}
