#!/bin/sh
# fetch-kernel.sh downloads Debian's current amd64 kernel package (the one
# linux-image-amd64 depends on), unpacks it and generates modules.dep, so the
# QEMU tests can boot a real distribution kernel.
#
# Result: $FASTREBOOT_CACHE/kernel/<package>/ (default cache
# ~/.cache/fastreboot) holding boot/vmlinuz-<ver> and lib/modules/<ver>/, plus
# a "current" symlink to it. The kernel directory is printed on stdout.
# Idempotent: nothing is downloaded when the unpacked kernel is already there.
# Needs apt (Debian/Ubuntu with Debian sources) and depmod (kmod); no root,
# except for an "apt-get update" on a machine without package lists.
set -eu

CACHE="${FASTREBOOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastreboot}"
KDIR="$CACHE/kernel"
mkdir -p "$KDIR"

log() { echo "fetch-kernel: $*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "need root or sudo for: $*"
		return 1
	fi
}

resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}

PKG="$(resolve || true)"
if [ -z "$PKG" ]; then
	log "linux-image-amd64 unknown to apt-cache; running apt-get update"
	as_root apt-get update >&2
	PKG="$(resolve || true)"
fi
if [ -z "$PKG" ]; then
	# Offline with a previous download: reuse it.
	if [ -e "$KDIR/current/.complete" ]; then
		log "cannot resolve linux-image-amd64; reusing $KDIR/current"
		readlink -f "$KDIR/current"
		exit 0
	fi
	log "cannot resolve the package linux-image-amd64 depends on"
	exit 1
fi

DEST="$KDIR/$PKG"
if [ -e "$DEST/.complete" ]; then
	ln -sfn "$PKG" "$KDIR/current"
	echo "$DEST"
	exit 0
fi

TMP="$(mktemp -d "$KDIR/.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT INT TERM
chmod 755 "$TMP" # apt-get download drops privileges to _apt when it can
log "downloading $PKG"
(cd "$TMP" && apt-get download "$PKG" >&2)
DEB="$(ls "$TMP"/*.deb | head -n1)"
mkdir -p "$TMP/root"
dpkg -x "$DEB" "$TMP/root"

VMLINUZ="$(ls "$TMP"/root/boot/vmlinuz-* | head -n1)"
VER="${VMLINUZ##*/vmlinuz-}"
# Newer Debian releases ship modules under usr/lib/modules only.
if [ ! -d "$TMP/root/lib/modules/$VER" ] && [ -d "$TMP/root/usr/lib/modules/$VER" ]; then
	[ -e "$TMP/root/lib" ] || ln -s usr/lib "$TMP/root/lib"
fi
if [ ! -d "$TMP/root/lib/modules/$VER" ]; then
	log "no lib/modules/$VER in $DEB"
	exit 1
fi
DEPMOD=""
for d in "$(command -v depmod || true)" /usr/sbin/depmod /sbin/depmod; do
	if [ -n "$d" ] && [ -x "$d" ]; then
		DEPMOD="$d"
		break
	fi
done
if [ -z "$DEPMOD" ]; then
	log "depmod not found (install kmod, e.g. scripts/install-deps.sh)"
	exit 1
fi
"$DEPMOD" -b "$TMP/root" "$VER"
if [ ! -s "$TMP/root/lib/modules/$VER/modules.dep" ]; then
	log "depmod wrote no lib/modules/$VER/modules.dep"
	exit 1
fi
echo "$VER" >"$TMP/root/version"
echo "$PKG" >"$TMP/root/package"
touch "$TMP/root/.complete"

rm -rf "$DEST"
mv "$TMP/root" "$DEST"
ln -sfn "$PKG" "$KDIR/current"
log "kernel $VER in $DEST"
echo "$DEST"
