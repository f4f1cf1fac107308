package harness

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// HostBinaries are the files that run the host's dynamically linked
// programs bins (absolute paths, e.g. kexec-tools' /usr/sbin/kexec) in a
// test guest's initramfs: each program and every library ldd lists for it,
// the dynamic loader included, at their host paths, so the guest's loader
// finds them where the host's does. A library is listed once however many
// programs need it; Src is the file a symlink names (a link to a relative
// symlink would dangle in the initramfs). A program or library missing is
// an error naming it.
func HostBinaries(bins ...string) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	add := func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		src, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: strings.TrimPrefix(p, "/"), Src: src, Mode: 0o755})
		return nil
	}
	for _, bin := range bins {
		if err := add(bin); err != nil {
			return nil, fmt.Errorf("host program %s: %w", bin, err)
		}
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", bin, err)
		}
		libs, err := ParseLdd(out)
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", bin, err)
		}
		paths := slices.Sorted(maps.Values(libs))
		for _, p := range paths {
			if err := add(p); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}
