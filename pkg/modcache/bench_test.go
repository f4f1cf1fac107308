package modcache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

const benchSize = 64 << 20

var benchData = content(99, benchSize)

// memSource serves one module from memory.
type memSource []byte

func (s memSource) Open(context.Context, bootimage.Module) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s)), nil
}

// BenchmarkSync measures a cache miss of a 64 MiB module: copy into a new
// memfd while hashing, verify, seal. Compare with BenchmarkSHA256Baseline.
// Because a shared machine's load drifts between two benchmarks, each
// iteration also hashes the same bytes with crypto/sha256 alone (untimed)
// and the benchmark reports the paired ratio as "of-sha256" (1 = as fast as
// hashing alone).
func BenchmarkSync(b *testing.B) {
	m := &bootimage.Manifest{Modules: []bootimage.Module{mod("big", bootimage.RoleInitrd, "big", benchData)}}
	ctx := context.Background()
	var syncTime, shaTime time.Duration
	b.SetBytes(benchSize)
	for b.Loop() {
		c := modcache.New(modcache.Options{})
		start := time.Now()
		if _, err := c.Sync(ctx, m, memSource(benchData)); err != nil {
			b.Fatal(err)
		}
		syncTime += time.Since(start)
		b.StopTimer()
		c.Close()
		start = time.Now()
		sha256.Sum256(benchData)
		shaTime += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(shaTime)/float64(syncTime), "of-sha256")
}

// BenchmarkSHA256Baseline hashes the same bytes with crypto/sha256 alone:
// the floor any verified copy has to pay.
func BenchmarkSHA256Baseline(b *testing.B) {
	b.SetBytes(benchSize)
	for b.Loop() {
		sha256.Sum256(benchData)
	}
}

// BenchmarkRehydrate compares, on an 18 MiB carried module (the size of
// the test image's carried cache), what a new generation spends before its
// cache is ready: "adopt" copies the handoff file into a sealed memfd
// without hashing (Adopt), "eager" copies while hashing (Rehydrate), and
// "adopt+verify" adds the deferred verification (VerifyPending) that the
// daemon runs in the background. The handoff file sits in a tmpfs (as the
// initramfs rootfs does) when /dev/shm exists.
func BenchmarkRehydrate(b *testing.B) {
	const size = 18 << 20
	data := content(7, size)
	m := &bootimage.Manifest{Modules: []bootimage.Module{mod("carried", bootimage.RoleInitrd, "carried", data)}}
	for _, bc := range []struct {
		name string
		run  func(*modcache.Cache, string) error
	}{
		{"adopt", func(c *modcache.Cache, dir string) error {
			_, err := c.Adopt(context.Background(), dir, m)
			return err
		}},
		{"eager", func(c *modcache.Cache, dir string) error {
			_, err := c.Rehydrate(context.Background(), dir, m)
			return err
		}},
		{"adopt+verify", func(c *modcache.Cache, dir string) error {
			if _, err := c.Adopt(context.Background(), dir, m); err != nil {
				return err
			}
			_, err := c.VerifyPending(context.Background())
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			parent := ""
			if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
				parent = "/dev/shm"
			}
			dir, err := os.MkdirTemp(parent, "modcache-bench")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			b.SetBytes(size)
			for b.Loop() {
				b.StopTimer()
				if err := os.WriteFile(filepath.Join(dir, m.Modules[0].SHA256), data, 0o600); err != nil {
					b.Fatal(err)
				}
				c := modcache.New(modcache.Options{})
				b.StartTimer()
				if err := bc.run(c, dir); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
		})
	}
}
