package fastreboot

import (
	"errors"
	"os"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// sealsOf returns the seals of a memfd (F_GET_SEALS), or -1 where there are
// no file seals.
func sealsOf(f *os.File) (int, error) {
	s, err := kexecsys.Seals(f)
	if errors.Is(err, kexecsys.ErrNotSupported) {
		return -1, nil
	}
	return s, err
}
