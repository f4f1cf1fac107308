//go:build !linux

package crashhandler

import (
	"errors"
	"fmt"
	"os"
)

var errLinuxOnly = errors.New("Linux only")

// KernelModules loads modules with finit_module(2), on Linux only.
type KernelModules struct{}

// LoadModule implements ModuleLoader; outside Linux it fails.
func (KernelModules) LoadModule(f *os.File, params string) error {
	return fmt.Errorf("loading module %s: finit_module: %w", f.Name(), errLinuxOnly)
}

func mountPstore(target string) error {
	return fmt.Errorf("mount(pstore, %s): %w", target, errLinuxOnly)
}
