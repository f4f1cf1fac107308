package kexecsys

import (
	"errors"
	"fmt"
	"os"
)

// NewImageFile creates the empty file an image or a cached module is built
// in: a sealable memfd (MemfdCreate) where the kernel has memfd_create,
// else an unlinked temporary file, which SealImage leaves unsealed.
func NewImageFile(name string) (*os.File, error) {
	f, err := MemfdCreate(name)
	if !errors.Is(err, ErrNotSupported) {
		return f, err
	}
	f, err = os.CreateTemp("", "fastreboot-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for %s: %w", name, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("temporary file for %s: %w", name, err)
	}
	return f, nil
}

// SealImage seals a file from NewImageFile (Seal); where there are no file
// seals it does nothing.
func SealImage(f *os.File) error {
	if err := Seal(f); err != nil && !errors.Is(err, ErrNotSupported) {
		return err
	}
	return nil
}
