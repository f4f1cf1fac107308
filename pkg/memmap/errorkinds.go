package memmap

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"memmap.no_firmware_map": ErrNoFirmwareMap,
	}
}
