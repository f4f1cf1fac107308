package cli

import (
	"io"

	"github.com/fastreboot/fastreboot/internal/ttydrain"
)

// drain waits until what was written to w has left the terminal, when w
// writes to one (see ttydrain.Drain).
func drain(w io.Writer) {
	if f := fileOf(w); f != nil {
		ttydrain.Drain(f)
	}
}
