package crashhandler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is finit_module's MODULE_INIT_COMPRESSED_FILE
// (include/uapi/linux/module.h, Linux 5.17): the kernel decompresses the
// file itself (CONFIG_MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

// KernelModules loads modules with finit_module(2). A compressed module
// (.ko.xz, .ko.zst, .ko.gz) is passed with MODULE_INIT_COMPRESSED_FILE;
// a kernel that cannot decompress it (EINVAL, EOPNOTSUPP, ENOEXEC) gets it
// decompressed here, through init_module(2).
type KernelModules struct{}

// LoadModule implements ModuleLoader.
func (KernelModules) LoadModule(f *os.File, params string) error {
	compressed := !strings.HasSuffix(f.Name(), ".ko")
	flags := 0
	if compressed {
		flags = moduleInitCompressedFile
	}
	err := unix.FinitModule(int(f.Fd()), params, flags)
	if err == nil {
		return nil
	}
	if !compressed || !(errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOEXEC)) {
		return fmt.Errorf("finit_module(%s, %q, %#x): %w", f.Name(), params, flags, err)
	}
	if _, serr := f.Seek(0, io.SeekStart); serr != nil {
		return fmt.Errorf("finit_module(%s, %q, %#x): %w; rewinding to decompress: %w", f.Name(), params, flags, err, serr)
	}
	r, derr := kmodule.CompressionReader(f)
	if derr != nil {
		return fmt.Errorf("finit_module(%s, %q, %#x): %w; decompressing: %w", f.Name(), params, flags, err, derr)
	}
	img, derr := io.ReadAll(r)
	if derr != nil {
		return fmt.Errorf("decompressing %s: %w", f.Name(), derr)
	}
	if err := unix.InitModule(img, params); err != nil {
		return fmt.Errorf("init_module(%s, %q): %w", f.Name(), params, err)
	}
	return nil
}

// mountPstore mounts the pstore file system on target: mount(2).
func mountPstore(target string) error {
	if err := unix.Mount("pstore", target, "pstore", 0, ""); err != nil {
		return fmt.Errorf("mount(pstore, %s, pstore): %w", target, err)
	}
	return nil
}
