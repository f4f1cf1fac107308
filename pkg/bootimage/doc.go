// Package bootimage describes a kexec boot image as data: a versioned JSON
// manifest naming one kernel, the initrd pieces in unpack order and the
// kernel command line, each module identified by size and SHA-256.
//
// The package reads, writes and validates manifests ([Parse], [Load],
// [Manifest.Marshal], [Manifest.Validate]), compares them ([Diff]), builds
// them from files or from the running system ([FromFiles],
// [FromRunningSystem]) and checks module contents before anything is
// loaded: [CheckKernel] looks at the x86 bzImage setup header the way
// kexec_file_load does, [CheckKernelPayload] also decompresses the whole
// compressed kernel ([UnpackKernel], bounded by the header's init_size),
// [CheckInitrd] walks an initrd the way the kernel's init/initramfs.c
// unpacks it, decompressing each piece as a stream. Module files are
// opened with [OpenFile]: without blocking, regular files only.
//
// # Schema version 1
//
//	{
//	  "version": 1,
//	  "name": "v2",
//	  "cmdline": "console=ttyS0 quiet",
//	  "modules": [
//	    {"name": "vmlinuz", "role": "kernel", "size": 8123456,
//	     "sha256": "<64 lowercase hex digits>", "source": "vmlinuz"},
//	    {"name": "base.cpio.zst", "role": "initrd", "size": 3456789,
//	     "sha256": "<64 lowercase hex digits>", "source": "base.cpio.zst"}
//	  ]
//	}
//
// "version" must equal [SchemaVersion]; a manifest of another version is
// refused with [ErrSchema] rather than half understood. Unknown fields are
// errors. "source" is optional and relative to the manifest's directory
// unless absolute. Initrd modules are concatenated in the order listed.
//
// Nothing in this package needs privileges, and nothing in it is specific
// to Linux at build time: it reads files and /proc through paths that
// tests point at fake trees.
package bootimage
