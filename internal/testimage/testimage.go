// Package testimage generates tiny boot images for tests: a fake bzImage that
// has a real x86 boot protocol header and a gzip payload holding a minimal
// ELF (enough for header checks and for u-root's bzimage parser, not for
// booting), newc cpio archives ending in TRAILER!!!, their gzip, xz and zstd
// compressions, and manifests describing such files on disk.
//
// It is internal so that tests of every package can share it without making
// it part of the public API.
package testimage

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Offsets of x86 boot protocol header fields in a bzImage
// (Documentation/arch/x86/boot.rst), for tests that corrupt one.
const (
	OffSetupSects  = 0x1f1
	OffSyssize     = 0x1f4
	OffBootFlag    = 0x1fe
	OffHeaderMagic = 0x202
	OffVersion     = 0x206
	OffKernelVer   = 0x20e
	OffLoadflags   = 0x211
	OffRelocatable = 0x234
	OffXLoadflags  = 0x236
	OffPayloadOff  = 0x248
	OffPayloadLen  = 0x24c
)

// Header flag values used by the fake kernel.
const (
	LoadedHigh            = 0x01 // loadflags
	XLFKernel64           = 0x01 // xloadflags
	XLFCanBeLoadedAbove4G = 0x02 // xloadflags
)

// KernelOptions tune the fake bzImage. The zero value gives a kernel that a
// 64-bit kexec_file_load loader would accept by its header: boot protocol
// 2.15, LOADED_HIGH, relocatable, XLF_KERNEL_64 and
// XLF_CAN_BE_LOADED_ABOVE_4G.
type KernelOptions struct {
	// Version is the kernel version string (default "6.1.0-testimage").
	Version string
	// Protocol is the boot protocol version (default 0x020f).
	Protocol uint16
	// NotRelocatable clears relocatable_kernel.
	NotRelocatable bool
	// Not64Bit clears XLF_KERNEL_64 and XLF_CAN_BE_LOADED_ABOVE_4G.
	Not64Bit bool
	// PayloadBytes adds that many pseudo-random bytes to the ELF inside
	// the payload, to make larger kernels (default 0).
	PayloadBytes int
	// Payload, if set, is the compressed kernel instead of the gzip of
	// the ELF: the caller appends the 4-byte size field formats other
	// than gzip carry (see KernelBomb).
	Payload []byte
	// InitSize, if set, is the header's init_size instead of one that
	// fits the ELF.
	InitSize uint32
}

// Kernel returns a fake bzImage. Its layout is that of a real one: one
// 512-byte boot sector plus setup_sects=1 sector of real-mode setup holding
// the header and the version string, then the protected-mode part: 64 bytes
// of head code, the gzip-compressed ELF (payload_offset, payload_length),
// and a 4-byte CRC. syssize covers the protected-mode part, so a truncated
// image is detectable from the header alone.
func Kernel(opts KernelOptions) []byte {
	if opts.Version == "" {
		opts.Version = "6.1.0-testimage"
	}
	if opts.Protocol == 0 {
		opts.Protocol = 0x020f
	}
	const setupSects = 1
	const headCode = 64
	payload := opts.Payload
	if payload == nil {
		payload = gzipBytes(minimalELF(opts.PayloadBytes))
	}

	setup := make([]byte, (setupSects+1)*512)
	le := binary.LittleEndian
	setup[OffSetupSects] = setupSects
	le.PutUint16(setup[OffBootFlag:], 0xaa55)
	setup[0x200], setup[0x201] = 0xeb, 0x66 // jmp short past the header
	copy(setup[OffHeaderMagic:], "HdrS")
	le.PutUint16(setup[OffVersion:], opts.Protocol)
	const verAt = 0x300
	le.PutUint16(setup[OffKernelVer:], verAt-0x200)
	copy(setup[verAt:len(setup)-1], opts.Version+" (testimage@fastreboot) #1 SMP")
	setup[OffLoadflags] = LoadedHigh
	le.PutUint32(setup[0x214:], 0x100000)   // code32_start
	le.PutUint32(setup[0x22c:], 0x7fffffff) // initrd_addr_max
	le.PutUint32(setup[0x230:], 0x200000)   // kernel_alignment
	if !opts.NotRelocatable {
		setup[OffRelocatable] = 1
	}
	setup[0x235] = 21 // min_alignment
	if !opts.Not64Bit {
		le.PutUint16(setup[OffXLoadflags:], XLFKernel64|XLFCanBeLoadedAbove4G)
	}
	le.PutUint32(setup[0x238:], 2047) // cmdline_size
	le.PutUint32(setup[OffPayloadOff:], headCode)
	le.PutUint32(setup[OffPayloadLen:], uint32(len(payload)))
	le.PutUint64(setup[0x258:], 0x1000000) // pref_address
	initSize := opts.InitSize
	if initSize == 0 {
		initSize = uint32(4<<20+len(payload)*4) &^ 0xfff
	}
	le.PutUint32(setup[0x260:], initSize)

	pm := make([]byte, headCode, headCode+len(payload)+4)
	for i := range pm {
		pm[i] = 0xf4 // hlt
	}
	pm = append(pm, payload...)
	pm = le.AppendUint32(pm, 0) // CRC, unchecked
	le.PutUint32(setup[OffSyssize:], uint32((len(pm)+15)/16))
	if pad := len(pm) % 16; pad != 0 {
		pm = append(pm, make([]byte, 16-pad)...)
	}
	return append(setup, pm...)
}

// KernelBomb returns a fake bzImage with a valid header (init_size
// initSize) whose payload is a zstd frame of RLE blocks of zeros that
// unpacks to unpacked bytes, about 32 KiB of payload per GiB, with the
// size field saying initSize: a decompressor without a bound fills
// memory with it.
func KernelBomb(unpacked int64, initSize uint32) []byte {
	payload := ZstdZeros(unpacked)
	payload = binary.LittleEndian.AppendUint32(payload, initSize)
	return Kernel(KernelOptions{Payload: payload, InitSize: initSize})
}

// ZstdZeros returns a zstd frame (RFC 8878) of n zero bytes written as
// RLE blocks of 128 KiB: 4 bytes per block.
func ZstdZeros(n int64) []byte { return zstdFrame(nil, n, nil) }

// zstdFrame returns a zstd frame of head (a raw block), n zeros (RLE
// blocks of 128 KiB) and tail (a raw block); empty parts are left out.
func zstdFrame(head []byte, n int64, tail []byte) []byte {
	const block = 128 << 10
	// Magic, frame header descriptor 0 (no checksum, no content size),
	// window descriptor 0x38: a 128 KiB window, the largest block.
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38}
	blockHeader := func(size int64, typ uint32, last bool) {
		hdr := uint32(size)<<3 | typ<<1
		if last {
			hdr |= 1 // Last_Block
		}
		b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16))
	}
	if len(head) > 0 {
		blockHeader(int64(len(head)), 0, n == 0 && len(tail) == 0) // Raw_Block
		b = append(b, head...)
	}
	for n > 0 {
		size := min(n, block)
		n -= size
		blockHeader(size, 1, n == 0 && len(tail) == 0) // RLE_Block
		b = append(b, 0)
	}
	if len(tail) > 0 {
		blockHeader(int64(len(tail)), 0, true)
		b = append(b, tail...)
	}
	return b
}

// InitrdBomb returns a zstd-compressed newc archive holding one file of n
// zero bytes (n a multiple of 4): about 32 KiB per GiB, which the kernel
// would unpack into RAM at boot.
func InitrdBomb(n int64) []byte {
	name := "bomb\x00"
	head := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s",
		100, 0o100644, 0, 0, 1, 0, n, 0, 0, 0, 0, len(name), 0, name)
	for len(head)%4 != 0 {
		head += "\x00"
	}
	return zstdFrame([]byte(head), n, Cpio())
}

// CorruptPayload returns a copy of the bzImage k with bytes in the middle
// of its compressed kernel flipped: the header still checks.
func CorruptPayload(k []byte) []byte {
	b := bytes.Clone(k)
	le := binary.LittleEndian
	setup := (int(b[OffSetupSects]) + 1) * 512
	off := setup + int(le.Uint32(b[OffPayloadOff:]))
	n := int(le.Uint32(b[OffPayloadLen:]))
	for i := off + n/2 - 8; i < off+n/2+8; i++ {
		b[i] ^= 0x5a
	}
	return b
}

// minimalELF returns a little x86-64 ELF executable with one PT_LOAD
// segment of extra pseudo-random bytes plus a hlt loop.
func minimalELF(extra int) []byte {
	code := []byte{0xf4, 0xeb, 0xfd} // hlt; jmp .-1
	body := append(code, pseudoRandom(extra, 0x6b65726e)...)
	const ehsize, phsize = 64, 56
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x1000000 + ehsize + phsize, Phoff: ehsize, Ehsize: ehsize, Phentsize: phsize, Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	total := uint64(ehsize + phsize + len(body))
	p := elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: 0,
		Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: total, Memsz: total, Align: 0x200000,
	}
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, p)
	b.Write(body)
	return b.Bytes()
}

// pseudoRandom returns n deterministic, poorly compressible bytes.
func pseudoRandom(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// Bytes returns n deterministic pseudo-random bytes for seed, e.g. file
// contents of a given size.
func Bytes(n int, seed uint64) []byte { return pseudoRandom(n, seed) }

// File is one regular file of a cpio archive.
type File struct {
	Name string
	Data []byte
	// Mode holds the permission bits (default 0644).
	Mode uint64
}

// Cpio returns an uncompressed newc archive with the files in order, each
// preceded by records for parent directories not written yet, and the
// TRAILER!!! record.
func Cpio(files ...File) []byte {
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	dirs := map[string]bool{}
	ino := uint64(100)
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.Name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			dirs[d] = true
			r := cpio.Directory(d, 0o755)
			r.Ino, r.NLink = ino, 2
			ino++
			must(w.WriteRecord(r))
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		must(w.WriteRecord(cpio.StaticRecord(f.Data, cpio.Info{Ino: ino, Name: f.Name, Mode: cpio.S_IFREG | mode, NLink: 1})))
		ino++
	}
	must(cpio.WriteTrailer(w))
	return b.Bytes()
}

// Gzip compresses b with gzip.
func Gzip(b []byte) []byte { return gzipBytes(b) }

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	w, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	w.Write(b)
	must(w.Close())
	return out.Bytes()
}

// Xz compresses b with xz (CRC32 check, as the kernel's decompressor wants).
func Xz(b []byte) []byte {
	var out bytes.Buffer
	w, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&out)
	must(err)
	_, err = w.Write(b)
	must(err)
	must(w.Close())
	return out.Bytes()
}

// Zstd compresses b with zstd.
func Zstd(b []byte) []byte {
	w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	must(err)
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// Digest returns the lowercase SHA-256 hex of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Module describes data as a manifest module whose Source is name.
func Module(name string, role bootimage.Role, data []byte) bootimage.Module {
	return bootimage.Module{Name: name, Role: role, Size: int64(len(data)), SHA256: Digest(data), Source: name}
}

// Blob is one named module content for Image.
type Blob struct {
	Name string
	Data []byte
}

// Image is a boot image for tests: a kernel, initrd pieces in order, and a
// command line.
type Image struct {
	Name    string
	Cmdline string
	Kernel  Blob
	Initrds []Blob
}

// Default returns an image with a fake kernel "vmlinuz" and three pieces:
// "base.cpio.gz" (gzip), "kmods.cpio.xz" (xz) and "site.cpio"
// (uncompressed), like the QEMU guest's layout.
func Default() Image {
	return Image{
		Name:    "test",
		Cmdline: "console=ttyS0 quiet",
		Kernel:  Blob{"vmlinuz", Kernel(KernelOptions{})},
		Initrds: []Blob{
			{"base.cpio.gz", Gzip(Cpio(File{Name: "init", Data: []byte("#!/bin/sh\necho hello\n"), Mode: 0o755}, File{Name: "bin/busybox", Data: Bytes(5000, 1)}))},
			{"kmods.cpio.xz", Xz(Cpio(File{Name: "lib/modules/6.1.0/virtio_blk.ko", Data: Bytes(3001, 2)}))},
			{"site.cpio", Cpio(File{Name: "etc/fastreboot-release", Data: []byte("v1\n")})},
		},
	}
}

// Update returns two versions of Default: v2 differs from v1 in its
// site.cpio piece only, like the QEMU guest's site-v1/site-v2 update.
func Update() (v1, v2 Image) {
	v1 = Default()
	v1.Name = "v1"
	v2 = Default()
	v2.Name = "v2"
	v2.Initrds[2].Data = Cpio(File{Name: "etc/fastreboot-release", Data: []byte("v2\n")})
	return v1, v2
}

// WriteTemp is Write into a new temporary directory of t; it fails t on
// error.
func (im Image) WriteTemp(t testing.TB) (*bootimage.Manifest, string) {
	t.Helper()
	m, p, err := im.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return m, p
}

// WriteTempDir is WriteTemp returning the directory the image is in (a
// modcache.DirSource for it).
func (im Image) WriteTempDir(t testing.TB) (*bootimage.Manifest, string) {
	t.Helper()
	m, p := im.WriteTemp(t)
	return m, filepath.Dir(p)
}

// TotalSize is the sum of m's module sizes.
func TotalSize(m *bootimage.Manifest) int64 {
	var n int64
	for _, mod := range m.Modules {
		n += mod.Size
	}
	return n
}

// Manifest describes the image; each module's Source is its name.
func (im Image) Manifest() *bootimage.Manifest {
	m := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: im.Name, Cmdline: im.Cmdline}
	m.Modules = append(m.Modules, Module(im.Kernel.Name, bootimage.RoleKernel, im.Kernel.Data))
	for _, b := range im.Initrds {
		m.Modules = append(m.Modules, Module(b.Name, bootimage.RoleInitrd, b.Data))
	}
	return m
}

// Write stores every module as dir/<name> and the manifest as
// dir/manifest.json, and returns the manifest and its path.
func (im Image) Write(dir string) (*bootimage.Manifest, string, error) {
	for _, b := range append([]Blob{im.Kernel}, im.Initrds...) {
		if err := os.WriteFile(filepath.Join(dir, b.Name), b.Data, 0o644); err != nil {
			return nil, "", err
		}
	}
	m := im.Manifest()
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
		return nil, "", err
	}
	return m, p, nil
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("testimage: %v", err))
	}
}
