package cpustop

import (
	"fmt"
	"strconv"
)

// Mode is a crash recovery mode (see FINDINGS.md, crash path).
type Mode string

const (
	// ModeTwoStage: the crash image is a one-CPU kdump-like stage that
	// later kexecs the production image.
	ModeTwoStage Mode = "two-stage"
	// ModeDirect: the crash image is the production kernel with every
	// CPU and the full memory map.
	ModeDirect Mode = "direct"
)

// CrashCmdline returns the CPU words for the crash image's command line:
//
//   - two-stage: "nr_cpus=1" (the crash stage brings up no other CPU) and
//     "disable_cpu_apicid=<topo.BootAPICID>";
//   - direct: "disable_cpu_apicid=<topo.BootAPICID>".
//
// A panic can start the crash kernel on any CPU; that CPU becomes the new
// kernel's boot CPU, and waking the real boot CPU (BSP) with INIT resets or
// hangs some machines. disable_cpu_apicid keeps the BSP out. What Linux
// 6.1 does with it (arch/x86/kernel/apic/apic.c): early_param
// "disable_cpu_apicid" is read with get_option() (decimal or 0x-hex), and
// generic_processor_info() refuses to register the CPU whose firmware APIC
// id equals it ("APIC: Disabling requested cpu. Processor %d/0x%x
// ignored.") unless it is the CPU doing the boot (the test excludes
// read_apic_id(), the booting CPU's own id). So a crash kernel that starts on the BSP loses nothing;
// one that starts on a secondary never sends INIT to the BSP.
// kernel-parameters.txt asks for the "initial APIC ID", hence BootAPICID
// comes from "initial apicid".
//
// The cost, in direct mode after a panic on a secondary: the recovered
// kernel runs without the BSP, and Compare reports it missing (correctly:
// only a firmware reset brings it back). The same hazard applies to the
// kernel that two-stage kexecs next, which also starts on that secondary.
// A 2023 patch of the x86 topology rework ("x86/cpu: Detect real BSP on
// crash kernels", arch/x86/kernel/cpu/topology.c) removes the parameter:
// a kernel carrying it leaves out the lowest APIC id by itself whenever it
// boots on another CPU, and treats the word as unknown (passed on to init's
// environment, harmless). Which release took it was not checked here.
//
// When the APIC id is unknown (topo.BootAPICID < 0: not x86, or CPU 0 not
// in /proc/cpuinfo) the disable_cpu_apicid word is left out.
func CrashCmdline(mode Mode, topo Topology) ([]string, error) {
	words := []string{}
	switch mode {
	case ModeTwoStage:
		words = append(words, "nr_cpus=1")
	case ModeDirect:
	default:
		return nil, fmt.Errorf("%w %q (want %q or %q)", ErrUnknownMode, mode, ModeTwoStage, ModeDirect)
	}
	if topo.BootAPICID >= 0 {
		words = append(words, "disable_cpu_apicid="+strconv.Itoa(topo.BootAPICID))
	}
	return words, nil
}
