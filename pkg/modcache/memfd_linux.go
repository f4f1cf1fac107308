package modcache

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxMemfdName is the longest name memfd_create accepts (NAME_MAX minus the
// "memfd:" prefix the kernel adds).
const maxMemfdName = 249

// sealAll makes a memfd immutable: no write, no resize, no change of seals.
const sealAll = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// newBacking creates an empty memfd that can be sealed. The returned fd is
// the only open of the inode; kexec_file_load does not count it as a writer
// (ETXTBSY would follow from any reopen for writing).
func newBacking(name string) (*os.File, error) {
	name = strings.ReplaceAll(name, "\x00", "_")
	if len(name) > maxMemfdName {
		name = name[:maxMemfdName]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create(%q, MFD_CLOEXEC|MFD_ALLOW_SEALING): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "memfd:"+name), nil
}

// seal applies sealAll with fcntl(F_ADD_SEALS).
func seal(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	var serr error
	var fd uintptr
	if err := rc.Control(func(d uintptr) {
		fd = d
		_, serr = unix.FcntlInt(d, unix.F_ADD_SEALS, sealAll)
	}); err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	if serr != nil {
		return fmt.Errorf("fcntl(%d, F_ADD_SEALS, %#x) on %s: %w", fd, sealAll, f.Name(), serr)
	}
	return nil
}
