package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func hostSystem() system {
	return system{
		release: func() (string, error) {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return "", err
			}
			return unix.ByteSliceToString(u.Release[:]), nil
		},
		loadModule: finitModule,
		lookPath:   exec.LookPath,
		startBg: func(c *exec.Cmd) error {
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			return c.Start()
		},
		sleep: sleepCtx,
		mount: func(dev, target, fstype string) error {
			return unix.Mount(dev, target, fstype, 0, "")
		},
	}
}

// finitModule loads a module with finit_module(2); a module that is already
// loaded counts as loaded.
// Its parameters come from the kernel command line (MODULE.PARAM=VALUE
// words), as modprobe passes them: the kernel itself applies such words only
// to built-in modules.
func finitModule(f *os.File) error {
	err := unix.FinitModule(int(f.Fd()), cmdlineParams(f.Name()), 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return &os.SyscallError{Syscall: "finit_module " + f.Name(), Err: err}
	}
	return nil
}

// releaseTTY drops the controlling terminal with TIOCNOTTY. As session
// leader we get SIGHUP for it (sent to our foreground process group): ignore
// it.
func releaseTTY() error {
	signal.Ignore(syscall.SIGHUP)
	f, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil // no controlling terminal: nothing to release
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TIOCNOTTY, 0); err != nil {
		return &os.SyscallError{Syscall: "ioctl TIOCNOTTY", Err: err}
	}
	return nil
}

// cmdlineParams returns the MODULE.PARAM=VALUE words of /proc/cmdline for
// the module file path, as "PARAM=VALUE ...".
func cmdlineParams(path string) string {
	name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".ko"), "-", "_")
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	var params []string
	for _, w := range strings.Fields(string(b)) {
		if p, ok := strings.CutPrefix(w, name+"."); ok {
			params = append(params, p)
		}
	}
	return strings.Join(params, " ")
}
