// Package loadlist is the format of the kernel-module load list that the
// kmods initramfs piece carries (/etc/fastreboot/modules.load) and the guest
// helper frguest reads: one module path per line, relative to
// /lib/modules/<release>, in load order (dependencies first), optionally
// followed by the word "optional" when a failed load is tolerable (one of
// several modules providing a softdep alias, e.g. crc32c_intel on a CPU
// without SSE4.2). Blank lines and lines starting with # are ignored.
package loadlist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Path is where the kmods piece puts the list inside the initramfs.
const Path = "etc/fastreboot/modules.load"

// ErrSyntax is returned for a line that is not "PATH [optional]".
var ErrSyntax = errors.New("load list syntax")

// Entry is one module to load.
type Entry struct {
	// Path relative to lib/modules/<release>, e.g. "kernel/fs/ext4/ext4.ko".
	Path string
	// Optional marks a module whose load may fail.
	Optional bool
}

// Parse reads a load list.
func Parse(r io.Reader) ([]Entry, error) {
	var out []Entry
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 1:
			out = append(out, Entry{Path: f[0]})
		case len(f) == 2 && f[1] == "optional":
			out = append(out, Entry{Path: f[0], Optional: true})
		default:
			return nil, fmt.Errorf("%w: line %d: want \"PATH [optional]\", got %q", ErrSyntax, n, line)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return out, nil
}

// ParseBytes is Parse on b.
func ParseBytes(b []byte) ([]Entry, error) { return Parse(bytes.NewReader(b)) }

// Format renders entries; Parse(Format(e)) == e for paths without blanks.
func Format(entries []Entry) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Path)
		if e.Optional {
			b.WriteString(" optional")
		}
		b.WriteByte('\n')
	}
	return b.String()
}
