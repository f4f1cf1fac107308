package harness

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill QEMU when the test process dies, so a
// killed `go test` leaves no VM behind.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
