package keptmem

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// PreserveKey names the command line word fastreboot.preserve=SIZE: the
// last SIZE bytes of the kept region hold the areas workloads preserve
// across a fast reboot; the module cache's format (Write, Open) uses the
// bytes before them. Without the word the cache has the whole region.
const PreserveKey = "fastreboot.preserve"

// Layout is how a kept region is shared: the module cache's part at its
// start, the preserved workload areas' part at its end. Offsets are from
// the region's start.
type Layout struct {
	Region Region
	// CacheSize is the length of the cache's part, at offset 0.
	CacheSize int64
	// AreasSize is the length of the areas' part, at offset CacheSize.
	AreasSize int64
}

// ParseLayout reads the kept region of a command line (ParseCmdline) and
// its fastreboot.preserve= word. ok is false when the line keeps no region;
// a preserve word without a region, one that does not parse, is not a
// multiple of Align, or leaves the cache less than DataStart plus one block
// is an error naming the word.
func ParseLayout(cmdline string) (l Layout, ok bool, err error) {
	r, ok, err := ParseCmdline(cmdline)
	if err != nil {
		return Layout{}, false, err
	}
	words, _ := bootimage.SplitCmdline(cmdline)
	var preserve uint64
	word := ""
	for _, w := range words {
		v, found := strings.CutPrefix(w, PreserveKey+"=")
		if !found {
			continue
		}
		n, rest, good := memmap.ParseSize(v)
		if !good || rest != "" {
			return Layout{}, false, fmt.Errorf("keptmem: %s: not %s=SIZE", w, PreserveKey)
		}
		preserve, word = n, w
	}
	switch {
	case word != "" && !ok:
		return Layout{}, false, fmt.Errorf("keptmem: %s: the command line keeps no region (memmap=SIZE!START) to preserve areas in", word)
	case !ok:
		return Layout{}, false, nil
	case preserve%Align != 0:
		return Layout{}, false, fmt.Errorf("keptmem: %s: the size must be a multiple of 2 MiB", word)
	case preserve > r.Size || r.Size-preserve < DataStart+BlockSize:
		return Layout{}, false, fmt.Errorf("keptmem: %s: leaves the module cache %d bytes of the %s region (it needs at least %d)",
			word, int64(r.Size)-int64(min(preserve, r.Size)), memmap.FormatSize(r.Size), DataStart+BlockSize)
	}
	return Layout{Region: r, CacheSize: int64(r.Size - preserve), AreasSize: int64(preserve)}, true, nil
}

// Words returns the command line words that give a kernel this layout:
// the region's memmap= word, and fastreboot.preserve= when areas are kept.
func (l Layout) Words() []string {
	out := l.Region.CmdlineWords()
	if l.AreasSize > 0 {
		out = append(out, PreserveKey+"="+memmap.FormatSize(uint64(l.AreasSize)))
	}
	return out
}

// Window returns the part [off, off+size) of dev as a Device of its own,
// whose offset 0 is dev's off: the cache's part or the areas' part of a
// Layout. Reads and writes outside it are errors; Sync syncs dev.
func Window(dev Device, off, size int64) (Device, error) {
	if off < 0 || size < 0 || off > dev.Size() || size > dev.Size()-off {
		return nil, fmt.Errorf("keptmem: %s: the window of %d bytes at %d is outside its %d bytes", deviceName(dev), size, off, dev.Size())
	}
	return &window{dev: dev, off: off, size: size}, nil
}

type window struct {
	dev       Device
	off, size int64
}

func (w *window) check(n int, off int64) error {
	if off < 0 || off > w.size || int64(n) > w.size-off {
		return fmt.Errorf("keptmem: %s: %d bytes at %d: outside the window of %d bytes at %d", deviceName(w.dev), n, off, w.size, w.off)
	}
	return nil
}

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	if off >= 0 && off <= w.size && int64(len(p)) > w.size-off {
		// A read running past the end returns what is there and EOF,
		// as io.ReaderAt asks.
		n, err := w.dev.ReadAt(p[:w.size-off], w.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	if err := w.check(len(p), off); err != nil {
		return 0, err
	}
	return w.dev.ReadAt(p, w.off+off)
}

func (w *window) WriteAt(p []byte, off int64) (int, error) {
	if err := w.check(len(p), off); err != nil {
		return 0, err
	}
	return w.dev.WriteAt(p, w.off+off)
}

func (w *window) Sync() error { return w.dev.Sync() }
func (w *window) Size() int64 { return w.size }
func (w *window) Name() string {
	return fmt.Sprintf("%s[%d:%d]", deviceName(w.dev), w.off, w.off+w.size)
}

// RunningLayout is ParseLayout of the running kernel's command line,
// root/proc/cmdline (root "" is "/"); errors name the file.
func RunningLayout(root string) (Layout, bool, error) {
	if root == "" {
		root = "/"
	}
	p := filepath.Join(root, "proc/cmdline")
	b, err := os.ReadFile(p)
	if err != nil {
		return Layout{}, false, fmt.Errorf("keptmem: the running command line: %w", err)
	}
	l, ok, err := ParseLayout(strings.TrimSpace(string(b)))
	if err != nil {
		return Layout{}, false, fmt.Errorf("%s: %w", p, err)
	}
	return l, ok, nil
}
