package preserve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Loop is a loop block device (/dev/loopN) over a range of the kept
// region's device: how a program that maps a file, not a file at an offset,
// gets a preserved area, e.g. QEMU's memory-backend-file, which has no
// offset= property before QEMU 8.2.
type Loop struct {
	// Device is the loop device, root/dev/loopN.
	Device string `json:"device"`
	// Offset and Size are the range of the backing device it maps
	// (sysfs loop/offset and loop/sizelimit; Size 0 is "to the end").
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}

// Maps says whether l maps exactly the area a.
func (l Loop) Maps(a Area) bool { return l.Offset == a.Offset && l.Size == a.Size }

// Loops lists the loop devices whose backing file is dev (root/dev/pmemN,
// as Find returns it), from root/sys/block/loop*/loop/ (root "" is "/"),
// sorted by device. A loop device without a backing file has no loop/
// directory and is not listed.
func Loops(root, dev string) ([]Loop, error) {
	if root == "" {
		root = "/"
	}
	// The kernel names the backing file by its path in the running
	// system: dev without root.
	rel, err := filepath.Rel(root, dev)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("%w: device %s is not under %s", ErrInvalid, dev, root)
	}
	want := "/" + rel
	sys := filepath.Join(root, "sys/block")
	ents, err := os.ReadDir(sys)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("preserve: reading %s: %w", sys, err)
	}
	var out []Loop
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		dir := filepath.Join(sys, e.Name(), "loop")
		b, err := os.ReadFile(filepath.Join(dir, "backing_file"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("preserve: %w", err)
		}
		if strings.TrimSpace(string(b)) != want {
			continue
		}
		l := Loop{Device: filepath.Join(root, "dev", e.Name())}
		for _, f := range []struct {
			name string
			v    *int64
		}{{"offset", &l.Offset}, {"sizelimit", &l.Size}} {
			p := filepath.Join(dir, f.name)
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("preserve: %w", err)
			}
			if *f.v, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil || *f.v < 0 {
				return nil, fmt.Errorf("preserve: %s: %q is not a byte count", p, strings.TrimSpace(string(b)))
			}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Loop) int { return strings.Compare(a.Device, b.Device) })
	return out, nil
}

// loopRange checks that area a lies inside a device of devSize bytes and
// returns the loop offset and size limit that map it.
func loopRange(a Area, devSize int64) (offset, size uint64, err error) {
	if a.Offset < 0 || a.Size <= 0 || a.Offset%BlockSize != 0 || a.Size%BlockSize != 0 || a.Offset > devSize-a.Size {
		return 0, 0, fmt.Errorf("%w: area %q (%d bytes at offset %d) is not inside the %d-byte device", ErrInvalid, a.Name, a.Size, a.Offset, devSize)
	}
	return uint64(a.Offset), uint64(a.Size), nil
}
