package crashhandler

// ErrorKinds names this package's own sentinel errors for the daemon's
// error registry; the names are part of its protocol. The re-exported ones
// (ErrNotSupported, ErrNotPermitted, ErrSignature, ErrBusy,
// ErrKexecLoadForbidden: the shared "kexec.*" kinds) are not listed here;
// a missing firmware memory map is memmap.ErrNoFirmwareMap
// ("memmap.no_firmware_map").
func ErrorKinds() map[string]error {
	return map[string]error{
		"crashhandler.no_reservation":        ErrNoReservation,
		"crashhandler.reservation_too_small": ErrReservationTooSmall,
		"crashhandler.no_rearm":              ErrNoRearm,
		"crashhandler.not_armed":             ErrNotArmed,
		"crashhandler.invalid_image":         ErrInvalidImage,
		"crashhandler.cmdline_too_long":      ErrCmdlineTooLong,
		"crashhandler.fault_routing":         ErrFaultRouting,
		"crashhandler.no_vmcore":             ErrNoVmcore,
		"crashhandler.bad_vmcore":            ErrBadVmcore,
		"crashhandler.no_pstore":             ErrNoPstore,
		"crashhandler.memory_map_mismatch":   ErrMemoryMapMismatch,
		"crashhandler.kexec_load_failed":     ErrKexecLoadFailed,
		"crashhandler.no_ramoops_room":       ErrNoRamoopsRoom,
	}
}
