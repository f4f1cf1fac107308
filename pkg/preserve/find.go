package preserve

import (
	"fmt"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
)

// Location is where the running system's areas are.
type Location struct {
	// Device is the kept region's block device (root/dev/pmemN).
	Device string `json:"device"`
	// Layout is the region and how it is shared.
	Layout keptmem.Layout `json:"layout"`
}

// Find reads the running command line (root/proc/cmdline; root "" is "/")
// and finds the device of its areas part. An error wraps ErrNoAreas when
// the line keeps no areas (no region, or no fastreboot.preserve= word); a
// preserve word without a region is keptmem.ParseLayout's error; no device
// for the region wraps keptmem.ErrNoDevice.
func Find(root string) (Location, error) {
	if root == "" {
		root = "/"
	}
	p := filepath.Join(root, "proc/cmdline")
	l, ok, err := keptmem.RunningLayout(root)
	switch {
	case err != nil:
		return Location{}, fmt.Errorf("preserve: %w", err)
	case !ok:
		return Location{}, fmt.Errorf("%w: %s keeps no memmap=SIZE!START region", ErrNoAreas, p)
	case l.AreasSize == 0:
		return Location{}, fmt.Errorf("%w: %s keeps the region %s but has no %s=SIZE word giving areas a part of it", ErrNoAreas, p, l.Region, keptmem.PreserveKey)
	}
	dev, err := keptmem.FindDevice(root, l.Region)
	if err != nil {
		return Location{}, fmt.Errorf("preserve: %w", err)
	}
	return Location{Device: dev, Layout: l}, nil
}
