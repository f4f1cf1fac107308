package modcache_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// writeModule stores b as dir/file and describes it as a module.
func writeModule(dir, name string, role bootimage.Role, file string, b []byte) bootimage.Module {
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
		log.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return bootimage.Module{Name: name, Role: role, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]), Source: file}
}

// Syncing a new manifest reads from storage only the pieces that changed.
func ExampleCache_Sync() {
	dir, err := os.MkdirTemp("", "modcache-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	kernel := writeModule(dir, "vmlinuz", bootimage.RoleKernel, "vmlinuz", make([]byte, 8000))
	base := writeModule(dir, "base", bootimage.RoleInitrd, "base.cpio", []byte("base initrd piece"))
	v1 := &bootimage.Manifest{Version: 1, Cmdline: "console=ttyS0", Modules: []bootimage.Module{
		kernel, base, writeModule(dir, "site", bootimage.RoleInitrd, "site-v1.cpio", []byte("v1")),
	}}
	v2 := &bootimage.Manifest{Version: 1, Cmdline: "console=ttyS0", Modules: []bootimage.Module{
		kernel, base, writeModule(dir, "site", bootimage.RoleInitrd, "site-v2.cpio", []byte("v2 site")),
	}}

	cache := modcache.New(modcache.Options{})
	defer cache.Close()
	ctx := context.Background()
	for _, m := range []*bootimage.Manifest{v1, v2} {
		rep, err := cache.Sync(ctx, m, modcache.DirSource(dir))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("hits %d, misses %d, read %d bytes: %v\n", rep.Hits, rep.Misses, rep.BytesRead, rep.Read)
	}
	s := cache.Stats()
	fmt.Printf("%d modules, %d bytes held\n", s.Modules, s.BytesHeld)

	// Output:
	// hits 0, misses 3, read 8019 bytes: [vmlinuz base site]
	// hits 2, misses 1, read 7 bytes: [site]
	// 4 modules, 8026 bytes held
}

// In the next generation the cache is filled from the handoff directory the
// previous kernel carried in the initramfs, without reading storage.
func ExampleCache_Rehydrate() {
	dir, err := os.MkdirTemp("", "modcache-handoff")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// Files in the handoff directory are named by their digest.
	k := []byte("kernel bytes")
	sum := sha256.Sum256(k)
	name := hex.EncodeToString(sum[:])
	m := &bootimage.Manifest{Version: 1, Modules: []bootimage.Module{
		writeModule(dir, "vmlinuz", bootimage.RoleKernel, name, k),
	}}

	cache := modcache.New(modcache.Options{})
	defer cache.Close()
	rep, err := cache.Rehydrate(context.Background(), dir, m)
	if err != nil {
		log.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	fmt.Printf("rehydrated %d module(s), %d bytes; %d handoff file(s) left\n", rep.Modules, rep.Bytes, len(left))

	// Output:
	// rehydrated 1 module(s), 12 bytes; 0 handoff file(s) left
}
