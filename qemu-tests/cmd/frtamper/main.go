// Command frtamper plays the attacker with root of the trust tests: it
// stages a signed manifest with fastreboot's library exactly as `fastreboot
// stage` would (the handoff carries the signed manifest and every module),
// then, instead of loading that image, flips one byte of one carried
// module inside the handoff piece of the assembled initrd and loads the
// result with kexec_file_load. The signature still verifies in the next
// generation; the module's content check must catch the change.
//
//	frtamper MANIFEST MODULE
//
// It prints one line:
//
//	FRTAMPER module=site-v2.cpio sha256=… offset=123456 loaded=true
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: frtamper MANIFEST MODULE")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "frtamper: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path, module string) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	signed, err := manifestsig.ReadSigned(path)
	if err != nil {
		return err
	}
	m, err := bootimage.Parse(bytes.NewReader(signed.Manifest), path)
	if err != nil {
		return err
	}
	mod, ok := m.Module(module)
	if !ok {
		return fmt.Errorf("%s names no module %q", path, module)
	}
	gen := 1
	if st, err := fastreboot.LoadState(fastreboot.DefaultStateDir); err == nil {
		gen = st.Generation
	}
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	defer cache.Close()
	l := &tamperLoader{digest: mod.SHA256}
	mc := fastreboot.New(cache, fastreboot.Options{Loader: l})
	_, err = mc.Stage(ctx, m, modcache.DirSource(filepath.Dir(path)), fastreboot.StageOptions{
		Reason: fastreboot.ReasonUpdate, Generation: gen,
		Origin: &fastreboot.ManifestOrigin{Path: path, Signed: signed},
	})
	if err != nil {
		return err
	}
	fmt.Printf("FRTAMPER module=%s sha256=%s offset=%d loaded=true\n", module, mod.SHA256, l.offset)
	return nil
}

// tamperLoader changes a byte of the carried module with the given digest
// in the initrd it is handed, then loads the changed initrd for real.
type tamperLoader struct {
	digest string
	offset int64
}

func (l *tamperLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	fi, err := initrd.Stat()
	if err != nil {
		return err
	}
	b := make([]byte, fi.Size())
	if _, err := initrd.ReadAt(b, 0); err != nil {
		return err
	}
	if l.offset, err = flipCarried(b, fastreboot.HandoffModulesDir+"/"+l.digest); err != nil {
		return err
	}
	// kexec_file_load refuses a file open for writing (ETXTBSY): write,
	// close, open again read-only.
	w, err := os.CreateTemp("", "frtamper-initrd-")
	if err != nil {
		return err
	}
	defer os.Remove(w.Name())
	_, err = w.Write(b)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	f, err := os.Open(w.Name())
	if err != nil {
		return err
	}
	defer f.Close()
	return fastreboot.KexecLoader{}.FileLoad(kernel, f, cmdline, flags)
}

// flipCarried finds the newc record named name in the initrd b (the
// handoff piece is uncompressed) and inverts the middle byte of its data.
// It returns the byte's offset in b.
func flipCarried(b []byte, name string) (int64, error) {
	const hdr = 110 // newc header: magic and 13 fields of 8 hex digits
	i := bytes.LastIndex(b, append([]byte(name), 0))
	if i < hdr || string(b[i-hdr:i-hdr+6]) != "070701" {
		return 0, errors.New("no newc record " + name + " in the initrd")
	}
	field := func(n int) (int64, error) {
		off := i - hdr + 6 + 8*n
		return strconv.ParseInt(string(b[off:off+8]), 16, 64)
	}
	size, err := field(6) // c_filesize
	if err != nil {
		return 0, err
	}
	namesize, err := field(11) // c_namesize
	if err != nil {
		return 0, err
	}
	data := (int64(i-hdr) + hdr + namesize + 3) &^ 3
	if size == 0 || data+size > int64(len(b)) {
		return 0, fmt.Errorf("record %s: %d bytes at %d do not fit the initrd of %d", name, size, data, len(b))
	}
	off := data + size/2
	b[off] ^= 0xff
	return off, nil
}
