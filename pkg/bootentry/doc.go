// Package bootentry lists what the boot loader would boot: the boot entries
// of a /boot tree under an injectable root, and the one a firmware reboot
// would pick by default, so that fastreboot can stage that image instead of
// one described by hand.
//
// Three sources are read ([Scan]):
//
//   - Boot Loader Specification Type #1 entries (source "bls"):
//     loader/entries/*.conf under each of ROOT/boot, ROOT, ROOT/efi and
//     ROOT/boot/efi (the /boot directory, a boot partition or ESP given as
//     the root, an ESP mounted at /efi or /boot/efi). The entry's id is its
//     file name without ".conf"; `linux`, every `initrd` line (in order) and
//     every `options` line are kept; paths are relative to the directory
//     holding loader/. `options $kernelopts` and `$tuned_params` are
//     expanded from grubenv, as GRUB's blscfg does.
//   - GRUB's grub.cfg (source "grub"): ROOT/boot/grub/grub.cfg (or grub2/,
//     or grub/ and grub2/ at the root of a boot partition), parsed with
//     u-root's pkg/boot/grub for each menu entry's title, kernel and
//     command line (GRUB's quoting). A line scan of the same file adds what
//     that parser does not keep: the menu structure (GRUB's numbering,
//     "1>2" inside a submenu), the --id of each entry, every initrd of a
//     line, and the `set default=` value. A grub.cfg path is resolved under
//     ROOT, or under ROOT/boot when /boot is a partition of its own.
//   - Debian's links (source "debian-links"): ROOT/boot/vmlinuz and
//     ROOT/boot/initrd.img (or ROOT/vmlinuz and ROOT/initrd.img, Debian's
//     default link_in_boot=no), and the .old pair; ids "debian" and
//     "debian-old". They carry no command line: the caller uses the running
//     one ([Entry.CmdlineFromRunning]).
//
// # The default entry
//
// [List.Default] is, in this order:
//
//  1. loader.conf's `default` (a glob over entry ids, as systemd-boot
//     reads it), the first matching BLS entry in BLS order;
//  2. grubenv's `next_entry` (grub-reboot's one-time choice) when grub.cfg
//     reads it, then grubenv's `saved_entry` when grub.cfg sets
//     `default="${saved_entry}"`: matched against the GRUB entries (number,
//     "1>2" path, --id or title) and the BLS ids (GRUB's blscfg);
//  3. grub.cfg's literal `set default=` (the last one), or GRUB's first
//     entry when it sets none;
//  4. the newest BLS entry: the first in the specification's order (entries
//     with a sort-key first, by sort-key, machine-id, then version, newest
//     first; then the others by id in descending version order);
//  5. Debian's links ("debian").
//
// The reason the rule gives is in [List.DefaultReason]. A default that
// names no entry falls through to the next rule (and says so in
// [List.Problems]); a default entry that cannot be booted is still the
// default: staging it fails with its error rather than silently booting
// something else.
//
// # Entries that cannot be booted
//
// An entry whose kernel or initrd is missing ([ErrMissingFile]), that has
// no initrd ([ErrNoInitrd]), or that a grub.cfg construct makes impossible
// to follow ([ErrUnsupported]: a path through a GRUB variable or device,
// an include, a devicetree) is listed with [Entry.Err] set, naming the
// entry and the file. [List.Lookup] of an unknown id is [ErrUnknownEntry].
//
// u-root's grub parser logs each configuration file it reads through the
// standard library's log package; a program that does not want that on
// stderr redirects log.SetOutput around [Scan]. This package itself never
// prints.
package bootentry
