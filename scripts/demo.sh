#!/usr/bin/env bash
# The main job: installs QEMU and fetches Debian's kernel if needed, then
# boots it in QEMU and shows fastreboot's update path with its timings.
# Flags are passed to the demo (--console to watch the guest's console,
# --json for machine-readable results).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-kernel.sh >/dev/null
export PATH="$PATH:/usr/local/go/bin"
# qemu-tests/ is its own Go module (it holds mkuimage, gobusybox and
# u-root's commands for the guest's initramfs): run from inside it.
cd qemu-tests
exec go run ./cmd/demo "$@"
