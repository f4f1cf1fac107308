// Package qemutests holds fastreboot's integration tests: they boot Debian's
// real kernel in QEMU with a u-root initramfs built from this tree, drive the
// guest over its serial console and assert on what it prints.
//
// Prerequisites (scripts/install-deps.sh, scripts/fetch-kernel.sh); without
// them the tests skip, or fail with FASTREBOOT_REQUIRE_QEMU=1:
//
//	scripts/install-deps.sh && scripts/fetch-kernel.sh
//	go test ./qemu-tests/... -v
//
// The building blocks live in package harness.
package qemutests
