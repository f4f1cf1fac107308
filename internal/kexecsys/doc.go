// Package kexecsys is the one thin layer over the system calls that load and
// start a kexec image: kexec_file_load(2) ([FileLoad]), kexec_load(2)
// ([Load]), reboot(2) ([Reboot]), memfd_create(2) with file seals
// ([MemfdCreate], [Seal]) and copy_file_range(2) ([CopyFileRange]).
//
// It also holds the one error model the kexec paths share: the sentinels
// [ErrNotSupported], [ErrNotPermitted], [ErrSignature], [ErrBusy],
// [ErrNoMemory] and [ErrKexecLoadForbidden], and [KexecError], the failed
// call, which matches with errors.Is both its errno and the sentinel that
// errno means. pkg/fastreboot, pkg/crashhandler, pkg/modcache and
// pkg/cpustop re-export the sentinels as variables, so errors.Is works
// across packages and each kind has one definition.
//
// The Linux implementations are in *_linux.go files; elsewhere every call
// returns an error wrapping ErrNotSupported.
package kexecsys
