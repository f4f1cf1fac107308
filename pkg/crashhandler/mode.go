package crashhandler

import "fmt"

// Mode is the recovery shape of the crash image. Both shapes ran on Debian's
// 6.1 kernel (docs/kernel-facts.md, Recovery modes).
type Mode string

const (
	// ModeTwoStage (the default): the crash image is the production kernel
	// and initrd with reset_devices irqpoll. It runs inside the
	// reservation, out of reach of DMA still in flight from the crashed
	// kernel's devices, takes back the CPUs the panic stopped (it brings
	// every CPU up, see twoStageWords), keeps the evidence, then kexecs the
	// production image normally with the full memory map
	// (ProductionCmdline). Costs a second kernel boot; needs a reservation
	// large enough to load the image again.
	ModeTwoStage Mode = "two-stage"
	// ModeDirect: the crash image gets the full memory map
	// (memmap=exactmap ...) and all CPUs, and becomes the production system
	// in one boot. Faster and needs a small reservation, but the crashed
	// kernel's devices may still DMA into memory the new kernel now uses:
	// unsafe on bare metal without an IOMMU, fine in VMs. The crashed
	// kernel's memory becomes free RAM, so evidence comes from pstore
	// first (a vmcore read is best effort). Until it wakes them, the CPUs
	// the panic stopped sit halted in that memory too (an upstream kexec
	// leaves its stopped CPUs in the old kernel's text the same way).
	ModeDirect Mode = "direct"
)

func (m Mode) valid() error {
	switch m {
	case ModeTwoStage, ModeDirect:
		return nil
	}
	return fmt.Errorf("unknown crash mode %q (want %q or %q)", string(m), ModeTwoStage, ModeDirect)
}
