package bootimage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RunningOptions says where FromRunningSystem looks.
type RunningOptions struct {
	// Root is the directory holding proc/ and boot/; "" means "/".
	// Tests point it at a fake tree.
	Root string
	// Release is the kernel release (what uname -r prints); "" means
	// the running kernel's, read from Root/proc/sys/kernel/osrelease.
	Release string
}

// Where distributions install the kernel and initrd of release REL, under
// Root/boot. The first that exists is used.
var (
	kernelNames = []string{"vmlinuz-%s"}
	initrdNames = []string{
		"initrd.img-%s",    // Debian, Ubuntu
		"initramfs-%s.img", // Fedora, RHEL, Arch (dracut, mkinitcpio)
		"initrd-%s",        // SUSE
	}
)

// FromRunningSystem builds the manifest of the system as it runs now: the
// command line of Root/proc/cmdline cleaned by CleanCmdline, the kernel
// Root/boot/vmlinuz-REL and the initrd Root/boot/initrd.img-REL (or
// initramfs-REL.img, initrd-REL), hashed and checked as FromFiles does.
// The manifest is named after the release. Sources are the paths read.
//
// It reads files only: no syscall, no privilege beyond reading /boot.
func FromRunningSystem(opts RunningOptions) (*Manifest, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	release := opts.Release
	if release == "" {
		b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/osrelease"))
		if err != nil {
			return nil, fmt.Errorf("kernel release: %w", err)
		}
		release = strings.TrimSpace(string(b))
		if release == "" {
			return nil, fmt.Errorf("kernel release: %s is empty", filepath.Join(root, "proc/sys/kernel/osrelease"))
		}
	}
	if strings.ContainsAny(release, "/\x00") {
		return nil, fmt.Errorf("%w: kernel release %q is not a file name part", ErrInvalid, release)
	}
	cmdline, err := os.ReadFile(filepath.Join(root, "proc/cmdline"))
	if err != nil {
		return nil, fmt.Errorf("kernel command line: %w", err)
	}
	boot := filepath.Join(root, "boot")
	kernel, err := findFile(boot, kernelNames, release)
	if err != nil {
		return nil, fmt.Errorf("kernel of release %s: %w", release, err)
	}
	initrd, err := findFile(boot, initrdNames, release)
	if err != nil {
		return nil, fmt.Errorf("initrd of release %s: %w", release, err)
	}
	m, err := FromFiles(kernel, []string{initrd}, CleanCmdline(string(cmdline)))
	if err != nil {
		return nil, err
	}
	m.Name = release
	return m, nil
}

// findFile returns the first of dir/fmt.Sprintf(name, release) that
// exists.
func findFile(dir string, names []string, release string) (string, error) {
	var tried []string
	for _, n := range names {
		p := filepath.Join(dir, fmt.Sprintf(n, release))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("none of %s: %w", strings.Join(tried, ", "), fs.ErrNotExist)
}
