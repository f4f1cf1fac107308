package cli

import (
	"context"
	"fmt"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"golang.org/x/sys/unix"

	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// hostInitSystem is the real kernel: mount(2), crashpath.Recover, the kexec
// reboot of a fastreboot.Machine and reboot(LINUX_REBOOT_CMD_RESTART).
func hostInitSystem() initSystem {
	return initSystem{
		mount: func(source, target, fstype string) error {
			if err := unix.Mount(source, target, fstype, 0, ""); err != nil && err != unix.EBUSY {
				return fmt.Errorf("mount(%q, %q, %q): %w", source, target, fstype, err)
			}
			return nil
		},
		recover: crashpath.Recover,
		kexec: func(ctx context.Context) error {
			return fastreboot.New(nil, fastreboot.Options{}).Reboot(ctx, fastreboot.RebootOptions{})
		},
		firmware: func() error {
			kexecsys.Sync()
			return kexecsys.Reboot(false)
		},
		sleep: sleepFor,
	}
}

// isInit reports whether this process is PID 1.
func isInit() bool { return unix.Getpid() == 1 }
