//go:build linux && amd64

package fastreboot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// Bomb sizes: the payload unpacks to 2 GiB of zeros (64 KiB of zstd RLE
// blocks), the header's init_size and size field say 64 MiB.
const (
	bombUnpacked = 2 << 30
	bombInitSize = 64 << 20
	// bombMaxRSS bounds the child's peak RSS: the test binary (about 30
	// MB), one init_size buffer and the decompressor's window. Without the
	// bound the segments method's inflate took the whole 2 GiB and more.
	bombMaxRSS = 256 << 20
)

const bombChildEnv = "FASTREBOOT_KERNEL_BOMB_CHILD"

// TestKernelBombBounded runs TestKernelBombChild in a process of its own and
// reports that process's peak RSS (getrusage): the segments method's
// decompression of a forged bzImage stops at init_size.
func TestKernelBombBounded(t *testing.T) {
	if os.Getenv(bombChildEnv) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelBombChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), bombChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Errorf("child: %v", err)
	}
	if cmd.ProcessState == nil {
		t.Fatal("the child did not run")
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the child")
	}
	maxRSS := ru.Maxrss << 10 // kilobytes on Linux
	t.Logf("kernel bomb (a %d-byte bzImage unpacking to %d bytes, init_size %d): child max RSS %d bytes (%.1f MiB), bound %d",
		len(testimage.KernelBomb(bombUnpacked, bombInitSize)), int64(bombUnpacked), bombInitSize, maxRSS, float64(maxRSS)/(1<<20), bombMaxRSS)
	if maxRSS > bombMaxRSS {
		t.Errorf("max RSS %d bytes, want at most %d", maxRSS, bombMaxRSS)
	}
}

// TestKernelBombChild is the child of TestKernelBombBounded: a segments
// Stage of an image with the bomb as its kernel, then the decompression
// itself, both refused with ErrUnpackLimit.
func TestKernelBombChild(t *testing.T) {
	if os.Getenv(bombChildEnv) == "" {
		t.Skip("run by TestKernelBombBounded")
	}
	bomb := testimage.KernelBomb(bombUnpacked, bombInitSize)
	r := newSegmentsRig(t, nil)
	r.im.Kernel.Data = bomb
	m, dir := r.im.WriteTempDir(t)
	r.m, r.src = m, modcache.DirSource(dir)
	_, err := r.stage(t)
	if !errors.Is(err, bootimage.ErrUnpackLimit) || !strings.Contains(err.Error(), `"vmlinuz"`) {
		t.Errorf("segments Stage of the bomb = %v, want ErrUnpackLimit naming vmlinuz", err)
	}
	t.Logf("segments Stage: %v", err)
	if r.loader.loads != 0 {
		t.Errorf("kexec_load called %d times", r.loader.loads)
	}
	// The decompression the segments method runs, on its own (the cache
	// refused the bomb before it).
	elf, err := decompressKernel(bytes.NewReader(bomb), int64(len(bomb)))
	if !errors.Is(err, bootimage.ErrUnpackLimit) || elf != nil {
		t.Errorf("decompressKernel = %d bytes, %v; want ErrUnpackLimit", len(elf), err)
	}
	t.Logf("decompressKernel: %v", err)
}

// TestStageSegmentsCorruptKernelKeepsPrevious: a kernel whose compressed
// payload has bytes flipped in its middle (its header checks) is refused
// at a segments Stage, before anything is decompressed for kexec_load or
// loaded, and the image loaded before stays.
func TestStageSegmentsCorruptKernelKeepsPrevious(t *testing.T) {
	r := newSegmentsRig(t, nil)
	if _, err := r.stage(t); err != nil {
		t.Fatal(err)
	}
	before := r.loader.entry
	bad := r.im
	bad.Name = "corrupt"
	bad.Kernel.Data = testimage.CorruptPayload(r.im.Kernel.Data)
	if err := bootimage.CheckKernel(bytes.NewReader(bad.Kernel.Data), int64(len(bad.Kernel.Data))); err != nil {
		t.Fatalf("the corrupt kernel's header does not check: %v", err)
	}
	m, dir := bad.WriteTempDir(t)
	_, err := New(r.cache, r.opts).Stage(context.Background(), m, modcache.DirSource(dir), r.so)
	if !errors.Is(err, bootimage.ErrNotBzImage) || !strings.Contains(err.Error(), `"vmlinuz"`) || !strings.Contains(err.Error(), "compressed kernel") || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Stage of the corrupt kernel = %v, want ErrNotBzImage naming vmlinuz, its compressed kernel corrupt", err)
	}
	t.Logf("refused: %v", err)
	if r.loader.loads != 1 || r.loader.entry != before {
		t.Errorf("kexec_load called %d times, want only the good stage's", r.loader.loads)
	}
}
