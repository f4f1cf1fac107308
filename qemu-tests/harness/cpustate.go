package harness

import (
	"fmt"
	"strings"
)

// CPUState asks QEMU where each vCPU is ("info registers -a"), writes the
// whole dump into the console log and returns one line per vCPU: its
// instruction pointer (RIP, or EIP outside long mode), privilege level,
// whether it is halted, and CR0 and CR3. A failed wait then tells a guest
// spinning in the kexec purgatory or the kernel's decompressor (low
// physical addresses, CR3 of an identity map) from one halted or running
// in the kernel proper. A QEMU that has exited is ErrExited.
func (vm *VM) CPUState() (string, error) {
	select {
	case <-vm.exited:
		return "", fmt.Errorf("QEMU has exited: %w", ErrExited)
	default:
	}
	out, err := vm.Monitor("info registers -a")
	if err != nil {
		return "", err
	}
	vm.console.Logf("info registers -a:\n%s", out)
	return summarizeRegisters(out), nil
}

// summarizeRegisters is CPUState's summary of an "info registers" dump.
func summarizeRegisters(dump string) string {
	var cpus []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			cpus = append(cpus, strings.Join(cur, " "))
		}
		cur = nil
	}
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "CPU#") {
			flush()
			cur = []string{line}
			continue
		}
		for _, f := range strings.Fields(line) {
			for _, k := range []string{"RIP=", "EIP=", "CPL=", "HLT=", "CR0=", "CR3="} {
				if strings.HasPrefix(f, k) {
					cur = append(cur, f)
				}
			}
		}
	}
	flush()
	if len(cpus) == 0 {
		return fmt.Sprintf("no vCPU in QEMU's answer %q", strings.TrimSpace(dump))
	}
	return strings.Join(cpus, "; ")
}
