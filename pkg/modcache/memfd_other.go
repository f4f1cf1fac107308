//go:build !linux

package modcache

import (
	"fmt"
	"os"
)

// newBacking creates an unlinked temporary file: without memfd_create the
// content lives in the temporary directory's file system, unsealed.
func newBacking(name string) (*os.File, error) {
	f, err := os.CreateTemp("", "fastreboot-*")
	if err != nil {
		return nil, fmt.Errorf("backing file for %s: %w", name, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("backing file for %s: %w", name, err)
	}
	return f, nil
}

// seal does nothing: only Linux has file seals.
func seal(*os.File) error { return nil }
