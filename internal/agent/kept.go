package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
)

// keptModules are the modules that turn a kept region (memmap=SIZE!START,
// legacy persistent memory) into /dev/pmemN on Debian's kernel; their
// dependencies (libnvdimm, nd_btt) come with them from modules.dep.
var keptModules = []string{"nd_e820", "nd_pmem"}

// ensureKeptDevice makes sure the kept region the running command line
// keeps has its device before Resume looks for it: when Root/proc/cmdline
// keeps a region and no /dev/pmemN holds it, it loads nd_e820 and nd_pmem
// (opts.Pstore.Modules, nil: finit_module(2)) and waits up to wait for the
// device. It returns what it did, for the log; an error when the region is
// unreadable or the device did not appear (Resume then records why the
// kept modules were not adopted, and they are read from storage).
func ensureKeptDevice(opts Options, wait time.Duration) (string, error) {
	root := opts.Root
	l, ok, err := keptmem.RunningLayout(root)
	if err != nil || !ok {
		return "", err
	}
	dev, err := keptmem.FindDevice(root, l.Region)
	if err == nil {
		return "kept region " + l.Region.String() + " on " + dev, nil
	}
	if !errors.Is(err, keptmem.ErrNoDevice) {
		return "", err
	}
	loaded, lerr := crashhandler.LoadModules(root, opts.Pstore.Modules, keptModules...)
	if lerr != nil {
		return "", fmt.Errorf("kept region %s: no device, and loading %s: %w", l.Region, strings.Join(keptModules, ", "), lerr)
	}
	// The nd bus probes the region as the modules load; devtmpfs makes
	// the node.
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if dev, err = keptmem.FindDevice(root, l.Region); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("kept region %s: loaded %s, still: %w", l.Region, strings.Join(loaded, ", "), err)
	}
	return fmt.Sprintf("kept region %s on %s (loaded %s)", l.Region, dev, strings.Join(loaded, ", ")), nil
}
