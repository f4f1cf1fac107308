package modcache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
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
