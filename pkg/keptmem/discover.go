package keptmem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// pmemFiles returns the files that describe the block device name (e.g.
// "pmem0") under root: its size in 512-byte sectors, and the file holding
// its physical start in hex (which may be missing), and the device node.
// The sysfs layout of nd_pmem's namespaces is kept here alone: on Debian's
// 6.1, /sys/block/pmem0 links into the namespace (.../e820_pmem/ndbus0/
// region0/namespace0.0/block/pmem0), so device/resource is the
// namespace's start ("0x40000000"), and size counts 512-byte sectors
// (docs/kernel-facts.md, Kept memory region).
func pmemFiles(root, name string) (size, resource, node string) {
	return filepath.Join(root, "sys/block", name, "size"),
		filepath.Join(root, "sys/block", name, "device/resource"),
		filepath.Join(root, "dev", name)
}

// FindDevice returns the path of the block device that holds r: among
// root/sys/block/pmem*, the one whose size (512-byte sectors) is r.Size and
// whose start (its device/resource file) is r.Start. When a device has no
// resource file, its size alone decides, and only if root/proc/iomem lists
// r as "Persistent Memory (legacy)" and no other pmem device has that
// size. root is "" or "/" for the running system; the path returned is
// root/dev/pmemN.
//
// The device exists once the kernel booted with r.CmdlineWords and the
// modules libnvdimm, nd_e820, nd_btt and nd_pmem are loaded (Debian builds
// X86_PMEM_LEGACY as a module; modules.dep brings libnvdimm and nd_btt
// with nd_e820 and nd_pmem). It is the whole region, raw: no label, no
// info block.
func FindDevice(root string, r Region) (string, error) {
	if root == "" {
		root = "/"
	}
	names, err := filepath.Glob(filepath.Join(root, "sys/block/pmem*"))
	if err != nil {
		return "", fmt.Errorf("keptmem: listing pmem devices: %w", err)
	}
	sort.Strings(names)
	var bySize []string // devices of the right size without a resource file
	for _, p := range names {
		name := filepath.Base(p)
		sizeFile, resFile, node := pmemFiles(root, name)
		sectors, err := readDecimal(sizeFile)
		if err != nil {
			return "", err
		}
		if sectors*512 != r.Size || sectors > 1<<54 {
			continue
		}
		start, err := memmap.ReadHex(resFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			bySize = append(bySize, node)
		case err != nil:
			return "", fmt.Errorf("keptmem: %w", err)
		case start == r.Start:
			return node, nil
		}
	}
	switch len(bySize) {
	case 0:
		return "", fmt.Errorf("%w: no %s/sys/block/pmem* device is %s (is the kernel booted with %s, and are nd_e820 and nd_pmem loaded?)",
			ErrNoDevice, strings.TrimSuffix(root, "/"), r, r.CmdlineWords()[0])
	case 1:
	default:
		return "", fmt.Errorf("%w: %d pmem devices have the size of %s and none says where it starts: %s", ErrNoDevice, len(bySize), r, strings.Join(bySize, ", "))
	}
	iomem, err := memmap.ReadIomem(root)
	if err != nil {
		return "", fmt.Errorf("keptmem: matching %s by size: %w", bySize[0], err)
	}
	for _, res := range iomem {
		if res.Name == memmap.TypePRAM && res.Range == r.Range() {
			return bySize[0], nil
		}
	}
	return "", fmt.Errorf("%w: %s has the size of %s but /proc/iomem lists no %q range there", ErrNoDevice, bySize[0], r, memmap.TypePRAM)
}

// readDecimal reads a sysfs file holding one decimal number.
func readDecimal(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("keptmem: %w", err)
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("keptmem: %s: %q is not a number", path, s)
	}
	return n, nil
}
