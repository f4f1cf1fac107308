package bootimage

import "testing"

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
