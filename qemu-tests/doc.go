// Package qemutests holds fastreboot's integration tests: they boot Debian's
// real kernel in QEMU with a u-root initramfs built from this tree, drive the
// guest over its serial console and assert on what it prints.
//
// Prerequisites (scripts/install-deps.sh, scripts/fetch-kernel.sh); without
// them the tests skip, or fail with FASTREBOOT_REQUIRE_QEMU=1:
//
//	scripts/install-deps.sh && scripts/fetch-kernel.sh
//	cd qemu-tests && go test ./... -v
//
// qemu-tests is a Go module of its own (module
// github.com/fastreboot/fastreboot/qemu-tests, replace => ../): the harness's
// requirements (mkuimage, gobusybox, u-root's commands, built into the
// guest's initramfs as go.mod tools) stay out of the library's go.mod, so a
// program importing the library does not build or download them. Go checks
// internal/ imports by import path in module mode (golang.org/issue/23970),
// so this module, whose path is under the library's, may still import the
// library's internal packages (internal/agent, internal/ttydrain).
//
// The building blocks live in package harness.
package qemutests
