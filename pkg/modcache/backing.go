package modcache

import (
	"os"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// newBacking creates an empty sealable memfd (an unlinked temporary file
// where there is no memfd_create). The returned fd is the only open of the
// inode; kexec_file_load does not count it as a writer (ETXTBSY would
// follow from any reopen for writing).
func newBacking(name string) (*os.File, error) { return kexecsys.NewImageFile(name) }

// seal makes the backing immutable (kexecsys.SealAll); it does nothing
// where there are no file seals.
func seal(f *os.File) error { return kexecsys.SealImage(f) }
