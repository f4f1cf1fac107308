package bootimage

import (
	"fmt"
	"io"
)

// CheckModule checks the content of module m, read from r (m.Size bytes),
// according to its role: CheckKernelPayload for the kernel (the header
// and the whole compressed kernel), CheckInitrd for an initrd piece. Errors name the module and wrap ErrNotBzImage,
// ErrBadInitrd or ErrInvalid (unknown role). It does not hash r: the
// caller checks the digest where it copies the bytes.
func CheckModule(m Module, r io.ReaderAt) error {
	var err error
	switch m.Role {
	case RoleKernel:
		err = CheckKernelPayload(r, m.Size)
	case RoleInitrd:
		err = CheckInitrd(r, m.Size)
	default:
		err = fmt.Errorf("%w: unknown role %q", ErrInvalid, m.Role)
	}
	if err != nil {
		return fmt.Errorf("module %q: %w", m.Name, err)
	}
	return nil
}
