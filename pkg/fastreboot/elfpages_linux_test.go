//go:build linux && amd64

package fastreboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/oldmem"
)

// TestStageSegmentsMappedELF: a LoadSegments Stage given a caller-mapped
// decompressed kernel loads those bytes, exactly as it loads the cache's
// ELF, without deriving or caching one, and records it in the handoff; a
// mapped ELF of another kernel, of the wrong length, or disagreeing with
// the index is refused before anything is loaded.
func TestStageSegmentsMappedELF(t *testing.T) {
	// The reference: the same image staged from the cache's ELF.
	ref := newSegmentsRig(t, nil)
	if _, err := ref.stage(t); err != nil {
		t.Fatal(err)
	}
	elf := elfOf(t, ref.im.Kernel.Data)
	sum := sha256.Sum256(elf)
	rec := KernelELF{Kernel: ref.m.Kernel().SHA256, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(elf))}

	r := newSegmentsRig(t, nil)
	r.so.KernelELF = &MappedKernelELF{Record: rec, Data: bytes.Clone(elf)}
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Segments; !s.KernelELFMapped || s.Decompressed || s.Compressed || s.KernelELF != rec {
		t.Errorf("report: mapped %v, decompressed %v, compressed %v, ELF %+v; want the mapped ELF %+v", s.KernelELFMapped, s.Decompressed, s.Compressed, s.KernelELF, rec)
	}
	if got, want := r.loader.segment(t, "kernel"), ref.loader.segment(t, "kernel"); !bytes.Equal(got.Buf, want.Buf) || got.Phys != want.Phys || got.Size != want.Size {
		t.Errorf("kernel segment %d bytes at %#x (%#x), want the cache's ELF's: %d bytes at %#x (%#x)", len(got.Buf), got.Phys, got.Size, len(want.Buf), want.Phys, want.Size)
	}
	if n := len(r.cache.List()); n != 4 {
		t.Errorf("cache holds %d entries, want the manifest's 4 (no ELF derived)", n)
	}
	h, _ := handoffFromPiece(t, r.loader.segment(t, "initrd").Buf[len(padded(r.im)):])
	if len(h.KernelELFs) != 1 || h.KernelELFs[0] != rec {
		t.Errorf("handoff records %v, want [%+v]", h.KernelELFs, rec)
	}

	for _, tc := range []struct {
		name     string
		mapped   func() *MappedKernelELF
		index    *KernelELF
		want     string
		mismatch bool
	}{
		{name: "another kernel", mapped: func() *MappedKernelELF {
			o := rec
			o.Kernel = strings.Repeat("ab", 32)
			return &MappedKernelELF{Record: o, Data: elf}
		}, want: "is of kernel " + strings.Repeat("ab", 32)},
		{name: "short", mapped: func() *MappedKernelELF { return &MappedKernelELF{Record: rec, Data: elf[:len(elf)-1]} }, want: "bytes mapped, its record says"},
		{name: "index disagrees", mapped: func() *MappedKernelELF { return &MappedKernelELF{Record: rec, Data: elf} },
			index: &KernelELF{Kernel: rec.Kernel, SHA256: strings.Repeat("cd", 32), Size: rec.Size}, want: strings.Repeat("cd", 32), mismatch: true},
		{name: "not an ELF", mapped: func() *MappedKernelELF {
			bad := bytes.Clone(elf)
			copy(bad, "nope")
			return &MappedKernelELF{Record: rec, Data: bad}
		}, want: "mapped decompressed kernel of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSegmentsRig(t, nil)
			if tc.index != nil {
				if err := recordKernelELFs(r.opts.StateDir, *tc.index); err != nil {
					t.Fatal(err)
				}
			}
			r.so.KernelELF = tc.mapped()
			_, err := r.stage(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.mismatch != errors.Is(err, ErrKernelELFMismatch) {
				t.Errorf("err = %v, want one containing %q (ErrKernelELFMismatch: %v)", err, tc.want, tc.mismatch)
			}
			if r.loader.loads+r.loader.fileLoads != 0 {
				t.Errorf("%d loads, want none", r.loader.loads+r.loader.fileLoads)
			}
		})
	}
}

// TestBuildTwoStageWithoutPagemap: a two-stage crash image whose ELF cannot
// be located (this fake root has no /proc/self/pagemap) is still built; its
// handoff locates nothing and the crash stage will load production
// compressed.
func TestBuildTwoStageWithoutPagemap(t *testing.T) {
	r := newSegmentsRig(t, nil)
	mc := New(r.cache, r.opts)
	img, err := mc.BuildImage(t.Context(), r.m, r.src, BuildOptions{Reason: ReasonCrash, Segments: true, MemoryMap: qemuMap,
		Crash: &HandoffCrash{Mode: crashhandler.ModeTwoStage}})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.Report.InitrdBytes)
	if _, err := img.Initrd.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	h, _ := handoffFromPiece(t, b[len(padded(r.im)):])
	if h.Crash == nil || h.Crash.KernelELFPages != nil || len(h.KernelELFs) != 1 {
		t.Errorf("handoff crash %+v, ELFs %v; want two-stage, no pages, the ELF recorded", h.Crash, h.KernelELFs)
	}
}

func TestDecodeHandoffKernelELFPages(t *testing.T) {
	m := testimage.Default().Manifest()
	k := m.Kernel().SHA256
	good := oldmem.Pages{Size: 8192, SHA256: strings.Repeat("cd", 32), XXH64: "0123456789abcdef", Runs: [][2]uint64{{0x1000, 2}}}
	for _, tc := range []struct {
		name    string
		pages   KernelELFPages
		wantErr string
	}{
		{name: "good", pages: KernelELFPages{Kernel: k, Pages: good}},
		{name: "another kernel", pages: KernelELFPages{Kernel: strings.Repeat("ef", 32), Pages: good}, wantErr: "not in the manifest"},
		{name: "runs short of the size", pages: KernelELFPages{Kernel: k, Pages: oldmem.Pages{Size: 8192, SHA256: good.SHA256, XXH64: good.XXH64, Runs: [][2]uint64{{0x1000, 1}}}}, wantErr: "kernel_elf_pages"},
	} {
		p := tc.pages
		h := Handoff{Version: HandoffVersion, Generation: 2, Reason: ReasonCrash, Manifest: *m, Crash: &HandoffCrash{Mode: crashhandler.ModeTwoStage, KernelELFPages: &p}}
		js, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHandoff(bytes.NewReader(js))
		if tc.wantErr == "" && (err != nil || got.Crash.KernelELFPages.Record() != (KernelELF{Kernel: k, SHA256: good.SHA256, Size: 8192})) ||
			tc.wantErr != "" && (!errors.Is(err, ErrHandoff) || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
