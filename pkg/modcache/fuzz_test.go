package modcache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// FuzzRehydrate fills a cache from a handoff directory that a previous
// generation, a careless operator or an attacker wrote: modules split from
// the input at NUL bytes, each carried as a file named by its digest, and
// one control byte per module that damages it (file missing, truncated,
// grown, replaced, a wrong size or digest in the manifest, a digest given
// twice). Whatever the damage, Rehydrate (and Adopt, which hashes later)
// caches only bytes that hash to their digest.
func FuzzRehydrate(f *testing.F) {
	f.Add([]byte("kernel bytes\x00initrd piece one\x00site"), []byte{0, 0, 0}, false)
	f.Add([]byte("kernel\x00kernel\x00x"), []byte{1, 2, 3, 4, 5, 6, 7}, true)
	f.Add([]byte("\x00\x00"), []byte{8}, false)
	f.Fuzz(func(t *testing.T, data, damage []byte, adopt bool) {
		dir := fuzzDir(t)
		m := &bootimage.Manifest{Version: 1, Name: "fuzz"}
		for i, content := range bytes.SplitN(data, []byte{0}, 8) {
			sum := sha256.Sum256(content)
			digest := hex.EncodeToString(sum[:])
			role := bootimage.RoleInitrd
			if i == 0 {
				role = bootimage.RoleKernel
			}
			mod := bootimage.Module{Name: "m" + string(rune('a'+i)), Role: role, Size: int64(len(content)), SHA256: digest, Source: "m"}
			file, write := content, true
			var d byte
			if i < len(damage) {
				d = damage[i]
			}
			switch d % 9 {
			case 1:
				write = false
			case 2:
				if len(file) > 0 {
					file = file[:len(file)-1]
				}
			case 3:
				file = append(append([]byte(nil), file...), 'x')
			case 4:
				file = bytes.Repeat([]byte{d}, len(file))
			case 5:
				mod.Size++
			case 6:
				mod.SHA256 = hex.EncodeToString(bytes.Repeat([]byte{d}, 32))
			case 7:
				if len(m.Modules) > 0 {
					mod.SHA256, mod.Size = m.Modules[0].SHA256, m.Modules[0].Size
					write = false
				}
			case 8:
				mod.SHA256 = "not a digest"
			}
			if write {
				if err := os.WriteFile(filepath.Join(dir, digest), file, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			m.Modules = append(m.Modules, mod)
		}
		c := modcache.New(modcache.Options{})
		defer c.Close()
		rehydrate := c.Rehydrate
		if adopt {
			rehydrate = c.Adopt
		}
		rep, _ := rehydrate(context.Background(), dir, m)
		for _, mod := range m.Modules {
			e, err := c.Get(mod.SHA256)
			if err != nil {
				continue
			}
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(e, 0, e.Size())); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != mod.SHA256 {
				t.Fatalf("module %s cached as %s holds bytes of digest %s", mod.Name, mod.SHA256, got)
			}
		}
		if rep.Modules > len(m.Modules) {
			t.Errorf("report says %d modules rehydrated of %d", rep.Modules, len(m.Modules))
		}
	})
}

// fuzzDir is a new directory, removed when the input is done. t.TempDir
// is not used: with it the fuzzers ran a handful of inputs a minute.
func fuzzDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "fuzz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
