package modcache

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrModuleTooLarge: a module does not fit in the memory the system has
// available (MemAvailable, less Options.MemoryMargin).
var ErrModuleTooLarge = errors.New("module too large for the available memory")

// DefaultMemoryMargin is the memory Sync leaves available when it reads a
// module (Options.MemoryMargin): the daemon, the kexec load and the rest of
// the system still need some.
const DefaultMemoryMargin = 64 << 20

// fits reports whether a module of size bytes can be read now: its memfd
// takes that much RAM (shmem pages are not reclaimable without swap, and
// MemAvailable does not count them), so size must not exceed MemAvailable
// from Root/proc/meminfo less the margin. Each module read lowers
// MemAvailable, so checking every module before it is read caps the total.
// Without a readable MemAvailable (not Linux, or a kernel before 3.14)
// there is no check.
func (c *Cache) fits(size int64) error {
	if c.margin < 0 {
		return nil
	}
	avail, err := memAvailable(c.root)
	if err != nil {
		c.log.Debug("modcache: no memory check", "err", err)
		return nil
	}
	if size > avail-c.margin {
		return fmt.Errorf("%w: the module has %d bytes; MemAvailable is %d bytes, less a margin of %d leaves %d",
			ErrModuleTooLarge, size, avail, c.margin, max(avail-c.margin, 0))
	}
	return nil
}

// memAvailable reads MemAvailable from root/proc/meminfo, in bytes.
func memAvailable(root string) (int64, error) {
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil || kb < 0 || kb > 1<<52 {
			return 0, fmt.Errorf("proc/meminfo: MemAvailable %q", strings.TrimSpace(v))
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("proc/meminfo has no MemAvailable")
}
