package crashhandler_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// How large must crashkernel= be? Debian 6.1's kernel (init_size 63.6 MiB)
// with a 14 MiB initrd.
func ExampleRequiredReservation() {
	img := crashhandler.ImageSize{KernelBytes: 8247232, InitrdBytes: 14 << 20, KernelInitSize: 0x3f98000, KernelAlign: 2 << 20}
	for _, m := range []crashhandler.Mode{crashhandler.ModeTwoStage, crashhandler.ModeDirect} {
		s := crashhandler.RequiredReservation(img, m)
		fmt.Printf("%s: %d MiB\n", m, s.Total>>20)
	}
	// Output:
	// two-stage: 320 MiB
	// direct: 112 MiB
}

// The crash kernel's command line and, in the crash kernel, the command line
// of the production kernel it starts next.
func ExampleCrashCmdline() {
	prod := "console=ttyS0 crashkernel=320M"
	crash := crashhandler.CrashCmdline(prod, crashhandler.ModeTwoStage, crashhandler.CmdlineOptions{})
	fmt.Println(crash)

	// In the crash kernel, /proc/cmdline starts with what the kernel added.
	mm := memmap.Map{{Start: 0, End: 0x7fffffff, Type: memmap.TypeRAM}}
	fmt.Println(crashhandler.ProductionCmdline("elfcorehdr=0x7f000000 "+crash, mm))
	// Output:
	// console=ttyS0 fastreboot.crash=two-stage reset_devices irqpoll panic=10 fastreboot.orig=crashkernel%3D320M
	// console=ttyS0 crashkernel=320M memmap=exactmap memmap=2G@0x0
}

// Arming the crash path on the running system (needs root and a
// crashkernel= reservation).
func ExampleArm() {
	kernel, err := os.Open("/boot/vmlinuz")
	if err != nil {
		log.Fatal(err)
	}
	initrd, err := os.Open("/boot/initrd.img")
	if err != nil {
		log.Fatal(err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	st, err := crashhandler.Arm(crashhandler.Image{
		Kernel:  kernel,
		Initrd:  initrd,
		Cmdline: strings.TrimSpace(string(cmdline)),
	}, crashhandler.Options{Mode: crashhandler.ModeTwoStage})
	var re *crashhandler.ReservationError
	switch {
	case errors.As(err, &re):
		log.Fatalf("reserve %d MiB: %v", re.Need.Total>>20, err)
	case errors.Is(err, crashhandler.ErrNotPermitted):
		log.Fatal(err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("armed", st.Mode, st.ImageBytes, "bytes")
}

// First thing in the crash kernel: keep what the crashed kernel left.
func ExampleSaveEvidence() {
	ev, err := crashhandler.SaveEvidence("/run/fastreboot/crash", crashhandler.EvidenceOptions{})
	if errors.Is(err, crashhandler.ErrNoVmcore) {
		return // not a crash kernel
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s crashed at %s on CPU %d: %s\n", ev.KernelRelease, ev.Time, ev.CPU, ev.Reason)
}
