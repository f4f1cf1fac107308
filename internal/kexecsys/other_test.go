//go:build !linux

package kexecsys

import (
	"errors"
	"testing"
)

func TestNotSupportedOutsideLinux(t *testing.T) {
	for name, err := range map[string]error{
		"FileLoad": FileLoad(nil, nil, "", 0),
		"Load":     Load(0, nil, 0),
		"Reboot":   Reboot(true),
		"Seal":     Seal(nil),
	} {
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s: %v, want ErrNotSupported", name, err)
		}
	}
	f, err := NewImageFile("x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SealImage(f); err != nil {
		t.Errorf("SealImage without seals: %v", err)
	}
}
