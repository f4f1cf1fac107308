package bootimage

import (
	"fmt"
	"io"
)

// CheckModule checks the content of module m, read from r (m.Size bytes),
// according to its role: CheckKernelPayload for the kernel (the header
// and the whole compressed kernel), CheckInitrd for an initrd piece (under
// the default InitrdLimits). Errors name the module and wrap
// ErrNotBzImage, ErrBadInitrd (with ErrUnpackLimit for a piece beyond the
// limits) or ErrInvalid (unknown role). It does not hash r: the caller
// checks the digest where it copies the bytes.
func CheckModule(m Module, r io.ReaderAt) error {
	return CheckModuleLimits(InitrdLimits{})(m, r)
}

// CheckModuleLimits returns CheckModule with lim as the initrd limits
// (ScanInitrd), e.g. as a module cache's Check.
func CheckModuleLimits(lim InitrdLimits) func(m Module, r io.ReaderAt) error {
	return func(m Module, r io.ReaderAt) error {
		var err error
		switch m.Role {
		case RoleKernel:
			err = CheckKernelPayload(r, m.Size)
		case RoleInitrd:
			_, err = ScanInitrd(r, m.Size, lim)
		default:
			err = fmt.Errorf("%w: unknown role %q", ErrInvalid, m.Role)
		}
		if err != nil {
			return fmt.Errorf("module %q: %w", m.Name, err)
		}
		return nil
	}
}
