package preserve

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const mib = 1 << 20

func mustOpen(t *testing.T, d keptmem.Device) *Table {
	t.Helper()
	tb, err := Open(d)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestCreateListRemoveReopen(t *testing.T) {
	d := newMem(8 * mib)
	tb := mustOpen(t, d)
	if got := tb.List(); len(got) != 0 {
		t.Fatalf("blank part lists %v", got)
	}
	if d.syncs != 0 {
		t.Errorf("opening a blank part wrote (%d syncs)", d.syncs)
	}
	a, err := tb.Create("state", 2*mib, "/work", 3)
	if err != nil {
		t.Fatal(err)
	}
	if a.Offset != TableSize || a.Size != 2*mib || a.Cgroup != "/work" || a.Generation != 3 {
		t.Errorf("created %+v", a)
	}
	if d.syncs != 1 {
		t.Errorf("create synced %d times, want 1", d.syncs)
	}
	b, err := tb.Create("b", 4096, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	if b.Offset != TableSize+2*mib {
		t.Errorf("b at %d, want after state", b.Offset)
	}
	if err := tb.Remove("state"); err != nil {
		t.Fatal(err)
	}
	// The freed range is reused first.
	c, err := tb.Create("c", mib, "/x/y", 4)
	if err != nil {
		t.Fatal(err)
	}
	if c.Offset != TableSize {
		t.Errorf("c at %d, want the freed %d", c.Offset, TableSize)
	}
	again := mustOpen(t, d)
	if diff := cmp.Diff(tb.List(), again.List(), cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("reopened table differs (-before +after):\n%s", diff)
	}
	if got, err := again.Area("b"); err != nil || got != b {
		t.Errorf("Area(b) = %+v, %v; want %+v", got, err, b)
	}
	if _, err := again.Area("state"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Area(removed) = %v, want ErrNotFound", err)
	}
	if err := again.Remove("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(nope) = %v, want ErrNotFound", err)
	}
}

func TestOpenLayoutOffsetsAreTheDevices(t *testing.T) {
	l, ok, err := keptmem.ParseLayout("memmap=16M!0x40000000 fastreboot.preserve=8M")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	d := newMem(16 * mib)
	tb, err := OpenLayout(d, l)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tb.Create("s", mib, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(8*mib + TableSize); a.Offset != want {
		t.Errorf("offset %d, want %d (the cache's 8 MiB, then the table)", a.Offset, want)
	}
	if string(d.b[8*mib:8*mib+8]) != Magic && string(d.b[8*mib+SlotSize:8*mib+SlotSize+8]) != Magic {
		t.Error("no table at the start of the areas part")
	}
	for i := range 8 * mib {
		if d.b[i] != 0 {
			t.Fatalf("byte %d of the cache's part written", i)
		}
	}
	if _, err := OpenLayout(d, keptmem.Layout{Region: l.Region, CacheSize: 16 * mib}); !errors.Is(err, ErrNoAreas) {
		t.Errorf("layout without areas: %v, want ErrNoAreas", err)
	}
}

func TestCreateRefuses(t *testing.T) {
	d := newMem(4 * mib)
	tb := mustOpen(t, d)
	if _, err := tb.Create("state", 2*mib, "/work", 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cgroup string
		size         int64
		want         error
		msg          string
	}{
		{"state", "", 4096, ErrExists, `"state"`},
		{"big", "", 4 * mib, ErrNoRoom, "1984K of the 4M areas part is free"},
		{"odd", "", 5000, ErrInvalid, "round it up to 8192"},
		{"zero", "", 0, ErrInvalid, "not a positive multiple"},
		{"a/b", "", 4096, ErrInvalid, "'/'"},
		{"", "", 4096, ErrInvalid, "1 to 63 bytes"},
		{strings.Repeat("x", 64), "", 4096, ErrInvalid, "1 to 63"},
		{"-x", "", 4096, ErrInvalid, "starts with"},
		{"ok", "work", 4096, ErrInvalid, "/work"},
		{"ok", "/", 4096, ErrInvalid, "root cgroup"},
		{"ok", "/a/../b", 4096, ErrInvalid, "not a clean path"},
	} {
		_, err := tb.Create(tc.name, tc.size, tc.cgroup, 1)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Create(%q, %d, %q) = %v, want %v mentioning %q", tc.name, tc.size, tc.cgroup, err, tc.want, tc.msg)
		}
	}
	if n := len(mustOpen(t, d).List()); n != 1 {
		t.Errorf("%d areas after refusals, want 1", n)
	}
}

// The areas part of exactly the area's size has no room for it: the table
// takes its first 64 KiB.
func TestWholePartDoesNotFit(t *testing.T) {
	tb := mustOpen(t, newMem(256*mib))
	_, err := tb.Create("state", 256*mib, "", 1)
	if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "262080K of the 256M areas part is free") {
		t.Errorf("err = %v, want ErrNoRoom naming what is free", err)
	}
}

func TestTooManyAreas(t *testing.T) {
	tb := mustOpen(t, newMem(4*mib))
	for i := range MaxAreas {
		if _, err := tb.Create(fmt.Sprintf("a%d", i), 4096, "", 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Create("last", 4096, "", 1); !errors.Is(err, ErrNoRoom) {
		t.Errorf("area %d: %v, want ErrNoRoom", MaxAreas+1, err)
	}
}

func TestInterruptedWriteKeepsThePreviousTable(t *testing.T) {
	d := newMem(4 * mib)
	tb := mustOpen(t, d)
	if _, err := tb.Create("one", 4096, "", 1); err != nil {
		t.Fatal(err)
	}
	d.failWrite = HeaderSize + 100 // the header and part of the entries land
	if _, err := tb.Create("two", 4096, "", 1); err == nil {
		t.Fatal("torn write reported no error")
	}
	d.failWrite = -1
	got := mustOpen(t, d).List()
	if len(got) != 1 || got[0].Name != "one" {
		t.Errorf("after a torn write: %+v, want the table before it", got)
	}
	// And the next write goes on from there.
	again := mustOpen(t, d)
	if _, err := again.Create("two", 4096, "", 1); err != nil {
		t.Fatal(err)
	}
	if n := len(mustOpen(t, d).List()); n != 2 {
		t.Errorf("%d areas, want 2", n)
	}
}

func TestCorruptTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(b []byte) // b is the written slot
		want error
		msg  string
	}{
		{"checksum", func(b []byte) { b[HeaderSize] ^= 1 }, ErrCorrupt, "checksum"},
		{"version", func(b []byte) { b[8] = 2 }, ErrVersion, "version 2"},
		{"count", func(b []byte) { b[12] = MaxAreas + 1 }, ErrCorrupt, "entries"},
		{"part size", func(b []byte) { b[24]++; rehash(b) }, ErrCorrupt, "did fastreboot.preserve= change"},
		{"offset", func(b []byte) { b[HeaderSize+320] = 1; rehash(b) }, ErrCorrupt, "4096-aligned"},
		{"past end", func(b []byte) { b[HeaderSize+328+3] = 0x40; rehash(b) }, ErrCorrupt, "past the part"},
		{"overlap", func(b []byte) {
			copy(b[HeaderSize+EntrySize+320:], b[HeaderSize+320:HeaderSize+328])
			rehash(b)
		}, ErrCorrupt, "overlap"},
		{"name", func(b []byte) { b[HeaderSize] = '/'; rehash(b) }, ErrCorrupt, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newMem(4 * mib)
			tb := mustOpen(t, d)
			for _, n := range []string{"a", "b"} {
				if _, err := tb.Create(n, 8192, "", 1); err != nil {
					t.Fatal(err)
				}
			}
			// Two writes: slot 1 holds both areas, slot 0 the first;
			// break slot 0 too so that no valid table is left.
			copy(d.b[0:8], "broken!!")
			tc.mod(d.b[SlotSize : 2*SlotSize])
			_, err := Open(d)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Open = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
}

// rehash recomputes a slot's checksum after a test changed it.
func rehash(b []byte) {
	es := int(b[12])
	h := marshalChecksum(b[:32], b[HeaderSize:HeaderSize+es*EntrySize])
	copy(b[32:64], h)
}

func TestTooSmall(t *testing.T) {
	if _, err := Open(newMem(TableSize)); !errors.Is(err, ErrTooSmall) {
		t.Errorf("Open = %v, want ErrTooSmall", err)
	}
}
