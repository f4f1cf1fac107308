package keptmem

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzOpen feeds Open arbitrary region bytes: it must never panic, and an
// index it accepts must keep every promise Open makes.
func FuzzOpen(f *testing.F) {
	dev := newMem(5 * BlockSize)
	if _, err := Write(dev, []Blob{newBlob([]byte("kernel")), newBlob([]byte("initrd"))}, WriteOptions{Generation: 1}); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(dev.b))
	f.Add(make([]byte, BlockSize))
	f.Add([]byte(Magic))
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	f.Add(craft(4*BlockSize, 3*BlockSize, []Entry{{a, 8192, 100}, {b, 8192, 10}}, nil).b)
	f.Add(craft(4*BlockSize, 3*BlockSize, []Entry{{a, 8192, 100}}, nil).b)
	f.Fuzz(func(t *testing.T, region []byte) {
		if len(region) > 1<<20 {
			return
		}
		ix, err := Open(&memDevice{b: region})
		if err != nil {
			if !errors.Is(err, ErrNoIndex) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooSmall) {
				t.Fatalf("Open: an error without a sentinel: %v", err)
			}
			return
		}
		h := ix.Header()
		es := ix.Entries()
		if !slices.IsSortedFunc(es, func(x, y Entry) int { return strings.Compare(x.Digest, y.Digest) }) {
			t.Fatal("entries not sorted")
		}
		byOff := slices.Clone(es)
		slices.SortFunc(byOff, func(x, y Entry) int { return int(x.Offset - y.Offset) })
		for i, e := range byOff {
			if e.Offset < DataStart || e.Offset%BlockSize != 0 || e.Size < 0 || e.end() > int64(h.IndexOffset) || int64(h.IndexOffset+h.IndexLength) > int64(len(region)) {
				t.Fatalf("entry %+v out of bounds (header %+v, region %d bytes)", e, h, len(region))
			}
			if i > 0 && e.Offset < byOff[i-1].end() {
				t.Fatalf("entries %+v and %+v overlap", byOff[i-1], e)
			}
			sec := ix.Section(e.Digest)
			if _, err := sec.ReadAt(make([]byte, min(e.Size, 16)), 0); err != nil && e.Size > 0 {
				t.Fatalf("reading entry %+v: %v", e, err)
			}
		}
	})
}

// FuzzParseCmdline: ParseCmdline never panics, and a region it reads
// reads back from its own words.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"memmap=256M!0x1f0000000", "memmap=2M!4M,4M$8M", "memmap=exactmap memmap=1M@0", "memmap=0x!", "memmap=2M!4M memmap=4M!8M", "memmap=8E!0x4000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok, err := ParseCmdline(line)
		if err != nil || !ok {
			return
		}
		if r.Size == 0 || r.Start%Align != 0 || r.Size%Align != 0 || r.Start+r.Size < r.Start {
			t.Fatalf("ParseCmdline(%q) = %+v", line, r)
		}
		again, ok, err := ParseCmdline(strings.Join(r.CmdlineWords(), " "))
		if err != nil || !ok || again != r {
			t.Fatalf("%+v -> %q -> %+v, %v, %v", r, r.CmdlineWords(), again, ok, err)
		}
	})
}
