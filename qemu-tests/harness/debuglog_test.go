package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDebugLog(t *testing.T) {
	if got, want := DebugLogPath("/l/crash-two-stage-20261125.log"), "/l/crash-two-stage-20261125.qemu.log"; got != want {
		t.Errorf("DebugLogPath = %q, want %q", got, want)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "vm.qemu.log")
	if n := countTripleFaults(p); n != 0 {
		t.Errorf("no debug log: %d triple faults, want 0", n)
	}
	log := "CPU Reset (CPU 0)\nRAX=0\nTriple fault\nCPU Reset (CPU 1)\nTriple fault\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := countTripleFaults(p); n != 2 {
		t.Errorf("%d triple faults, want 2", n)
	}
}

func TestTraceArgs(t *testing.T) {
	if got := traceArgs(""); len(got) != 0 {
		t.Errorf("traceArgs(\"\") = %q, want none", got)
	}
	got := traceArgs("apic_mem_writel, apm_io_write,,")
	want := []string{"-trace", "enable=apic_mem_writel", "-trace", "enable=apm_io_write"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("traceArgs = %q, want %q", got, want)
	}
}

func TestDebugArgs(t *testing.T) {
	t.Setenv(EnvDebug, "")
	t.Setenv(EnvTrace, "")
	if got, want := strings.Join(debugArgs("/l/vm.log"), " "), "-d cpu_reset,guest_errors -D /l/vm.qemu.log"; got != want {
		t.Errorf("debugArgs = %q, want %q", got, want)
	}
	t.Setenv(EnvDebug, "int")
	t.Setenv(EnvTrace, "apic_mem_writel")
	if got, want := strings.Join(debugArgs("/l/vm.log"), " "), "-d cpu_reset,guest_errors,int -D /l/vm.qemu.log -trace enable=apic_mem_writel"; got != want {
		t.Errorf("debugArgs with %s and %s = %q, want %q", EnvDebug, EnvTrace, got, want)
	}
}
