package bootimage

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"bootimage.schema":           ErrSchema,
		"bootimage.invalid":          ErrInvalid,
		"bootimage.cmdline_too_long": ErrCmdlineTooLong,
		"bootimage.not_bzimage":      ErrNotBzImage,
		"bootimage.bad_initrd":       ErrBadInitrd,
		"bootimage.not_regular_file": ErrNotRegularFile,
		"bootimage.unpack_limit":     ErrUnpackLimit,
	}
}
