package workload

import (
	"bytes"
	"testing"
)

func TestFillIsDeterministic(t *testing.T) {
	a, b, c := make([]byte, 1<<16+3), make([]byte, 1<<16+3), make([]byte, 1<<16+3)
	Fill(a, 7)
	Fill(b, 7)
	Fill(c, 8)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, make([]byte, len(a))) {
		t.Error("Fill is not a deterministic stream of its seed")
	}
}
