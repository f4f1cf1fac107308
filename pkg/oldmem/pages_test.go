package oldmem

import (
	"errors"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/google/go-cmp/cmp"
)

const (
	testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testXXH = "0123456789abcdef"
)

func TestValidate(t *testing.T) {
	ok := Pages{Size: 3*PageSize + 1, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{0x100, 2}, {0x50, 2}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	exact := Pages{Size: 2 * PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 2}}}
	if err := exact.Validate(); err != nil {
		t.Fatalf("record of whole pages: %v", err)
	}
	top := Pages{Size: PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{maxPFN - 1, 1}}}
	if err := top.Validate(); err != nil {
		t.Fatalf("record of the highest page: %v", err)
	}
	tooMany := Pages{Size: (MaxRuns + 1) * PageSize, SHA256: testSHA, XXH64: testXXH}
	for i := range MaxRuns + 1 {
		tooMany.Runs = append(tooMany.Runs, [2]uint64{uint64(2*i + 1), 1})
	}
	for _, tc := range []struct {
		name string
		p    Pages
		want string
	}{
		{"zero size", Pages{Size: 0, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "size 0"},
		{"negative size", Pages{Size: -5, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "size -5"},
		{"empty sha", Pages{Size: 1, XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "sha256"},
		{"empty xxh64", Pages{Size: 1, SHA256: testSHA, Runs: [][2]uint64{{1, 1}}}, "xxh64"},
		{"short xxh64", Pages{Size: 1, SHA256: testSHA, XXH64: testXXH[:15], Runs: [][2]uint64{{1, 1}}}, "16 lowercase hex"},
		{"upper-case sha", Pages{Size: 1, SHA256: strings.ToUpper(testSHA), XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "lowercase hex"},
		{"short sha", Pages{Size: 1, SHA256: testSHA[:63], XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "64"},
		{"non-hex sha", Pages{Size: 1, SHA256: "g" + testSHA[1:], XXH64: testXXH, Runs: [][2]uint64{{1, 1}}}, "hex"},
		{"empty run", Pages{Size: PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 0}, {2, 1}}}, "run 0 (PFN 0x1) has no pages"},
		{"pfn*4096 overflows", Pages{Size: PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1 << 60, 1}}}, "overflows"},
		{"pfn+count overflows", Pages{Size: PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{^uint64(0), 1}}}, "overflows"},
		{"end past 64 bits", Pages{Size: 2 * PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{maxPFN - 1, 2}}}, "overflows"},
		{"too few pages", Pages{Size: 2*PageSize + 1, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 2}}}, "hold 2 pages"},
		{"no runs", Pages{Size: 1, SHA256: testSHA, XXH64: testXXH}, "hold 0 pages"},
		{"too many pages", Pages{Size: PageSize, SHA256: testSHA, XXH64: testXXH, Runs: [][2]uint64{{1, 1}, {5, 1}}}, "more than the 1 pages"},
		{"too many runs", tooMany, "runs, at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if !errors.Is(err, ErrInvalidPages) {
				t.Fatalf("Validate = %v, want ErrInvalidPages", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestRunsFromPagemap(t *testing.T) {
	pm := func(pfn uint64) uint64 { return pmPresent | 1<<55 /* soft-dirty and flags are ignored */ | pfn }
	got, err := runsFromPagemap([]uint64{pm(10), pm(11), pm(12), pm(5), pm(13), pm(14), pm(7), pm(6)})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uint64{{10, 3}, {5, 1}, {13, 2}, {7, 1}, {6, 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if got, err := runsFromPagemap(nil); err != nil || len(got) != 0 {
		t.Errorf("no entries: %v, %v", got, err)
	}
	for _, tc := range []struct {
		name    string
		entries []uint64
		want    string
	}{
		{"not present", []uint64{pm(1), 42}, "page 1 is not present"},
		{"swapped", []uint64{pm(1), pm(2), 1<<62 | 42}, "page 2 is not present"},
		{"PFN 0", []uint64{pmPresent, pm(1)}, "page 0 reads as PFN 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runsFromPagemap(tc.entries)
			if !errors.Is(err, ErrNotPinnable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("runsFromPagemap = %v, want ErrNotPinnable saying %q", err, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	load := func(paddr, filesz, off uint64) crashhandler.Segment {
		return crashhandler.Segment{Type: 1, Offset: off, Paddr: paddr, Filesz: filesz, Memsz: filesz}
	}
	// Three PT_LOADs: A at 1 MiB, B at 2 MiB right after A in the file, C
	// physically right after B but elsewhere in the file.
	loads := []crashhandler.Segment{
		load(0x100000, 0x4000, 0x1000),
		load(0x200000, 0x4000, 0x5000),
		load(0x204000, 0x3000, 0xa000),
	}
	for _, tc := range []struct {
		name string
		runs [][2]uint64
		want []piece
	}{{
		name: "one run",
		runs: [][2]uint64{{0x101, 2}},
		want: []piece{{dst: 0, off: 0x2000, phys: 0x101000, length: 0x2000}},
	}, {
		name: "consecutive runs merge",
		runs: [][2]uint64{{0x100, 1}, {0x101, 2}},
		want: []piece{{dst: 0, off: 0x1000, phys: 0x100000, length: 0x3000}},
	}, {
		name: "out of order runs stay apart",
		runs: [][2]uint64{{0x102, 1}, {0x100, 2}, {0x205, 1}},
		want: []piece{
			{dst: 0, off: 0x3000, phys: 0x102000, length: 0x1000},
			{dst: 0x1000, off: 0x1000, phys: 0x100000, length: 0x2000},
			{dst: 0x3000, off: 0xb000, phys: 0x205000, length: 0x1000},
		},
	}, {
		name: "contiguous in the file but not physically",
		runs: [][2]uint64{{0x103, 1}, {0x200, 1}},
		want: []piece{
			{dst: 0, off: 0x4000, phys: 0x103000, length: 0x1000},
			{dst: 0x1000, off: 0x5000, phys: 0x200000, length: 0x1000},
		},
	}, {
		name: "a run split across two segments",
		runs: [][2]uint64{{0x202, 4}},
		want: []piece{
			{dst: 0, off: 0x7000, phys: 0x202000, length: 0x2000},
			{dst: 0x2000, off: 0xa000, phys: 0x204000, length: 0x2000},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := plan(tc.runs, loads)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(piece{})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}

	for _, tc := range []struct {
		name string
		runs [][2]uint64
		want string
	}{
		{"below every segment", [][2]uint64{{0x100, 1}, {0x50, 1}}, "run 1: physical 0x50000-0x51000 is not in any PT_LOAD"},
		{"past a segment's end", [][2]uint64{{0x103, 2}}, "run 0: physical 0x104000-0x105000 is not in any PT_LOAD"},
		{"past the last segment", [][2]uint64{{0x206, 2}}, "physical 0x207000-0x208000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plan(tc.runs, loads)
			if !errors.Is(err, ErrNoOldMemory) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("plan = %v, want ErrNoOldMemory saying %q", err, tc.want)
			}
		})
	}

	t.Run("misaligned offset", func(t *testing.T) {
		_, err := plan([][2]uint64{{0x300, 1}}, []crashhandler.Segment{load(0x300000, 0x2000, 0x1234)})
		if err == nil || errors.Is(err, ErrNoOldMemory) || !strings.Contains(err.Error(), "offset 0x1234, not page-aligned") {
			t.Errorf("plan = %v, want the misaligned offset named", err)
		}
	})
	t.Run("segment ends mid-page", func(t *testing.T) {
		_, err := plan([][2]uint64{{0x300, 2}}, []crashhandler.Segment{load(0x300000, 0x1800, 0x1000), load(0x301800, 0x800, 0x3000)})
		if err == nil || !strings.Contains(err.Error(), "ends mid-page at 0x301800") {
			t.Errorf("plan = %v, want the mid-page end named", err)
		}
	})
	t.Run("overflow", func(t *testing.T) {
		_, err := plan([][2]uint64{{^uint64(0), 1}}, loads)
		if !errors.Is(err, ErrInvalidPages) {
			t.Errorf("plan = %v, want ErrInvalidPages", err)
		}
	})
}

func TestErrorKinds(t *testing.T) {
	seen := map[error]bool{}
	for name, err := range ErrorKinds() {
		if !strings.HasPrefix(name, "oldmem.") || err == nil || seen[err] {
			t.Errorf("kind %q: %v", name, err)
		}
		seen[err] = true
	}
	for _, err := range []error{ErrInvalidPages, ErrNotPinnable, ErrMoved, ErrNoOldMemory} {
		if !seen[err] {
			t.Errorf("%v is not in ErrorKinds", err)
		}
	}
}
