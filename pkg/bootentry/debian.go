package bootentry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// scanDebian lists Debian's vmlinuz/initrd.img links: in /boot, or at the
// root (linux-base's default, link_in_boot=no).
func scanDebian(root string) []Entry {
	for _, d := range []string{"boot", "."} {
		dir := filepath.Join(root, d)
		if _, err := os.Lstat(filepath.Join(dir, "vmlinuz")); err != nil {
			continue
		}
		out := []Entry{debianEntry(root, dir, "debian", "")}
		if _, err := os.Lstat(filepath.Join(dir, "vmlinuz.old")); err == nil {
			out = append(out, debianEntry(root, dir, "debian-old", ".old"))
		}
		return out
	}
	return nil
}

func debianEntry(root, dir, id, suffix string) Entry {
	link := filepath.Join(dir, "vmlinuz"+suffix)
	e := Entry{ID: id, Source: SourceDebianLinks, CmdlineFromRunning: true, Config: link + " link"}
	kernel, err := resolveIn(root, link)
	if err != nil {
		e.Err = entryErr(SourceDebianLinks, id, link, ErrMissingFile, "kernel link: %v", err)
		return e
	}
	e.Kernel = kernel
	e.Version = strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	if e.Version == filepath.Base(kernel) {
		e.Version = ""
	}
	e.Title = "Debian's vmlinuz" + suffix
	if e.Version != "" {
		e.Title += " (" + e.Version + ")"
	}
	ilink := filepath.Join(dir, "initrd.img"+suffix)
	if _, err := os.Lstat(ilink); err != nil {
		e.Err = entryErr(SourceDebianLinks, id, link, ErrNoInitrd, "no %s next to it", ilink)
		return e
	}
	initrd, err := resolveIn(root, ilink)
	if err != nil {
		e.Err = entryErr(SourceDebianLinks, id, ilink, ErrMissingFile, "initrd link: %v", err)
		return e
	}
	e.Initrds = []string{initrd}
	e.checkFiles()
	return e
}

// resolveIn follows the symbolic links of path with absolute targets taken
// under root (the tree may be another system's, mounted there), and returns
// the file they lead to. It fails when the chain is dangling.
func resolveIn(root, path string) (string, error) {
	for range 16 {
		fi, err := os.Lstat(path)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			path = within(root, target)
		} else {
			path = filepath.Join(filepath.Dir(path), target)
		}
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}
