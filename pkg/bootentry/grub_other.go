//go:build !linux

package bootentry

import (
	"context"
	"fmt"
)

// parseGrubConfig fails: u-root's grub parser builds on Linux only.
func parseGrubConfig(context.Context, string, string) ([]grubImage, error) {
	return nil, fmt.Errorf("u-root's grub parser builds on Linux only: %w", ErrUnsupported)
}
