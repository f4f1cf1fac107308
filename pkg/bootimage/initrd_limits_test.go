package bootimage_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// TestInitrdLimits: a piece of about 33 KB that unpacks to 1 GiB (a zstd
// frame of one zero-filled file) is refused under the default limits,
// naming the piece, its compressed size and what it unpacked to when
// stopped; the ratio and the total are configurable, and the real unpacked
// size is reported.
func TestInitrdLimits(t *testing.T) {
	const gib = 1 << 30
	bomb := testimage.InitrdBomb(gib)
	t.Logf("the bomb: %d bytes unpacking to %d", len(bomb), int64(gib))
	if len(bomb) > 40<<10 {
		t.Fatalf("the bomb has %d bytes, want about 33 KB", len(bomb))
	}
	m := bootimage.Module{Name: "bomb.cpio.zst", Role: bootimage.RoleInitrd, Size: int64(len(bomb))}
	err := bootimage.CheckModule(m, bytes.NewReader(bomb))
	if !errors.Is(err, bootimage.ErrBadInitrd) || !errors.Is(err, bootimage.ErrUnpackLimit) {
		t.Fatalf("CheckModule = %v, want ErrBadInitrd and ErrUnpackLimit", err)
	}
	for _, w := range []string{`"bomb.cpio.zst"`, "zstd piece at offset 0", "unpack to more than 16777216 bytes", "more than 100 times their size", "stopped: its first "} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	// What the piece consumed when it was stopped is named, and what
	// it can be at most.
	if !strings.Contains(err.Error(), " compressed bytes unpack to") || !strings.Contains(err.Error(), fmt.Sprintf("the piece has at most %d bytes", len(bomb))) {
		t.Errorf("error %q does not give the compressed size", err)
	}

	small := testimage.InitrdBomb(32 << 20)
	for _, tc := range []struct {
		name string
		lim  bootimage.InitrdLimits
		data []byte
		want string // "" for success
	}{
		{"32 MiB under the default ratio", bootimage.InitrdLimits{}, small, "more than 100 times"},
		{"32 MiB with no ratio limit", bootimage.InitrdLimits{MaxRatio: -1}, small, ""},
		{"32 MiB (1 KB compressed) under a ratio of 2000", bootimage.InitrdLimits{MaxRatio: 2000}, small, "more than 2000 times"},
		{"32 MiB (1 KB compressed) under a ratio of 100000", bootimage.InitrdLimits{MaxRatio: 100000}, small, ""},
		{"32 MiB over a total of 16 MiB", bootimage.InitrdLimits{MaxRatio: -1, MaxUnpacked: 16 << 20}, small, "more than the 16777216 an initrd may"},
		{"two pieces over a total of 48 MiB", bootimage.InitrdLimits{MaxRatio: -1, MaxUnpacked: 48 << 20}, append(append([]byte(nil), small...), small...), "more than the 50331648 an initrd may"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := bootimage.ScanInitrd(bytes.NewReader(tc.data), int64(len(tc.data)), tc.lim)
			if tc.want == "" {
				if err != nil || info.UnpackedBytes < 32<<20 || info.Pieces != 1 {
					t.Errorf("ScanInitrd = %+v, %v; want one piece of more than 32 MiB", info, err)
				}
				return
			}
			if !errors.Is(err, bootimage.ErrUnpackLimit) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ScanInitrd = %v, want ErrUnpackLimit saying %q", err, tc.want)
			}
		})
	}

	// The real unpacked size: the cpio data, headers included.
	piece := testimage.Xz(testimage.Cpio(testimage.File{Name: "lib/modules/x.ko", Data: testimage.Bytes(50000, 1)}))
	info, err := bootimage.ScanInitrd(bytes.NewReader(piece), int64(len(piece)), bootimage.InitrdLimits{})
	cpioBytes := len(testimage.Cpio(testimage.File{Name: "lib/modules/x.ko", Data: testimage.Bytes(50000, 1)}))
	if err != nil || info.UnpackedBytes != int64(cpioBytes) {
		t.Errorf("ScanInitrd = %+v, %v; want %d bytes unpacked", info, err, cpioBytes)
	}
}
