//go:build !linux

package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/crashpath"
)

var errNoInit = errors.New("fastreboot runs as init only on Linux")

// hostInitSystem fails every step: only Linux has the crash path.
func hostInitSystem() initSystem {
	return initSystem{
		mount:    func(source, target, fstype string) error { return fmt.Errorf("mount %s: %w", target, errNoInit) },
		recover:  crashpath.Recover,
		kexec:    func(context.Context) error { return errNoInit },
		firmware: func() error { return errNoInit },
		sleep:    sleepFor,
	}
}

func isInit() bool { return false }
