package keptmem

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLayout(t *testing.T) {
	for _, tc := range []struct {
		line        string
		ok          bool
		cache, area int64
		err         string
	}{
		{line: "console=ttyS0"},
		{line: "memmap=64M!0x40000000", ok: true, cache: 64 << 20},
		{line: "memmap=320M!0x40000000 fastreboot.preserve=256M", ok: true, cache: 64 << 20, area: 256 << 20},
		{line: "memmap=64M!0x40000000 fastreboot.preserve=0", ok: true, cache: 64 << 20},
		{line: "fastreboot.preserve=256M", err: "keeps no region"},
		{line: "memmap=64M!0x40000000 fastreboot.preserve=lots", err: "not fastreboot.preserve=SIZE"},
		{line: "memmap=64M!0x40000000 fastreboot.preserve=1M", err: "multiple of 2 MiB"},
		{line: "memmap=64M!0x40000000 fastreboot.preserve=64M", err: "leaves the module cache 0 bytes"},
		{line: "memmap=64M!0x40000000 fastreboot.preserve=128M", err: "leaves the module cache"},
	} {
		l, ok, err := ParseLayout(tc.line)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLayout(%q) = %+v, %v; want error containing %q", tc.line, l, err, tc.err)
			}
			continue
		}
		if err != nil || ok != tc.ok || l.CacheSize != tc.cache || l.AreasSize != tc.area {
			t.Errorf("ParseLayout(%q) = %+v, %v, %v; want ok %v cache %d areas %d", tc.line, l, ok, err, tc.ok, tc.cache, tc.area)
		}
	}
}

func TestLayoutWordsRoundTrip(t *testing.T) {
	l := Layout{Region: Region{Start: 0x40000000, Size: 320 << 20}, CacheSize: 64 << 20, AreasSize: 256 << 20}
	got, ok, err := ParseLayout(strings.Join(l.Words(), " "))
	if err != nil || !ok || got != l {
		t.Fatalf("ParseLayout(%q) = %+v, %v, %v; want %+v", l.Words(), got, ok, err, l)
	}
}

func TestInheritCmdlineKeepsPreserve(t *testing.T) {
	running := "console=ttyS0 memmap=320M!0x40000000 fastreboot.preserve=256M"
	got, err := InheritCmdline("console=ttyS0 quiet -- initarg", running)
	if err != nil {
		t.Fatal(err)
	}
	if want := "console=ttyS0 quiet memmap=320M!0x40000000 fastreboot.preserve=256M -- initarg"; got != want {
		t.Errorf("InheritCmdline = %q, want %q", got, want)
	}
}

func TestWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := OpenFileDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := Window(dev, 60<<10, 8<<10); err == nil {
		t.Error("Window past the device's end: no error")
	}
	w, err := Window(dev, 16<<10, 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("x"), 8<<10); err == nil {
		t.Error("WriteAt at the window's end: no error")
	}
	b := make([]byte, 5)
	if _, err := dev.ReadAt(b, 16<<10); err != nil || string(b) != "hello" {
		t.Errorf("device at 16 KiB = %q, %v; want hello", b, err)
	}
	tail := make([]byte, 10)
	if n, err := w.ReadAt(tail, (8<<10)-4); n != 4 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt across the window's end = %d, %v; want 4, EOF", n, err)
	}
	if w.Size() != 8<<10 {
		t.Errorf("Size = %d", w.Size())
	}
}

func TestWriteInsideWindow(t *testing.T) {
	dev := newMem(64 << 10)
	w, err := Window(dev, 0, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	b := newBlob([]byte("module bytes"))
	if _, err := Write(w, []Blob{b}, WriteOptions{Generation: 2}); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(w)
	if err != nil || ix.Len() != 1 {
		t.Fatalf("Open(window) = %v, %v; want one module", ix, err)
	}
	for i, c := range dev.b[32<<10:] {
		if c != 0 {
			t.Fatalf("byte %d after the window written", 32<<10+i)
		}
	}
	if _, err := Open(dev); err == nil {
		t.Error("Open(whole device) accepted an index written for the window (its region size differs)")
	}
}

func TestRunningLayout(t *testing.T) {
	root := t.TempDir()
	if _, _, err := RunningLayout(root); err == nil || !strings.Contains(err.Error(), "running command line") {
		t.Errorf("no proc/cmdline: err = %v", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(line string) {
		if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("console=ttyS0 memmap=320M!0x40000000 fastreboot.preserve=256M")
	l, ok, err := RunningLayout(root)
	if err != nil || !ok || l.CacheSize != 64<<20 || l.AreasSize != 256<<20 {
		t.Errorf("RunningLayout = %+v, %v, %v", l, ok, err)
	}
	write("console=ttyS0 fastreboot.preserve=256M")
	if _, _, err := RunningLayout(root); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "proc/cmdline")) {
		t.Errorf("preserve without a region: err = %v, want one naming the file", err)
	}
}
