#!/bin/sh
# install-deps.sh installs the host tools the QEMU tests and the demo need
# (Debian/Ubuntu; mmdebstrap builds the Debian system TestDebianSystem
# boots, grub-pc-bin's grub-mkimage the GRUB disk the Debian reboot bench
# boots it from), and checks that Go is there. Idempotent: packages already
# installed are left alone. Runs apt-get as root, or through sudo when not
# root and sudo is available.
set -eu

PKGS="qemu-system-x86 kmod kexec-tools cpio e2fsprogs zstd xz-utils ca-certificates mmdebstrap grub-pc-bin"
PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || PKGS="$PKGS golang-go"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -n "$missing" ]; then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			SUDO="sudo"
		else
			echo "install-deps: need root or sudo to install:$missing" >&2
			exit 1
		fi
	fi
	echo "install-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine (CI image, container) may have no package lists yet.
	if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
		$SUDO apt-get update
	fi
	# shellcheck disable=SC2086
	if ! $SUDO apt-get install -y --no-install-recommends $missing; then
		# Stale lists: refresh once and retry.
		$SUDO apt-get update
		# shellcheck disable=SC2086
		$SUDO apt-get install -y --no-install-recommends $missing
	fi
else
	echo "install-deps: all present: $PKGS"
fi

# Go 1.21 or newer fetches the toolchain go.mod asks for by itself (from the
# module proxy); older ones cannot build this module.
goversion=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
case "$goversion" in
1.1[0-9] | 1.1[0-9].* | 1.20 | 1.20.* | "")
	echo "install-deps: go '$goversion' is too old or missing: need Go 1.21 or newer on PATH" >&2
	exit 1
	;;
esac
echo "install-deps: go $goversion"
