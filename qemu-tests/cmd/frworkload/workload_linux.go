package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/internal/workload"
)

const cgroupRoot = "/sys/fs/cgroup"

// makeCgroup mounts the cgroup v2 hierarchy when /sys/fs/cgroup has none
// (u-root's init mounts no cgroup file system) and makes dir.
func makeCgroup(dir string) error {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
		if err := syscall.Mount("cgroup2", cgroupRoot, "cgroup2", 0, ""); err != nil {
			return fmt.Errorf("mount -t cgroup2 cgroup2 %s: %w", cgroupRoot, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Printf("FRWORKLOAD cgroup=%s\n", dir)
	return nil
}

// mapArea maps size bytes of dev at off, shared: writes go to the device's
// page cache, and from there to the region.
func mapArea(dev string, off, size int64) ([]byte, func(), error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	b, err := syscall.Mmap(int(f.Fd()), off, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mmap %s at %d, %d bytes: %w", dev, off, size, err)
	}
	return b, func() { syscall.Munmap(b); f.Close() }, nil
}

// startFill starts `frworkload serve` as a child in its own session, waits
// for its line and prints it: the child stays, holding the mapping.
func startFill(dev string, off, size int64, seed uint64, cg string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "serve", dev, strconv.FormatInt(off, 10), strconv.FormatInt(size, 10), strconv.FormatUint(seed, 10), cg)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// The child holds none of the shell's descriptors: a shell waiting for
	// the end of the command's output would wait for the child too. Its
	// errors come on the pipe (main).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the workload (pid %d) said nothing: %w", cmd.Process.Pid, err)
	}
	fmt.Print(line)
	return cmd.Process.Release()
}

// serve joins the cgroup, fills the area, syncs nothing itself (fastreboot
// reboot freezes it and fsyncs the device), reports and stays.
func serve(dev string, off, size int64, seed uint64, cg string) error {
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("joining %s: %w", cg, err)
	}
	b, _, err := mapArea(dev, off, size)
	if err != nil {
		return err
	}
	start := time.Now()
	workload.Fill(b, seed)
	filled := time.Since(start)
	sum := sha256.Sum256(b)
	fmt.Printf("FRWORKLOAD fill sha256=%s fill_ms=%d pid=%d\n", hex.EncodeToString(sum[:]), filled.Milliseconds(), os.Getpid())
	os.Stdout.Close()
	// Stay, mapped, touching nothing more: the state is in the area.
	for {
		time.Sleep(time.Hour)
	}
}

// verify maps the area, touches every page (until then the state is not in
// this process's hands), then hashes it.
func verify(dev string, off, size int64) error {
	start := time.Now()
	b, done, err := mapArea(dev, off, size)
	if err != nil {
		return err
	}
	defer done()
	var x byte
	for i := 0; i < len(b); i += os.Getpagesize() {
		x ^= b[i]
	}
	ready := time.Since(start)
	sum := sha256.Sum256(b)
	total := time.Since(start)
	fmt.Printf("FRWORKLOAD verify sha256=%s ready_ms=%d hash_ms=%d total_ms=%d x=%d\n",
		hex.EncodeToString(sum[:]), ready.Milliseconds(), (total - ready).Milliseconds(), total.Milliseconds(), x)
	return nil
}

// hashFile reads path into memory (the state rebuilt from storage), then
// hashes it.
func hashFile(path string) error {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	ready := time.Since(start)
	sum := sha256.Sum256(b)
	total := time.Since(start)
	fmt.Printf("FRWORKLOAD file sha256=%s ready_ms=%d hash_ms=%d total_ms=%d\n",
		hex.EncodeToString(sum[:]), ready.Milliseconds(), (total - ready).Milliseconds(), total.Milliseconds())
	return nil
}
