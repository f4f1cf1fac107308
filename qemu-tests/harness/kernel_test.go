package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeKernelDir lays out what scripts/fetch-kernel.sh leaves behind.
func fakeKernelDir(t *testing.T, complete bool) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "boot", "vmlinuz-6.1.0-9-amd64"), "bzImage")
	writeFile(t, filepath.Join(dir, "lib", "modules", "6.1.0-9-amd64", "modules.dep"), "")
	if complete {
		writeFile(t, filepath.Join(dir, ".complete"), "")
	}
	return dir
}

func TestFindKernel(t *testing.T) {
	pkg := fakeKernelDir(t, true)
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(pkg, filepath.Join(cache, "kernel", "current")); err != nil {
		t.Fatal(err)
	}
	kmods := filepath.Join(pkg, "lib", "modules", "6.1.0-9-amd64")
	want := &Kernel{Vmlinuz: filepath.Join(cache, "kernel", "current", "boot", "vmlinuz-6.1.0-9-amd64"), Version: "6.1.0-9-amd64",
		ModulesDir: filepath.Join(cache, "kernel", "current", "lib", "modules", "6.1.0-9-amd64")}

	for _, tt := range []struct {
		name    string
		env     map[string]string
		want    *Kernel
		wantErr error
	}{
		{name: "cache", env: map[string]string{EnvCache: cache}, want: want},
		{name: "empty cache", env: map[string]string{EnvCache: t.TempDir()}, wantErr: ErrNoKernel},
		{
			name: "env with modules next to it",
			env:  map[string]string{EnvKernel: filepath.Join(pkg, "boot", "vmlinuz-6.1.0-9-amd64")},
			want: &Kernel{Vmlinuz: filepath.Join(pkg, "boot", "vmlinuz-6.1.0-9-amd64"), Version: "6.1.0-9-amd64", ModulesDir: kmods},
		},
		{
			name: "env with FASTREBOOT_KMODS",
			env:  map[string]string{EnvKernel: filepath.Join(pkg, "boot", "vmlinuz-6.1.0-9-amd64"), EnvKmods: kmods + "/"},
			want: &Kernel{Vmlinuz: filepath.Join(pkg, "boot", "vmlinuz-6.1.0-9-amd64"), Version: "6.1.0-9-amd64", ModulesDir: kmods + "/"},
		},
		{name: "env missing file", env: map[string]string{EnvKernel: filepath.Join(pkg, "nope")}, wantErr: ErrNoKernel},
		{name: "env bzImage without version", env: map[string]string{EnvKernel: filepath.Join(pkg, "boot", "vmlinuz-6.1.0-9-amd64") + "x"}, wantErr: ErrNoKernel},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvKernel, EnvKmods, EnvCache} {
				t.Setenv(k, tt.env[k])
			}
			got, err := FindKernel()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FindKernel() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FindKernel() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKernelFromDirIncomplete(t *testing.T) {
	if _, err := KernelFromDir(fakeKernelDir(t, false)); !errors.Is(err, ErrNoKernel) {
		t.Errorf("KernelFromDir of an unfinished download = %v, want ErrNoKernel", err)
	}
}

func TestRequired(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "1": true, "yes": true} {
		t.Setenv(EnvRequireQEMU, v)
		if got := Required(); got != want {
			t.Errorf("Required() with %s=%q = %v, want %v", EnvRequireQEMU, v, got, want)
		}
	}
}

func TestCheckQEMUMissing(t *testing.T) {
	t.Setenv(EnvQEMU, "/nonexistent/qemu-system-x86_64")
	err := CheckQEMU()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/qemu-system-x86_64") || !strings.Contains(err.Error(), "install-deps.sh") {
		t.Errorf("CheckQEMU() = %v, want it to name the missing binary and the install script", err)
	}
}

func TestQEMUArgs(t *testing.T) {
	t.Setenv(EnvQEMU, "")
	t.Setenv(EnvAccel, "")
	got := Options{
		Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Cmdline: "quiet",
		Disks:    []Disk{{Path: "/d/a,b.img", ReadOnly: true}, {Path: "/d/boot.img", BootOrder: 1}},
		CPUModel: "max", ExtraArgs: []string{"-s"},
	}.QEMUArgs()
	want := []string{DefaultQEMU,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "q35", "-accel", "tcg,thread=single", "-m", "2048", "-smp", "4",
		"-serial", "stdio", "-cpu", "max", "-no-reboot",
		"-kernel", "/k/vmlinuz", "-append", "console=ttyS0 panic=-1 quiet",
		"-initrd", "/k/initrd",
		"-drive", "file=/d/a,,b.img,if=none,id=disk0,format=raw,cache=unsafe,readonly=on",
		"-device", "virtio-blk-pci,drive=disk0",
		"-drive", "file=/d/boot.img,if=none,id=disk1,format=raw,cache=unsafe",
		"-device", "virtio-blk-pci,drive=disk1,bootindex=0",
		"-s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("QEMUArgs (-want +got):\n%s", diff)
	}
	t.Setenv(EnvAccel, "kvm")
	got = Options{MemoryMB: 512, CPUs: 1, AllowReboot: true, Kernel: "k", NoDefaultCmdline: true, Cmdline: "x"}.QEMUArgs()
	joined := strings.Join(got, " ")
	for _, w := range []string{"-accel kvm", "-m 512", "-smp 1", "-append x"} {
		if !strings.Contains(joined, w) {
			t.Errorf("QEMUArgs = %q, want %q in it", joined, w)
		}
	}
	if strings.Contains(joined, "-no-reboot") {
		t.Errorf("QEMUArgs = %q, want no -no-reboot with AllowReboot", joined)
	}
	if got := strings.Join(Options{MaxCPUs: CrashVMMaxCPUs}.QEMUArgs(), " "); !strings.Contains(got, "-smp 4,maxcpus=16 ") {
		t.Errorf("QEMUArgs with MaxCPUs = %q, want -smp 4,maxcpus=16", got)
	}
	if got := strings.Join(Options{CPUs: 8, MaxCPUs: 8}.QEMUArgs(), " "); !strings.Contains(got, "-smp 8 ") {
		t.Errorf("QEMUArgs with MaxCPUs = CPUs: %q, want a plain -smp 8", got)
	}
}
