package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NestedQEMUModules are the QEMU modules (Debian builds QEMU with
// --enable-modules) that a guest of a nested QEMU needs: TCG itself.
var NestedQEMUModules = []string{"accel-tcg-x86_64.so"}

// NestedQEMUFirmware are the files of QEMU's data directory that a nested
// pc machine with -nodefaults and its own -bios loads: the vAPIC option
// ROM (a warning without it).
var NestedQEMUFirmware = []string{"kvmvapic.bin"}

// NestedQEMUFiles are the files that run this host's QEMU (qemu, or
// FASTREBOOT_QEMU's, or DefaultQEMU on $PATH, when empty) inside a test
// guest, laid out for a disk: qemu-system-x86_64, lib/ (the libraries ldd
// lists, under their sonames, and the dynamic loader
// ld-linux-x86-64.so.2, through which the guest runs QEMU with
// --library-path), modules/ (NestedQEMUModules, found in the module
// directory QEMU was built with, for QEMU_MODULE_DIR) and share/
// (NestedQEMUFirmware, for -L). Nothing is copied: Src names the host's
// files.
func NestedQEMUFiles(qemu string) ([]File, error) {
	if qemu == "" {
		qemu = os.Getenv(EnvQEMU)
	}
	if qemu == "" {
		qemu = DefaultQEMU
	}
	bin, err := exec.LookPath(qemu)
	if err != nil {
		return nil, fmt.Errorf("nested QEMU: %w", err)
	}
	bin, err = filepath.EvalSymlinks(bin)
	if err != nil {
		return nil, fmt.Errorf("nested QEMU: %w", err)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("nested QEMU: ldd %s: %w", bin, err)
	}
	libs, err := ParseLdd(out)
	if err != nil {
		return nil, fmt.Errorf("nested QEMU: ldd %s: %w", bin, err)
	}
	files := []File{{Path: "qemu-system-x86_64", Src: bin, Mode: 0o755}}
	for name, src := range libs {
		// The file, not its link (BuildDisk hard-links a Src, and a
		// link to a relative symlink would dangle).
		if src, err = filepath.EvalSymlinks(src); err != nil {
			return nil, fmt.Errorf("nested QEMU: %w", err)
		}
		f := File{Path: "lib/" + name, Src: src}
		if strings.HasPrefix(name, "ld-linux") {
			f.Mode = 0o755
		}
		files = append(files, f)
	}
	// Debian's module directory; the binary's prefix is /usr.
	modDir := filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib/x86_64-linux-gnu/qemu")
	for _, m := range NestedQEMUModules {
		p := filepath.Join(modDir, m)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("nested QEMU: module %s: %w", m, err)
		}
		files = append(files, File{Path: "modules/" + m, Src: p})
	}
	share := filepath.Join(filepath.Dir(filepath.Dir(bin)), "share/qemu")
	for _, fw := range NestedQEMUFirmware {
		p, err := filepath.EvalSymlinks(filepath.Join(share, fw))
		if err != nil {
			return nil, fmt.Errorf("nested QEMU: firmware %s: %w", fw, err)
		}
		files = append(files, File{Path: "share/" + fw, Src: p})
	}
	return files, nil
}

// ParseLdd reads ldd's output: each library's name (the soname, or the
// dynamic loader's base name) and the host file it resolves to. A library
// ldd does not find is an error; the vDSO, which has no file, is left out.
func ParseLdd(out []byte) (map[string]string, error) {
	libs := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "linux-vdso") || strings.HasPrefix(line, "linux-gate") {
			continue
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("a library is missing: %q", line)
		}
		name, path, arrow := strings.Cut(line, " => ")
		if !arrow {
			// The dynamic loader: "/lib64/ld-linux-x86-64.so.2 (0x...)".
			path = name
			name = filepath.Base(strings.Fields(path)[0])
		}
		f := strings.Fields(path)
		if len(f) == 0 || !strings.HasPrefix(f[0], "/") {
			return nil, fmt.Errorf("no path in ldd's line %q", line)
		}
		libs[name] = f[0]
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("no libraries in ldd's output %q", out)
	}
	return libs, sc.Err()
}

// RequireNestedQEMU returns NestedQEMUFiles(""), or skips t with the
// reason (fails it with FASTREBOOT_REQUIRE_QEMU=1).
func RequireNestedQEMU(t testing.TB) []File {
	t.Helper()
	files, err := NestedQEMUFiles("")
	if err != nil {
		missing(t, "no QEMU to run inside the guest: %v", err)
	}
	return files
}
