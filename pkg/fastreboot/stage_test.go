package fastreboot

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// padded returns the initrd pieces concatenated, each padded to 4 bytes:
// what the initrd must start with.
func padded(im testimage.Image) []byte {
	var b []byte
	for _, p := range im.Initrds {
		b = append(b, p.Data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func TestStageLoadsCompleteImage(t *testing.T) {
	im := testimage.Default()
	im.Initrds[2].Data = testimage.Cpio(testimage.File{Name: "etc/fastreboot-release", Data: []byte("v1")}) // not a multiple of 4? make sure padding happens
	im.Initrds = append(im.Initrds, testimage.Blob{Name: "odd.cpio.zst", Data: testimage.Zstd(testimage.Cpio(testimage.File{Name: "x", Data: []byte("odd")}))})
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	src := &countingSource{src: modcache.DirSource(dir)}
	mc := New(newCache(t), Options{
		Root:   fakeTree(t, goodTree),
		Loader: loader,
		Now:    stepClock(t0, time.Millisecond),
		Logger: testLogger(t),
	})

	rep, err := mc.Stage(context.Background(), m, src, StageOptions{Reason: ReasonUpdate})
	if err != nil {
		t.Fatal(err)
	}
	calls, img := loader.state()
	if calls != 1 || img == nil {
		t.Fatalf("loader called %d times", calls)
	}
	if got := testimage.Digest(img.kernel); got != m.Kernel().SHA256 {
		t.Errorf("kernel fd content hashes to %s, want %s", got, m.Kernel().SHA256)
	}
	if img.cmdline != im.Cmdline || img.flags != 0 {
		t.Errorf("cmdline %q flags %#x", img.cmdline, img.flags)
	}
	if runtimeSealed := img.initrdSeals; runtimeSealed != -1 && runtimeSealed != sealAllValue {
		t.Errorf("initrd seals %#x, want %#x", runtimeSealed, sealAllValue)
	}

	// The initrd is the pieces, padded, then the handoff piece.
	want := padded(im)
	if !bytes.HasPrefix(img.initrd, want) {
		t.Fatalf("initrd does not start with the padded pieces")
	}
	if len(want)%4 == 0 && len(im.Initrds[3].Data)%4 == 0 {
		t.Errorf("test image needs a piece whose length is not a multiple of 4")
	}
	h, mods := handoffFromPiece(t, img.initrd[len(want):])
	wantH := &Handoff{
		Version:    HandoffVersion,
		Generation: 2,
		Reason:     ReasonUpdate,
		Timeline:   Timeline{StageStart: t0, StageEnd: t0.Add(4 * time.Millisecond)},
		Manifest:   *m,
	}
	for _, mod := range m.Modules {
		wantH.Carried = append(wantH.Carried, mod.SHA256)
	}
	slices.Sort(wantH.Carried)
	if diff := cmp.Diff(wantH, h); diff != "" {
		t.Errorf("handoff (-want +got):\n%s", diff)
	}
	for _, b := range append([]testimage.Blob{im.Kernel}, im.Initrds...) {
		if mods[testimage.Digest(b.Data)] != string(b.Data) {
			t.Errorf("carried module %s differs or is missing", b.Name)
		}
	}
	// The whole initrd is one the kernel can unpack.
	if err := bootimage.CheckInitrd(bytes.NewReader(img.initrd), int64(len(img.initrd))); err != nil {
		t.Errorf("assembled initrd: %v", err)
	}

	var total int64
	for _, mod := range m.Modules {
		total += mod.Size
	}
	wantRep := StageReport{
		Manifest:       m.Name,
		KernelSHA256:   m.Kernel().SHA256,
		CmdlineBytes:   len(m.Cmdline),
		Cmdline:        m.Cmdline,
		Generation:     2,
		Reason:         ReasonUpdate,
		Loaded:         true,
		Load:           LoadFile,
		Sync:           modcache.SyncReport{Misses: 5, BytesRead: total, Read: []string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz", "site.cpio", "odd.cpio.zst"}},
		BytesRead:      total,
		InitrdBytes:    int64(len(img.initrd)),
		PiecesBytes:    total - m.Kernel().Size,
		PaddingBytes:   int64(len(want)) - (total - m.Kernel().Size),
		HandoffBytes:   int64(len(img.initrd) - len(want)),
		CarriedModules: 5,
		CarriedBytes:   total,
		CopiedInKernel: rep.CopiedInKernel, // depends on the kernel: checked below
		CopiedInUser:   rep.CopiedInUser,
		Timeline:       wantH.Timeline,
		Durations: Durations{
			Validate: time.Millisecond, Sync: time.Millisecond, Assemble: time.Millisecond,
			Handoff: 2 * time.Millisecond, Load: time.Millisecond, Total: 6 * time.Millisecond,
		},
	}
	if diff := cmp.Diff(wantRep, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if rep.CopiedInKernel+rep.CopiedInUser != rep.PiecesBytes+rep.CarriedBytes {
		t.Errorf("copied %d in kernel + %d in user, want pieces %d + carried %d", rep.CopiedInKernel, rep.CopiedInUser, rep.PiecesBytes, rep.CarriedBytes)
	}
	if staged, ok := mc.Staged(); !ok || staged.Generation != 2 {
		t.Errorf("Staged() = %+v, %v", staged, ok)
	}

	// Staging again reads nothing: every module is a hit.
	src.opens = nil
	rep2, err := mc.Stage(context.Background(), m, src, StageOptions{Reason: ReasonManual})
	if err != nil {
		t.Fatal(err)
	}
	if len(src.opens) != 0 || rep2.Sync.Hits != 5 || rep2.Sync.BytesRead != 0 {
		t.Errorf("second stage opened %v, sync %+v", src.opens, rep2.Sync)
	}
	if _, img2 := loader.state(); !bytes.Equal(img2.initrd[:len(want)], want) {
		t.Errorf("second image differs in its pieces")
	}
}

// sealAllValue is F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE.
const sealAllValue = 0x1 | 0x2 | 0x4 | 0x8

func TestStageCmdlineLimit(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	// The test kernel's cmdline_size is 2047, as Debian's: kexec_file_load
	// takes 2047 - 1 (the NUL) - 30 (room for elfcorehdr=) = 2016 bytes.
	m.Cmdline = strings.Repeat("a", 2016)
	if _, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate}); err != nil {
		t.Fatalf("cmdline of %d bytes: %v", len(m.Cmdline), err)
	}
	for _, n := range []int{2017, bootimage.MaxCmdline - 1, bootimage.MaxCmdline} {
		m.Cmdline = strings.Repeat("a", n)
		_, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate})
		if !errors.Is(err, bootimage.ErrCmdlineTooLong) || !strings.Contains(err.Error(), m.Name) {
			t.Errorf("cmdline of %d bytes: %v, want ErrCmdlineTooLong naming %q", len(m.Cmdline), err, m.Name)
		}
	}
	if calls, _ := loader.state(); calls != 1 {
		t.Errorf("loader called %d times, want 1", calls)
	}
}

func TestStageBadInputsLoadNothing(t *testing.T) {
	gz := testimage.Gzip(testimage.Cpio(testimage.File{Name: "init", Data: testimage.Bytes(9000, 3)}))
	for _, tc := range []struct {
		name string
		// edit changes the image before it is written; files changes the
		// directory afterwards and may return another manifest path.
		edit     func(im *testimage.Image)
		files    func(t *testing.T, dir, manifest string) string
		reason   Reason
		wantIs   error
		wantName string
	}{
		{
			name:   "not a bzImage",
			edit:   func(im *testimage.Image) { im.Kernel.Data = testimage.Bytes(8192, 9) },
			wantIs: bootimage.ErrNotBzImage, wantName: `"vmlinuz"`,
		},
		{
			name: "truncated bzImage",
			edit: func(im *testimage.Image) {
				k := testimage.Kernel(testimage.KernelOptions{PayloadBytes: 4000})
				im.Kernel.Data = k[:len(k)-300]
			},
			wantIs: bootimage.ErrNotBzImage, wantName: `"vmlinuz"`,
		},
		{
			// The header checks; the payload's gzip CRC does not.
			name: "corrupt compressed kernel",
			edit: func(im *testimage.Image) {
				im.Kernel.Data = testimage.CorruptPayload(testimage.Kernel(testimage.KernelOptions{PayloadBytes: 20000}))
			},
			wantIs: bootimage.ErrNotBzImage, wantName: "gzip compressed kernel",
		},
		{
			name:   "kernel without 64-bit entry",
			edit:   func(im *testimage.Image) { im.Kernel.Data = testimage.Kernel(testimage.KernelOptions{Not64Bit: true}) },
			wantIs: bootimage.ErrNotBzImage, wantName: `"vmlinuz"`,
		},
		{
			name:   "bad initrd magic",
			edit:   func(im *testimage.Image) { im.Initrds[1].Data = []byte("this is no initramfs, just text\n") },
			wantIs: bootimage.ErrBadInitrd, wantName: `"kmods.cpio.xz"`,
		},
		{
			name:   "truncated compressed stream",
			edit:   func(im *testimage.Image) { im.Initrds[0].Data = gz[:len(gz)/2] },
			wantIs: bootimage.ErrBadInitrd, wantName: `"base.cpio.gz"`,
		},
		{
			name: "truncated cpio",
			edit: func(im *testimage.Image) {
				c := testimage.Cpio(testimage.File{Name: "etc/x", Data: testimage.Bytes(500, 4)})
				im.Initrds[2].Data = c[:300]
			},
			wantIs: bootimage.ErrBadInitrd, wantName: `"site.cpio"`,
		},
		{
			name: "digest mismatch",
			files: func(t *testing.T, dir, manifest string) string {
				p := filepath.Join(dir, "site.cpio")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return manifest
			},
			wantIs: modcache.ErrDigestMismatch, wantName: `"site.cpio"`,
		},
		{
			name: "size mismatch",
			files: func(t *testing.T, dir, manifest string) string {
				if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("short"), 0o644); err != nil {
					t.Fatal(err)
				}
				return manifest
			},
			wantIs: modcache.ErrSizeMismatch, wantName: `"vmlinuz"`,
		},
		{
			name: "missing module file",
			files: func(t *testing.T, dir, manifest string) string {
				if err := os.Remove(filepath.Join(dir, "kmods.cpio.xz")); err != nil {
					t.Fatal(err)
				}
				return manifest
			},
			wantIs: fs.ErrNotExist, wantName: `"kmods.cpio.xz"`,
		},
		{
			name:   "cmdline longer than 2047 bytes",
			edit:   func(im *testimage.Image) { im.Cmdline = strings.Repeat("x", 2048) },
			wantIs: bootimage.ErrCmdlineTooLong, wantName: "manifest.json",
		},
		{
			name: "unreadable manifest",
			files: func(t *testing.T, dir, manifest string) string {
				return filepath.Join(dir, "nonexistent.json")
			},
			wantIs: fs.ErrNotExist, wantName: "nonexistent.json",
		},
		{
			name: "manifest not JSON",
			files: func(t *testing.T, dir, manifest string) string {
				if err := os.WriteFile(manifest, []byte("kernel=vmlinuz\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return manifest
			},
			wantIs: bootimage.ErrInvalid, wantName: "manifest.json",
		},
		{
			name: "unknown schema",
			files: func(t *testing.T, dir, manifest string) string {
				b, err := os.ReadFile(manifest)
				if err != nil {
					t.Fatal(err)
				}
				b = bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 99`), 1)
				if err := os.WriteFile(manifest, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return manifest
			},
			wantIs: bootimage.ErrSchema, wantName: "manifest.json",
		},
		{
			name:     "cold is not a reason to stage",
			reason:   ReasonCold,
			wantName: `reason "cold"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good image is loaded first; the bad one must not replace it.
			good := testimage.Default()
			goodDir := t.TempDir()
			goodM, _, err := good.Write(goodDir)
			if err != nil {
				t.Fatal(err)
			}
			loader := &fakeLoader{}
			mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
			if _, err := mc.Stage(context.Background(), goodM, modcache.DirSource(goodDir), StageOptions{Reason: ReasonUpdate}); err != nil {
				t.Fatal(err)
			}
			_, before := loader.state()

			// Every module differs from the good image's, so that each is
			// a miss and is read.
			im := testimage.Default()
			im.Name = "bad"
			im.Kernel.Data = testimage.Kernel(testimage.KernelOptions{Version: "6.1.0-bad"})
			im.Initrds[0].Data = testimage.Gzip(testimage.Cpio(testimage.File{Name: "init", Data: []byte("bad")}))
			im.Initrds[1].Data = testimage.Xz(testimage.Cpio(testimage.File{Name: "lib/modules/bad.ko", Data: testimage.Bytes(100, 5)}))
			im.Initrds[2].Data = testimage.Cpio(testimage.File{Name: "etc/fastreboot-release", Data: []byte("bad\n")})
			if tc.edit != nil {
				tc.edit(&im)
			}
			dir := t.TempDir()
			_, path, err := im.Write(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.files != nil {
				path = tc.files(t, dir, path)
			}
			_, err = mc.StageFile(context.Background(), path, StageOptions{Reason: tc.reason})
			if err == nil {
				t.Fatal("Stage succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantName) {
				t.Errorf("err = %v, does not name %s", err, tc.wantName)
			}
			calls, after := loader.state()
			if calls != 1 || after != before {
				t.Errorf("loader called %d times (want only the good stage); loaded image replaced: %v", calls, after != before)
			}
			if staged, _ := mc.Staged(); staged.Manifest != goodM.Name {
				t.Errorf("Staged() = %q, want the good image", staged.Manifest)
			}
		})
	}
}

func TestStageLoaderFailureKeepsPrevious(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	if _, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate}); err != nil {
		t.Fatal(err)
	}
	_, before := loader.state()
	loader.err = &KexecError{Op: "kexec_file_load", Errno: syscall.EPERM}
	_, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonManual})
	if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "stage test") {
		t.Errorf("err = %v", err)
	}
	if _, after := loader.state(); after != before {
		t.Error("loaded image replaced by a failed load")
	}
	if staged, _ := mc.Staged(); staged.Reason != ReasonUpdate {
		t.Errorf("Staged() reason %q, want the first stage's", staged.Reason)
	}
}

func TestStageCanceled(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mc.Stage(ctx, m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if calls, _ := loader.state(); calls != 0 {
		t.Errorf("loader called %d times", calls)
	}
}

func TestStageCarryNone(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonCrash, Carry: CarryNone, Generation: 7})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	h, mods := handoffFromPiece(t, img.initrd[len(padded(im)):])
	if len(mods) != 0 || len(h.Carried) != 0 || h.Generation != 8 || h.Reason != ReasonCrash {
		t.Errorf("handoff: carried %v, %d files, generation %d, reason %q", h.Carried, len(mods), h.Generation, h.Reason)
	}
	if rep.CarriedModules != 0 || rep.CarriedBytes != 0 || rep.HandoffBytes > 4096 {
		t.Errorf("report: %d carried modules, %d bytes, handoff %d bytes", rep.CarriedModules, rep.CarriedBytes, rep.HandoffBytes)
	}
}

// The bytes the caller read to learn the digests (StageOptions.Hashed)
// are in the report and in its BytesRead, with the cache's.
func TestStageCountsHashedBytes(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}})
	hashed := &HashReport{Files: 4, Hits: 3, Hashed: 1, BytesRead: 1234, Read: []string{"/boot/site.cpio"}}
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Hashed: hashed, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hashed != hashed || rep.Sync.BytesRead == 0 || rep.BytesRead != rep.Sync.BytesRead+1234 {
		t.Errorf("hashed %+v, bytes read %d (sync %d)", rep.Hashed, rep.BytesRead, rep.Sync.BytesRead)
	}
}

func TestStageDryRun(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	rb := &fakeRebooter{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader, Rebooter: rb, Logger: testLogger(t)})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || rep.Loaded || rep.InitrdBytes == 0 || rep.Sync.Misses != 4 {
		t.Errorf("report %+v", rep)
	}
	plan, err := mc.PlanReboot(RebootOptions{DryRun: true})
	if err != nil || plan.Cmd != RebootKexec || !plan.DryRun || plan.Staged == nil {
		t.Errorf("PlanReboot = %+v, %v", plan, err)
	}
	if err := mc.Reboot(context.Background(), RebootOptions{DryRun: true}); err != nil {
		t.Errorf("Reboot: %v", err)
	}
	if calls, _ := loader.state(); calls != 0 || len(rb.calls) != 0 {
		t.Errorf("dry run made syscalls: %d loads, %v", calls, rb.calls)
	}
}

func TestReboot(t *testing.T) {
	loaded := tree(map[string]string{pathKexecLoaded: "1\n"})
	for _, tc := range []struct {
		name      string
		files     map[string]string
		fallback  Fallback
		dryRun    bool
		rebootErr map[RebootCmd]error
		wantCalls []string
		wantIs    error
		wantMode  string
	}{
		{name: "kexec", files: loaded, wantCalls: []string{"sync", "LINUX_REBOOT_CMD_KEXEC"}, wantMode: "kexec"},
		{name: "nothing loaded: refuse", files: goodTree, wantIs: ErrNotLoaded},
		{
			name: "nothing loaded: firmware", files: goodTree, fallback: FallbackFirmware,
			wantCalls: []string{"sync", "LINUX_REBOOT_CMD_RESTART"}, wantMode: "firmware",
		},
		{name: "kernel without kexec: refuse", files: tree(map[string]string{pathKexecLoaded: "-"}), wantIs: ErrNotLoaded},
		{
			name: "kernel without kexec: firmware", files: tree(map[string]string{pathKexecLoaded: "-"}), fallback: FallbackFirmware,
			wantCalls: []string{"sync", "LINUX_REBOOT_CMD_RESTART"}, wantMode: "firmware",
		},
		{
			name: "no CAP_SYS_BOOT", files: tree(map[string]string{pathKexecLoaded: "1\n", pathStatus: capEffNoBoot}),
			fallback: FallbackFirmware, wantIs: ErrNotPermitted,
		},
		{
			name: "kexec call fails: firmware", files: loaded, fallback: FallbackFirmware,
			rebootErr: map[RebootCmd]error{RebootKexec: errors.New("reboot(LINUX_REBOOT_CMD_KEXEC): invalid argument")},
			wantCalls: []string{"sync", "LINUX_REBOOT_CMD_KEXEC", "LINUX_REBOOT_CMD_RESTART"}, wantMode: "kexec",
		},
		{
			name: "kexec call fails: refuse", files: loaded,
			rebootErr: map[RebootCmd]error{RebootKexec: errors.New("reboot(LINUX_REBOOT_CMD_KEXEC): invalid argument")},
			wantCalls: []string{"sync", "LINUX_REBOOT_CMD_KEXEC"}, wantMode: "kexec",
		},
		{name: "dry run", files: loaded, dryRun: true, wantMode: "kexec"},
		{name: "dry run, nothing loaded", files: goodTree, dryRun: true, fallback: FallbackFirmware, wantMode: "firmware"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := &fakeRebooter{rebootErr: tc.rebootErr}
			mc := New(newCache(t), Options{
				Root: fakeTree(t, tc.files), Rebooter: rb, Loader: &fakeLoader{}, Logger: testLogger(t),
			})
			ro := RebootOptions{Fallback: tc.fallback, DryRun: tc.dryRun}
			plan, perr := mc.PlanReboot(ro)
			err := mc.Reboot(context.Background(), ro)
			if tc.wantIs != nil {
				if !errors.Is(err, tc.wantIs) || !errors.Is(perr, tc.wantIs) {
					t.Errorf("Reboot = %v, PlanReboot = %v; want %v", err, perr, tc.wantIs)
				}
			} else if perr != nil {
				t.Errorf("PlanReboot: %v", perr)
			}
			if tc.wantIs == nil && tc.rebootErr == nil && err != nil {
				t.Errorf("Reboot: %v", err)
			}
			if tc.rebootErr != nil && err == nil {
				t.Errorf("Reboot hid the failed reboot call")
			}
			if plan.Mode != tc.wantMode {
				t.Errorf("plan mode %q, want %q (why %q)", plan.Mode, tc.wantMode, plan.Why)
			}
			if tc.wantMode == "firmware" && plan.Why == "" {
				t.Error("firmware plan does not say why")
			}
			if diff := cmp.Diff(tc.wantCalls, rb.calls); diff != "" {
				t.Errorf("rebooter calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStageWithoutCache(t *testing.T) {
	loader := &fakeLoader{}
	mc := New(nil, Options{Root: fakeTree(t, goodTree), Loader: loader})
	_, err := mc.Stage(context.Background(), testimage.Default().Manifest(), modcache.DirSource(t.TempDir()), StageOptions{Reason: ReasonUpdate})
	if err == nil || !strings.Contains(err.Error(), "no module cache") {
		t.Errorf("err = %v", err)
	}
	if calls, _ := loader.state(); calls != 0 {
		t.Errorf("loader called %d times", calls)
	}
}

// TestStagePrefetched: a Stage given the Prefetch that read its modules
// reads nothing itself, reports the prefetch's sync as its own and starts
// its timeline at it; a failed prefetch fails the Stage with its error.
func TestStagePrefetched(t *testing.T) {
	ctx := context.Background()
	m, dir := testimage.Default().WriteTempDir(t)
	var total int64
	for _, mod := range m.Modules {
		total += mod.Size
	}
	cache := newCache(t)
	mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}, Now: stepClock(t0, time.Second)})
	pre, err := mc.Prefetch(ctx, m, modcache.DirSource(dir))
	if err != nil || pre.Sync.BytesRead != total || pre.Sync.Misses != len(m.Modules) || !pre.Start.Equal(t0) || pre.Took != time.Second {
		t.Fatalf("Prefetch = %+v, %v", pre, err)
	}
	none := &countingSource{fail: true}
	rep, err := mc.Stage(ctx, m, none, StageOptions{Prefetched: pre})
	if err != nil {
		t.Fatal(err)
	}
	if len(none.opens) != 0 {
		t.Errorf("Stage opened %v after the prefetch", none.opens)
	}
	if diff := cmp.Diff(pre.Sync, rep.Sync); diff != "" {
		t.Errorf("stage sync is not the prefetch's (-prefetch +stage):\n%s", diff)
	}
	if !rep.Timeline.StageStart.Equal(t0) || rep.Durations.Sync < pre.Took {
		t.Errorf("timeline starts %v (want %v), sync took %v (want at least the prefetch's %v)", rep.Timeline.StageStart, t0, rep.Durations.Sync, pre.Took)
	}

	bad := *m
	bad.Modules = slices.Clone(m.Modules)
	bad.Modules[1].SHA256 = strings.Repeat("0", 64)
	pre, err = mc.Prefetch(ctx, &bad, modcache.DirSource(dir))
	if !errors.Is(err, modcache.ErrDigestMismatch) || pre.Err != err {
		t.Fatalf("Prefetch of a bad module: %v (p.Err %v)", err, pre.Err)
	}
	if _, err := mc.Stage(ctx, &bad, none, StageOptions{Prefetched: pre}); !errors.Is(err, modcache.ErrDigestMismatch) || len(none.opens) != 0 {
		t.Errorf("Stage after a failed prefetch: %v, opened %v", err, none.opens)
	}
}
