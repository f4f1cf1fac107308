package statindex

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// FileName is the index's file in the state directory.
const FileName = "stat-index.json"

// Granularity is the margin of the racy-clean test: the coarsest
// modification time a boot file system keeps (FAT's 2 seconds).
const Granularity = 2 * time.Second

// version is the index file's format.
const version = 1

// record is what the index knows of one path.
type record struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	CtimeNS int64  `json:"ctime_ns"`
	SHA256  string `json:"sha256"`
}

type file struct {
	Version int `json:"version"`
	// WrittenNS is when the run that wrote the index began.
	WrittenNS int64             `json:"written_ns"`
	Records   map[string]record `json:"records"`
}

// Report counts what describing files cost.
type Report struct {
	// Files is the number of files described; Hits those whose record
	// matched (not read); Hashed those read and hashed; Racy those of
	// Hashed whose record matched but was too recent to trust.
	Files  int `json:"files"`
	Hits   int `json:"hits"`
	Hashed int `json:"hashed"`
	Racy   int `json:"racy"`
	// BytesRead counts every byte read from the files: hashing and
	// content checks.
	BytesRead int64 `json:"bytes_read"`
	// Read names the files hashed, in the order described.
	Read []string `json:"read,omitempty"`
}

// Index is an open index. It is not safe for concurrent use.
type Index struct {
	path    string
	written time.Time // of the index as loaded
	started time.Time // this run's write time
	records map[string]record
	report  Report
}

// Open loads the index at path (a missing or unreadable one is empty: an
// index only saves reads) and starts a run at now.
func Open(path string, now time.Time) *Index {
	x := &Index{path: path, started: now, records: map[string]record{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return x
	}
	var f file
	if json.Unmarshal(b, &f) != nil || f.Version != version || f.Records == nil {
		return x
	}
	x.records, x.written = f.Records, time.Unix(0, f.WrittenNS)
	return x
}

// Report returns what the run read so far.
func (x *Index) Report() Report { return x.report }

// Module describes the file at path as a module of the role: from its
// record when the file's stat data match it and it is not racy, else by
// reading and hashing it (and, with check, checking its content as
// bootimage.FromFiles does). The module's name is the file's base name and
// its Source the path.
func (x *Index) Module(path string, role bootimage.Role, check bool) (bootimage.Module, error) {
	x.report.Files++
	mod := bootimage.Module{Name: filepath.Base(path), Role: role, Source: path}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if st, ok := statOf(fi); ok {
			if r, ok := x.records[path]; ok && r.matches(st) {
				if time.Unix(0, max(st.MtimeNS, st.CtimeNS)).Before(x.written.Add(-Granularity)) {
					x.report.Hits++
					mod.Size, mod.SHA256 = r.Size, r.SHA256
					return mod, nil
				}
				x.report.Racy++
			}
		}
	}
	sum, size, st, ok, err := x.hash(path, role, check)
	if err != nil {
		return bootimage.Module{}, err
	}
	x.report.Hashed++
	x.report.Read = append(x.report.Read, path)
	mod.Size, mod.SHA256 = size, sum
	if ok {
		st.SHA256 = sum
		x.records[path] = st
	} else {
		delete(x.records, path)
	}
	return mod, nil
}

func (r record) matches(st record) bool {
	return r.Dev == st.Dev && r.Ino == st.Ino && r.Size == st.Size && r.MtimeNS == st.MtimeNS && r.CtimeNS == st.CtimeNS
}

// hash reads the file once through a descriptor opened without blocking
// (a FIFO or device is refused). The stat data recorded are those fstat
// gave before the read, kept only when fstat after it agrees (a file
// written meanwhile is not recorded).
func (x *Index) hash(path string, role bootimage.Role, check bool) (string, int64, record, bool, error) {
	f, size, err := bootimage.OpenFile(path)
	if err != nil {
		return "", 0, record{}, false, fmt.Errorf("%s: %w", role, err)
	}
	defer f.Close()
	before, _ := f.Stat()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, size))
	x.report.BytesRead += n
	if err != nil {
		return "", 0, record{}, false, fmt.Errorf("hash %s: %w", path, err)
	}
	if n != size {
		return "", 0, record{}, false, fmt.Errorf("hash %s: read %d bytes of %d: the file shrank while read", path, n, size)
	}
	if check {
		cr := &countingReaderAt{r: f}
		switch role {
		case bootimage.RoleKernel:
			err = bootimage.CheckKernelPayload(cr, n)
		case bootimage.RoleInitrd:
			err = bootimage.CheckInitrd(cr, n)
		}
		x.report.BytesRead += cr.n
		if err != nil {
			return "", 0, record{}, false, fmt.Errorf("%s: %w", path, err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	after, err := f.Stat()
	if err != nil || before == nil {
		return sum, n, record{}, false, nil
	}
	st0, ok0 := statOf(before)
	st1, ok1 := statOf(after)
	return sum, n, st0, ok0 && ok1 && st0.matches(st1), nil
}

// Save writes the index atomically with the run's start as its write
// time, keeping only the records of files that still exist.
func (x *Index) Save() error {
	for p := range x.records {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			delete(x.records, p)
		}
	}
	f := file{Version: version, WrittenNS: x.started.UnixNano(), Records: x.records}
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(x.path), 0o755); err != nil {
		return fmt.Errorf("stat index: %w", err)
	}
	if err := atomicfile.WriteFile(x.path, b, 0o644); err != nil {
		return fmt.Errorf("stat index: %w", err)
	}
	return nil
}

// Paths returns the paths the index has records for, sorted.
func (x *Index) Paths() []string {
	var ps []string
	for p := range x.records {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}
