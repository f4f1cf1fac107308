#!/usr/bin/env bash
# Update-reboot benchmark: in one QEMU session on the same image, measures
# fastreboot (file), fastreboot without the carried cache, segments, kexec-tools
# (`kexec -l` + `kexec -e`, the yardstick) and kexec-tools with kexec_file_load
# (`kexec -s -l`) side by side, per phase, median of --rounds.
# Not a test: it prints numbers. Flags go to qemu-tests/cmd/bench
# (--rounds N, --methods a,b,c, --json, --console).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >&2
./scripts/fetch-kernel.sh >/dev/null
export PATH="$PATH:/usr/local/go/bin"
# qemu-tests/ is its own Go module (it holds mkuimage, gobusybox and
# u-root's commands for the guest's initramfs): run from inside it.
cd qemu-tests
exec go run ./cmd/bench "$@"
