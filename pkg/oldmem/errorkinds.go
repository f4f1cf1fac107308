package oldmem

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"oldmem.invalid_pages": ErrInvalidPages,
		"oldmem.not_pinnable":  ErrNotPinnable,
		"oldmem.moved":         ErrMoved,
		"oldmem.no_old_memory": ErrNoOldMemory,
	}
}
