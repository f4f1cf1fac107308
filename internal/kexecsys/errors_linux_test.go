package kexecsys

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

var allKinds = []error{ErrNotSupported, ErrNotPermitted, ErrSignature, ErrBusy, ErrNoMemory, ErrKexecLoadForbidden}

func TestFileLoadErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		errno unix.Errno
		kind  error
		hint  string
	}{
		{unix.ENOSYS, ErrNotSupported, "CONFIG_KEXEC_FILE"},
		{unix.EPERM, ErrNotPermitted, "lockdown"},
		{unix.EACCES, ErrNotPermitted, "IMA"},
		{unix.EKEYREJECTED, ErrSignature, "lockdown"},
		{unix.EBADMSG, ErrSignature, "signature"},
		{unix.ENOKEY, ErrSignature, "trusted key"},
		{unix.ENODATA, ErrSignature, "signature"},
		{unix.ENOPKG, ErrSignature, "signature"},
		{unix.EBUSY, ErrBusy, "in progress"},
		{unix.ETXTBSY, ErrBusy, "open for writing"},
		{unix.ENOMEM, ErrNoMemory, "memory"},
		{unix.EADDRNOTAVAIL, ErrNoMemory, "crashkernel="},
		{unix.ENOEXEC, nil, "bzImage"},
		{unix.EINVAL, nil, "command line"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			args := "kernel=memfd:k, initrd=memfd:i, cmdline 3 bytes, flags 0x0"
			err := Classify(OpFileLoad, args, fmt.Errorf("wrapped: %w", tc.errno))
			if !errors.Is(err, tc.errno) {
				t.Errorf("%v: errors.Is(err, %v) = false", err, tc.errno)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("%v: errors.Is(err, %v) = false", err, tc.kind)
			}
			for _, other := range allKinds {
				if other != tc.kind && errors.Is(err, other) {
					t.Errorf("%v: also matches %v", err, other)
				}
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "kexec_file_load("+args+"): ") || !strings.Contains(msg, tc.hint) {
				t.Errorf("message %q: want the call and a hint containing %q", msg, tc.hint)
			}
		})
	}
	if err := Classify("x", "y", errors.New("not an errno")); err.Error() != "x(y): not an errno" {
		t.Errorf("non-errno error: %v", err)
	}
	if err := Classify("x", "y", nil); err != nil {
		t.Errorf("nil error classified as %v", err)
	}
}

func TestLoadErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		kinds []error
		hint  string
	}{
		{syscall.EPERM, []error{ErrNotPermitted, ErrKexecLoadForbidden}, "--load=file"},
		{syscall.ENOSYS, []error{ErrNotSupported}, "--load=file"},
		{syscall.EBUSY, []error{ErrBusy}, "another kexec load"},
		{syscall.EADDRNOTAVAIL, []error{ErrNoMemory}, "segment"},
		{syscall.EINVAL, nil, "overlap"},
	} {
		var err error = &KexecError{Op: OpLoad, Args: "entry 0x3000, 5 segments, KEXEC_ARCH_DEFAULT", Errno: tc.errno}
		if !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), "kexec_load(entry 0x3000") || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%v: %v; want the errno, the call and %q", tc.errno, err, tc.hint)
		}
		for _, k := range allKinds {
			want := false
			for _, w := range tc.kinds {
				want = want || w == k
			}
			if errors.Is(err, k) != want {
				t.Errorf("%v: errors.Is(%v, %v) = %v, want %v", tc.errno, err, k, !want, want)
			}
		}
	}
}

func TestFileLoadNamesFiles(t *testing.T) {
	// A kernel fd that is not open for reading fails with EBADF before
	// anything is loaded; without privileges the answer is EPERM, without
	// kexec_file_load ENOSYS.
	if b, err := os.ReadFile("/proc/sys/kernel/kexec_load_limit_reboot"); err == nil && strings.TrimSpace(string(b)) != "-1" {
		t.Skipf("kernel.kexec_load_limit_reboot = %s: the call would use up a load", strings.TrimSpace(string(b)))
	}
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = FileLoad(f, nil, "quiet", 0)
	var ke *KexecError
	if !errors.As(err, &ke) || ke.Op != OpFileLoad {
		t.Fatalf("err = %v, want a *KexecError of kexec_file_load", err)
	}
	if !strings.Contains(err.Error(), "kexec_file_load(kernel=/dev/null, initrd=none, cmdline 5 bytes, flags 0x4)") {
		t.Errorf("error %q does not name the call and its arguments", err)
	}
}

func TestMemfdSealAndCopy(t *testing.T) {
	src, err := MemfdCreate("kexecsys-test\x00src" + strings.Repeat("x", 300))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !strings.HasPrefix(src.Name(), "memfd:kexecsys-test_src") || len(src.Name()) != len("memfd:")+maxMemfdName {
		t.Errorf("name %q: want NULs replaced and the name cut to %d bytes", src.Name(), maxMemfdName)
	}
	if _, err := src.Write([]byte("hello, kexec")); err != nil {
		t.Fatal(err)
	}
	if err := Seal(src); err != nil {
		t.Fatal(err)
	}
	if s, err := Seals(src); err != nil || s != SealAll {
		t.Errorf("seals %#x, %v; want %#x", s, err, SealAll)
	}
	if _, err := src.Write([]byte("more")); err == nil {
		t.Error("write to a sealed memfd succeeded")
	}
	dst, err := NewImageFile("kexecsys-test-dst")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	n, err := CopyFileRange(dst, 3, src, 12)
	if err != nil && !errors.Is(err, ErrNotSupported) {
		t.Fatal(err)
	}
	if err == nil {
		got := make([]byte, 15)
		if _, err := dst.ReadAt(got, 0); err != nil || n != 12 || string(got[3:]) != "hello, kexec" {
			t.Errorf("copied %d: %q, %v", n, got, err)
		}
	}
	if _, err := CopyFileRange(dst, 0, src, 100); err == nil || !strings.Contains(err.Error(), "source ended") {
		t.Errorf("copy past the end: %v", err)
	}
}

func TestErrorKindsAreTheSentinels(t *testing.T) {
	seen := map[error]string{}
	for name, err := range ErrorKinds() {
		if !strings.HasPrefix(name, "kexec.") {
			t.Errorf("%s: want the kexec. prefix", name)
		}
		if prev, ok := seen[err]; ok {
			t.Errorf("%v named twice: %s and %s", err, prev, name)
		}
		seen[err] = name
	}
	for _, k := range allKinds {
		if _, ok := seen[k]; !ok {
			t.Errorf("%v missing from ErrorKinds", k)
		}
	}
}
