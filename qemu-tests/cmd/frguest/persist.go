package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// PersistLabel is the ext4 label of the disk frguest mounts on PersistDir
// before it starts the daemon, as a distribution's fstab mounts the root
// file system that holds /var/lib/fastreboot: the daemon's boot record
// outlives a firmware reboot there (the rest of the guest is an initramfs).
const (
	PersistLabel = "frpersist"
	PersistDir   = "/var/lib/fastreboot"
)

// ext4 superblock: at byte 1024 of the device; its magic at 0x38, its
// volume name (16 bytes, NUL-padded) at 0x78.
const (
	sbOffset    = 1024
	sbMagicOff  = 0x38
	sbLabelOff  = 0x78
	ext4Magic   = 0xEF53
	sbReadBytes = sbLabelOff + 16
)

// ext4Label returns the label of the ext4 file system at the start of r
// ("" if r holds none).
func ext4Label(r io.ReaderAt) string {
	b := make([]byte, sbReadBytes)
	if _, err := r.ReadAt(b, sbOffset); err != nil {
		return ""
	}
	if uint16(b[sbMagicOff])|uint16(b[sbMagicOff+1])<<8 != ext4Magic {
		return ""
	}
	return string(bytes.TrimRight(b[sbLabelOff:sbLabelOff+16], "\x00"))
}

// mountPersist mounts the virtio disk labelled PersistLabel, if there is
// one, read-write on PersistDir.
func mountPersist(w io.Writer, c config, sys system) error {
	ents, err := os.ReadDir(filepath.Join(c.root, "sys/block"))
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		dev := filepath.Join(c.root, "dev", e.Name())
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		label := ext4Label(f)
		f.Close()
		if label != PersistLabel {
			continue
		}
		target := filepath.Join(c.root, PersistDir)
		if err := os.MkdirAll(target, 0o700); err != nil {
			return err
		}
		if err := sys.mount(dev, target, "ext4"); err != nil {
			fmt.Fprintf(w, "frguest: persist=failed %s: %v\n", dev, err)
			return fmt.Errorf("mount %s on %s: %w", dev, target, err)
		}
		fmt.Fprintf(w, "frguest: persist=%s mounted at %s\n", "/dev/"+e.Name(), PersistDir)
		return nil
	}
	return nil
}
