package preserve

import (
	"testing"
)

// FuzzOpen feeds Open arbitrary table bytes: it must never panic, and a
// table it accepts must list areas that are inside the part, aligned and
// disjoint, and survive a rewrite.
func FuzzOpen(f *testing.F) {
	d := newMem(TableSize + 1<<20)
	tb, _ := Open(d)
	tb.Create("a", 8192, "/w", 1)
	tb.Create("b", 4096, "", 2)
	f.Add(d.b[:TableSize])
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newMem(TableSize + 1<<20)
		copy(d.b, b)
		tb, err := Open(d)
		if err != nil {
			return
		}
		areas := tb.List()
		for i, a := range areas {
			if a.Offset < TableSize || a.Offset%BlockSize != 0 || a.Size <= 0 || a.Offset+a.Size > d.Size() {
				t.Fatalf("accepted area %+v", a)
			}
			if i > 0 && areas[i-1].Offset+areas[i-1].Size > a.Offset {
				t.Fatalf("accepted overlapping areas %+v %+v", areas[i-1], a)
			}
		}
		if _, err := tb.Create("fuzz", 4096, "", 1); err != nil {
			return
		}
		if again, err := Open(d); err != nil || len(again.List()) != len(areas)+1 {
			t.Fatalf("reopening after a create: %v", err)
		}
	})
}
