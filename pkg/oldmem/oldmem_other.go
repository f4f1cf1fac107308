//go:build !linux

package oldmem

import (
	"errors"
	"fmt"
	"os"
)

var errNotLinux = fmt.Errorf("oldmem works on Linux only: %w", errors.ErrUnsupported)

// Pinned keeps a file's pages resident; on Linux only.
type Pinned struct{}

// Pin fails with an error wrapping errors.ErrUnsupported: pagemap and
// mlock'ed shared mappings are Linux's.
func Pin(root string, f *os.File, size int64, sha256hex string) (*Pinned, error) {
	return nil, errNotLinux
}

// Pages fails with an error wrapping errors.ErrUnsupported.
func (p *Pinned) Pages() (Pages, error) { return Pages{}, errNotLinux }

// Close does nothing.
func (p *Pinned) Close() error { return nil }

// Map fails with an error wrapping errors.ErrUnsupported: /proc/vmcore is
// Linux's.
func Map(root string, p Pages) (data []byte, unmap func(), err error) {
	return nil, nil, errNotLinux
}
