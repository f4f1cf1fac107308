package harness

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// BuildDisk creates an ext4 image at img holding files (mke2fs -t ext4 -d,
// no root needed). size is in bytes; 0 picks the content size plus 25% and
// 16 MiB of room. Host files (File.Src) are hard-linked into the staging
// directory when possible, copied otherwise.
func BuildDisk(img string, size int64, files ...File) error {
	return BuildLabeledDisk(img, "frstorage", size, files...)
}

// BuildLabeledDisk is BuildDisk with the file system's label (frguest
// mounts the disk labelled frpersist on /var/lib/fastreboot).
func BuildLabeledDisk(img, label string, size int64, files ...File) error {
	mke2fs, err := lookTool("mke2fs")
	if err != nil {
		return fmt.Errorf("mke2fs (e2fsprogs) not found: %w", err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(img), ".disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)

	var content int64
	for _, f := range files {
		dst := filepath.Join(stage, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		n, err := stageFile(dst, f)
		if err != nil {
			return fmt.Errorf("disk %s: %s: %w", img, f.Path, err)
		}
		content += n
	}
	if size == 0 {
		size = content + content/4 + 16<<20
	}
	os.Remove(img)
	cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", label,
		"-d", stage, img, strconv.FormatInt(size/1024, 10)+"k")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", cmd, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

func stageFile(dst string, f File) (int64, error) {
	if f.Src == "" {
		return int64(len(f.Data)), os.WriteFile(dst, f.Data, os.FileMode(f.perm()))
	}
	fi, err := os.Stat(f.Src)
	if err != nil {
		return 0, err
	}
	if f.Mode == 0 && os.Link(f.Src, dst) == nil {
		return fi.Size(), nil
	}
	in, err := os.Open(f.Src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	perm := os.FileMode(f.perm())
	if f.Mode == 0 {
		perm = fi.Mode().Perm()
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
