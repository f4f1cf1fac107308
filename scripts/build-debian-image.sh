#!/bin/sh
# build-debian-image.sh builds the Debian bookworm system the QEMU test
# TestDebianSystem boots: systemd, Debian's linux-image-amd64,
# initramfs-tools, an ext4 root for a virtio disk, /boot/vmlinuz and
# /boot/initrd.img. Two layers, each cached in $FASTREBOOT_CACHE/debian
# (default ~/.cache/fastreboot) under a key of its inputs:
#
#   build-debian-image.sh             the base: the system mmdebstrap
#                                     makes, a directory (keyed by its
#                                     packages and hooks); prints its path
#   build-debian-image.sh --deb DEB   the system: the base with DEB (the
#                                     fastreboot package) installed by
#                                     "apt-get install ./DEB" in a chroot
#                                     (its trigger rebuilds the initramfs
#                                     with update-initramfs), the test's
#                                     console and files, as a raw ext4 disk
#                                     image; prints the directory holding
#                                     disk.img, vmlinuz and initrd.img (the
#                                     image's own /boot files, for QEMU's
#                                     -kernel/-initrd)
#
# Needs root (mmdebstrap's root mode, chroot; it runs itself with sudo when
# not root), mmdebstrap and e2fsprogs
# (scripts/install-deps.sh) and a network that reaches deb.debian.org for the
# base. Idempotent: a cached layer is reused.
set -eu

CACHE="${FASTREBOOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastreboot}"
DIR="$CACHE/debian"
MIRROR="${FASTREBOOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${FASTREBOOT_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
mkdir -p "$DIR"

log() { echo "build-debian-image: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	# The cache stays the caller's (FASTREBOOT_CACHE passed on).
	if command -v sudo >/dev/null 2>&1; then
		exec sudo FASTREBOOT_CACHE="$CACHE" "$0" "$@"
	fi
	log "needs root (mmdebstrap, chroot) or sudo"
	exit 1
fi

# The packages of the base. busybox is initramfs-tools' Recommends (a
# default Debian install has it; mmdebstrap installs no Recommends): without
# it the initramfs has klibc's mv, which cannot move the handoff across file
# systems. kexec-tools is there for the bench (systemctl
# kexec with kexec-tools' own image); its debconf answer keeps it from
# loading anything by itself.
PACKAGES="systemd,systemd-sysv,udev,linux-image-amd64,initramfs-tools,busybox,zstd,e2fsprogs,kmod,kexec-tools,procps"

# The base's key: its build function, the packages and the mirrors; the
# system's: the whole script and the package.
base_sum=$( (sed -n '/^build_base() {/,/^}/p' "$0" && echo "$PACKAGES $MIRROR $SECURITY") | sha256sum | cut -c1-24)
script_sum=$(sha256sum "$0" | cut -c1-24)
BASE="$DIR/bookworm-base-$base_sum"

build_base() {
	[ -e "$BASE.complete" ] && return 0
	log "building the base with mmdebstrap (a few minutes)"
	start=$(date +%s)
	tmp="$BASE.tmp.$$"
	rm -rf "$tmp"
	# /boot/vmlinuz and /boot/initrd.img link to the newest kernel
	# (kernel-img.conf's link_in_boot), where boot entries point.
	# The initramfs holds the modules listed in /etc/initramfs-tools/modules
	# (the virtio disk and ext4) instead of MODULES=most: 11 MB instead of
	# 35 MB, which is what a crash reservation must hold twice.
	mmdebstrap --variant=apt --include="$PACKAGES" \
		--essential-hook='echo "kexec-tools kexec-tools/load_kexec boolean false" | chroot "$1" debconf-set-selections' \
		--essential-hook='printf "do_symlinks = yes\nlink_in_boot = yes\n" >"$1/etc/kernel-img.conf"' \
		--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list >"$1/etc/initramfs-tools/conf.d/fastreboot-test" && printf "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n" >"$1/etc/initramfs-tools/modules.fastreboot-test"' \
		--customize-hook='cat "$1/etc/initramfs-tools/modules.fastreboot-test" >>"$1/etc/initramfs-tools/modules" && rm "$1/etc/initramfs-tools/modules.fastreboot-test"' \
		--customize-hook='chroot "$1" passwd -d root' \
		--customize-hook='echo fastreboot-debian >"$1/etc/hostname"' \
		--customize-hook='printf "/dev/vda / ext4 rw,errors=remount-ro 0 1\n" >"$1/etc/fstab"' \
		--customize-hook='chroot "$1" update-initramfs -u -k all' \
		--customize-hook='rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id"; touch "$1/etc/machine-id"' \
		bookworm "$tmp" \
		"deb $MIRROR bookworm main" \
		"deb $MIRROR bookworm-updates main" \
		"deb $SECURITY bookworm-security main" >&2
	rm -rf "$BASE"
	mv "$tmp" "$BASE"
	touch "$BASE.complete"
	log "base built in $(($(date +%s) - start)) s: $(du -sh "$BASE" | cut -f1) $BASE"
}

build_base
if [ "$#" -eq 0 ]; then
	echo "$BASE"
	exit 0
fi
if [ "$1" != "--deb" ] || [ "$#" -ne 2 ]; then
	log "usage: $0 [--deb fastreboot_VERSION_amd64.deb]"
	exit 2
fi
DEB="$2"
deb_sum=$(sha256sum "$DEB" | cut -c1-24)
OUT="$DIR/bookworm-system-$script_sum-$deb_sum"
if [ -e "$OUT/.complete" ]; then
	echo "$OUT"
	exit 0
fi

start=$(date +%s)
tmp="$DIR/.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/root"
trap 'umount -R "$tmp/root/proc" 2>/dev/null || true; umount -R "$tmp/root/dev" 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
cp -a "$BASE/." "$tmp/root/"
cp "$DEB" "$tmp/root/tmp/"
deb_name=$(basename "$DEB")
# The package's postinst and update-initramfs need /proc and /dev; both are
# mounted for the chroot only and unmounted before the image is made.
mount -t proc proc "$tmp/root/proc"
mount --rbind /dev "$tmp/root/dev"
chroot "$tmp/root" sh -c "cd /tmp && env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./$deb_name" >&2
rm -f "$tmp/root/tmp/$deb_name"

# The test's system (TestDebianSystem):
# - root logs in on the serial console with the prompt "$ " and no line
#   editing, the shell the harness types into;
# - the crash path is armed on a cold boot (two-stage, recovering in this
#   initramfs through the package's init-premount script);
# - /etc/fastreboot-test-release goes into the initramfs and its init-bottom
#   copies it to /run: which initramfs booted, read in the real root;
# - fastreboot-test-marker.service's ExecStop writes and fsyncs a marker at
#   shutdown: the orderly reboot's proof.
mkdir -p "$tmp/root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$tmp/root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF_GETTY'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 - $TERM
EOF_GETTY
cat >>"$tmp/root/root/.bashrc" <<'EOF_BASHRC'
set +o emacs +o vi
PS1='$ '
EOF_BASHRC
: >"$tmp/root/etc/motd"
sed -i 's/^FASTREBOOT_CRASH_ARM=.*/FASTREBOOT_CRASH_ARM="--mode two-stage --initrd image"/' "$tmp/root/etc/default/fastreboot"
echo v1 >"$tmp/root/etc/fastreboot-test-release"
cat >"$tmp/root/etc/initramfs-tools/hooks/fastreboot-test-release" <<'EOF_HOOK'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
cp /etc/fastreboot-test-release "$DESTDIR/etc/fastreboot-test-release"
EOF_HOOK
mkdir -p "$tmp/root/etc/initramfs-tools/scripts/init-bottom"
cat >"$tmp/root/etc/initramfs-tools/scripts/init-bottom/fastreboot-test-release" <<'EOF_SCRIPT'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
cp /etc/fastreboot-test-release /run/fastreboot-test-release
EOF_SCRIPT
chmod +x "$tmp/root/etc/initramfs-tools/hooks/fastreboot-test-release" \
	"$tmp/root/etc/initramfs-tools/scripts/init-bottom/fastreboot-test-release"
cat >"$tmp/root/etc/systemd/system/fastreboot-test-marker.service" <<'EOF_UNIT'
[Unit]
Description=fastreboot test: a marker written and fsynced at shutdown
After=local-fs.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'date -u +%%s.%%N >/var/lib/fastreboot-test-marker && sync /var/lib/fastreboot-test-marker && echo fastreboot-test-marker: written'
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF_UNIT
chroot "$tmp/root" systemctl enable fastreboot-test-marker.service >&2
chroot "$tmp/root" update-initramfs -u -k all >&2
listing=$(zstdcat "$tmp/root/boot/initrd.img" | cpio -it 2>/dev/null)
if ! printf '%s\n' "$listing" | grep -q 'bin/fastreboot$'; then
	log "the initramfs has no fastreboot binary: the package's hook did not run"
	exit 1
fi
# crash recover loads ramoops in the crash kernel to read the crashed
# kernel's pstore records; the hook adds it.
if ! printf '%s\n' "$listing" | grep -qE '/ramoops\.ko(\.[a-z]+)?$'; then
	log "the initramfs has no ramoops module: the package's hook did not add it"
	exit 1
fi
umount "$tmp/root/proc"
umount -R "$tmp/root/dev"
mkdir -p "$tmp/out"
cp -L "$tmp/root/boot/vmlinuz" "$tmp/out/vmlinuz"
cp -L "$tmp/root/boot/initrd.img" "$tmp/out/initrd.img"
# 3 GiB, sparse: room for a second kernel version, the cache's evidence and
# the tests' files.
mke2fs -q -t ext4 -L debian-root -d "$tmp/root" "$tmp/out/disk.img" 3G
touch "$tmp/out/.complete"
# One system at a time in the cache (each is a 3 GiB sparse image): older
# ones, made from other packages or another script, go.
for old in "$DIR"/bookworm-system-*; do
	[ -e "$old" ] && [ "$old" != "$OUT" ] && rm -rf "$old"
done
for old in "$DIR"/bookworm-base-*; do
	case "$old" in "$BASE" | "$BASE.complete") ;; *) rm -rf "$old" ;; esac
done
rm -rf "$OUT"
mv "$tmp/out" "$OUT"
log "system built in $(($(date +%s) - start)) s: $(du -h "$OUT/disk.img" | cut -f1) used of 3 GiB, $OUT"
echo "$OUT"
