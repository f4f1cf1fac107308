// Package atomicfile replaces files so that a crash or power loss at any
// moment leaves either the old content or the new, never a mix: the state
// the next generation resumes from and the crash evidence are written this
// way.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, mode perm: it writes a temporary file
// in path's directory, syncs it, sets perm (the umask does not apply),
// renames it over path and syncs the directory so the rename itself is on
// disk. The directory must exist. A symlink at path is replaced, never
// followed: its target is untouched. On error path is unchanged and the
// temporary file is gone.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFrom(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom is WriteFile for content too large to hold in memory: fill
// writes it to the temporary file (through a buffer). When fill fails,
// path is unchanged and the temporary file is gone.
func WriteFrom(path string, perm fs.FileMode, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	werr := fill(bw)
	if werr == nil {
		werr = bw.Flush()
	}
	if werr == nil {
		werr = tmp.Chmod(perm)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := errors.Join(werr, tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// MkdirAll is os.MkdirAll(dir, perm) that also makes the directories it
// creates durable: it fsyncs the parent of each one (a new directory's
// entry is in its parent, which must reach the disk too, or a crash can
// lose the directory with the files written in it).
func MkdirAll(dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		created = append(created, d)
		if parent := filepath.Dir(d); parent == d {
			break
		}
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("making %s durable: %w", d, err)
		}
	}
	return nil
}

// syncDir fsyncs dir, making a rename in it durable; tests replace it.
var syncDir = fsyncDir

// SyncDir fsyncs the directory dir, making durable the entries created,
// renamed or removed in it (a file created in place and synced itself is
// lost in a crash if its directory entry is not).
func SyncDir(dir string) error { return syncDir(dir) }

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	return errors.Join(serr, d.Close())
}
