package loadlist

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		want    []Entry
		wantErr error
	}{
		{name: "empty", in: "", want: nil},
		{
			name: "entries",
			in:   "# comment\nkernel/a.ko\n\n  kernel/b.ko optional  \n",
			want: []Entry{{Path: "kernel/a.ko"}, {Path: "kernel/b.ko", Optional: true}},
		},
		{name: "bad word", in: "kernel/a.ko maybe\n", wantErr: ErrSyntax},
		{name: "too many", in: "a b c\n", wantErr: ErrSyntax},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("kernel/a.ko\nkernel/b.ko optional\n")
	f.Add("# x\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseBytes([]byte(in))
		if err != nil {
			return
		}
		again, err := ParseBytes([]byte(Format(entries)))
		if err != nil {
			t.Fatalf("Format output does not parse: %v", err)
		}
		if diff := cmp.Diff(entries, again); diff != "" {
			t.Errorf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
