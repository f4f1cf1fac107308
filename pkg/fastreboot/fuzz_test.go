package fastreboot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// The fuzzers of the outside input this package parses: kernels given to
// the segments method, the state directory's JSON files and
// /proc/self/status. FuzzDecodeHandoff and FuzzParseCmdlineMemory live
// beside their tests.

// FuzzKernelELF parses arbitrary bytes as the decompressed kernel ELF the
// segments method loads: whatever it accepts has its entry in a loaded
// segment and every segment's bytes inside the file.
func FuzzKernelELF(f *testing.F) {
	elfBytes, err := decompressKernel(bytes.NewReader(testimage.Kernel(testimage.KernelOptions{})), int64(len(testimage.Kernel(testimage.KernelOptions{}))))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(elfBytes)
	f.Add(elfBytes[:64])
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := readKernelELF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		inLoad := false
		for _, p := range k.Progs {
			if p.Off+p.Filesz < p.Off || p.Off+p.Filesz > uint64(len(b)) {
				t.Errorf("segment %+v outside the %d-byte file", p, len(b))
			}
			inLoad = inLoad || k.Entry >= p.Paddr && k.Entry-p.Paddr < p.Memsz
		}
		if !inLoad {
			t.Errorf("entry %#x in no loaded segment of %+v", k.Entry, k.Progs)
		}
	})
}

// FuzzExtractKernelELF extracts the ELF from a bzImage whose compressed
// payload is arbitrary, behind the magic of one of the kernel's formats
// (format picks it; 0: none), as the segments method does once per kernel:
// it fails or returns an ELF that CheckKernelELF can judge. The header
// around the payload stays valid: mutating a whole bzImage rarely gets
// past the header, and the fuzzer found no new coverage after its seeds.
func FuzzExtractKernelELF(f *testing.F) {
	k := testimage.Kernel(testimage.KernelOptions{})
	elfBytes, err := decompressKernel(bytes.NewReader(k), int64(len(k)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(testimage.Gzip(elfBytes), uint8(0))
	f.Add(testimage.Xz(elfBytes), uint8(0))
	f.Add(testimage.Zstd(elfBytes), uint8(0))
	f.Add([]byte("\x00\x00\x00\x00"), uint8(4))
	magics := [][]byte{nil, {0x1f, 0x8b, 0x08}, {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}, {0x5d, 0, 0}, []byte("BZh9"), {0x02, 0x21, 0x4c, 0x18}, {0x89, 'L', 'Z', 'O'}}
	f.Fuzz(func(t *testing.T, payload []byte, format uint8) {
		if len(payload) > 64<<10 {
			return
		}
		p := append(append([]byte(nil), magics[int(format)%len(magics)]...), payload...)
		b := testimage.Kernel(testimage.KernelOptions{Payload: p})
		elfBytes, err := decompressKernel(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		_ = CheckKernelELF(bytes.NewReader(elfBytes), int64(len(elfBytes)))
	})
}

// FuzzReadKernelELFs reads an arbitrary kernel-elf.json: every record it
// accepts names two digests and a size, and survives a write.
func FuzzReadKernelELFs(f *testing.F) {
	d := testimage.Digest([]byte("k"))
	f.Add([]byte(`{"version":1,"kernel_elfs":[{"kernel_sha256":"` + d + `","sha256":"` + d + `","size":65905112}]}`))
	f.Add([]byte(`{"version":1,"kernel_elfs":[{"kernel_sha256":"x","sha256":"","size":0}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := fuzzDir(t)
		if err := os.WriteFile(filepath.Join(dir, KernelELFIndexFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		idx, err := readKernelELFs(dir)
		if err != nil {
			return
		}
		var recs []KernelELF
		for k, r := range idx {
			if k != r.Kernel || !bootimage.IsSHA256Hex(r.Kernel) || !bootimage.IsSHA256Hex(r.SHA256) || r.Size <= 0 {
				t.Fatalf("accepted record %q: %+v", k, r)
			}
			recs = append(recs, r)
		}
		if len(recs) == 0 {
			return
		}
		// Written back as recordKernelELFs writes it, without its fsyncs
		// (a fuzzer that syncs runs a few inputs a minute on a busy disk).
		js, err := json.Marshal(kernelELFIndex{Version: 1, KernelELFs: recs})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, KernelELFIndexFile), js, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := readKernelELFs(dir)
		if err != nil || len(again) != len(idx) {
			t.Fatalf("index read back: %d records, %v; want %d", len(again), err, len(idx))
		}
	})
}

// FuzzLoadState reads an arbitrary state.json: what it accepts survives
// being written and read again.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"generation":2,"reason":"update","timeline":{"stage_start":"2026-12-05T03:00:00Z"},"carried":4,"rehydrated":{"modules":4,"bytes":34099936}}`))
	f.Add([]byte(`{"generation":-1,"manifest":{"version":1,"modules":null}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := fuzzDir(t)
		if err := os.WriteFile(filepath.Join(dir, StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := LoadState(dir)
		if err != nil {
			return
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshalling a loaded state: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, StateFile), js, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := LoadState(dir)
		if err != nil {
			t.Fatalf("loading back %s: %v", js, err)
		}
		if js2, _ := json.Marshal(again); !bytes.Equal(js, js2) {
			t.Errorf("state changed across a write:\n%s\n%s", js, js2)
		}
	})
}

// FuzzHasCapability reads an arbitrary /proc/PID/status for CAP_SYS_BOOT.
func FuzzHasCapability(f *testing.F) {
	f.Add([]byte(goodTree[pathStatus]))
	f.Add([]byte("CapEff:\t0000000000000000\n"))
	f.Add([]byte("CapEff: zz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "status")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ok, err := hasCapability(p, capSysBoot)
		if err != nil && ok {
			t.Errorf("hasCapability(%q) = true with error %v", b, err)
		}
		if ok && !bytes.Contains(b, []byte("CapEff:")) {
			t.Errorf("hasCapability(%q) = true without a CapEff line", b)
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
