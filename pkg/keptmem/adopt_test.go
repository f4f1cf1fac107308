package keptmem_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// TestAdoptFromRegion is the path of a generation: the previous one wrote
// its cache to the region, this one opens the index and adopts it into its
// own cache without hashing; a module whose kept bytes flipped is found by
// its first use, and only that one.
func TestAdoptFromRegion(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{
		"vmlinuz":   bytes.Repeat([]byte("kernel bytes "), 5000),
		"base.cpio": bytes.Repeat([]byte("070701 base "), 3000),
	}
	m := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: "kept"}
	prev := modcache.New(modcache.Options{})
	defer prev.Close()
	var blobs []keptmem.Blob
	for _, name := range []string{"vmlinuz", "base.cpio"} {
		b := files[name]
		sum := sha256.Sum256(b)
		mod := bootimage.Module{Name: name, Role: bootimage.RoleInitrd, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
		if name == "vmlinuz" {
			mod.Role = bootimage.RoleKernel
		}
		m.Modules = append(m.Modules, mod)
		e, err := prev.Add(ctx, mod, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, e) // a cache entry is a Blob
	}

	path := filepath.Join(t.TempDir(), "pmem0")
	if err := os.WriteFile(path, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := keptmem.OpenFileDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := keptmem.Write(dev, blobs, keptmem.WriteOptions{Generation: 1}); err != nil {
		t.Fatalf("Write: %v", err)
	}

	// Across the kexec, a bit of the kernel's kept bytes flips.
	ix, err := keptmem.Open(dev)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	kernel := m.Modules[0]
	for _, e := range ix.Entries() {
		if e.Digest == kernel.SHA256 {
			if _, err := dev.WriteAt([]byte{'K'}, e.Offset+7); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := keptmem.Open(dev); err != nil {
		t.Fatalf("Open after a module byte flipped: %v (the index does not cover module bytes)", err)
	}

	next := modcache.New(modcache.Options{})
	defer next.Close()
	rep, err := next.AdoptSections(ctx, ix, m)
	if err != nil {
		t.Fatalf("AdoptSections: %v", err)
	}
	if rep.Modules != 2 || rep.Unverified != 2 {
		t.Errorf("adopted %+v, want 2 modules unverified", rep)
	}
	if _, err := next.Get(m.Modules[1].SHA256); err != nil {
		t.Errorf("Get(base.cpio): %v", err)
	}
	if _, err := next.Get(kernel.SHA256); !errors.Is(err, modcache.ErrDigestMismatch) {
		t.Errorf("Get(the flipped kernel) = %v, want ErrDigestMismatch", err)
	}
}
