#!/usr/bin/env bash
# Crash-path benchmark: in one QEMU session on the same image, crashes the
# guest (sysrq c) with fastreboot's crash path in direct and two-stage mode,
# each armed with `--load segments` (direct-seg, two-stage-seg: crash arm's
# default) and `--load file` (direct, two-stage), and with a kdump-style
# anchor (kexec-tools `kexec -p`, a capture of the crashed kernel's log, a
# firmware reboot), next to a fastreboot update reboot, and prints panic ->
# crash kernel, -> production userspace, -> daemon answering and -> crash
# path armed again, median of --rounds, with ratios against kdump and
# issue 10's goals.
# Not a test: it prints numbers. Flags go to qemu-tests/cmd/crashbench
# (--rounds N, --methods a,b,c, --kdump-capture dmesg|full, --json,
# --console).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >&2
./scripts/fetch-kernel.sh >/dev/null
export PATH="$PATH:/usr/local/go/bin"
# qemu-tests/ is its own Go module (it holds mkuimage, gobusybox and
# u-root's commands for the guest's initramfs): run from inside it.
cd qemu-tests
exec go run ./cmd/crashbench "$@"
