package fastreboot

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestKexecLoaderNamesCall(t *testing.T) {
	// A kernel fd that is not open for reading fails with EBADF before
	// anything is loaded (kernel_read_file_from_fd); without privileges the
	// answer is EPERM, without kexec_file_load ENOSYS.
	if limit, err := readInt("/proc/sys/kernel/kexec_load_limit_reboot"); err == nil && limit >= 0 {
		t.Skipf("kernel.kexec_load_limit_reboot = %d: the call would use up a load", limit)
	}
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = KexecLoader{}.FileLoad(f, nil, "quiet", 0)
	if err == nil {
		t.Fatal("kexec_file_load of /dev/null succeeded")
	}
	if !strings.Contains(err.Error(), "kexec_file_load(kernel=/dev/null, initrd=none, cmdline 5 bytes, flags 0x4)") {
		t.Errorf("error %q does not name the call and its arguments", err)
	}
}

// TestProbeKexecFileLoadReal runs the real probe. It is side-effect free
// (see ProbeKexecFileLoad), which the test checks on the loaded state.
func TestProbeKexecFileLoadReal(t *testing.T) {
	if limit, err := readInt("/proc/sys/kernel/kexec_load_limit_reboot"); err == nil && limit >= 0 {
		t.Skipf("kernel.kexec_load_limit_reboot = %d: a probe would use up a load", limit)
	}
	before, berr := os.ReadFile("/sys/kernel/kexec_loaded")
	err := ProbeKexecFileLoad()
	switch {
	case err == nil:
		t.Fatal("probe with fd -1 succeeded")
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EBADF), errors.Is(err, unix.EPERM), errors.Is(err, unix.EBUSY):
		t.Logf("probe: %v", err)
	default:
		t.Errorf("probe: unexpected %v", err)
	}
	after, aerr := os.ReadFile("/sys/kernel/kexec_loaded")
	if berr == nil && (aerr != nil || string(before) != string(after)) {
		t.Errorf("kexec_loaded changed across the probe: %q -> %q (%v)", before, after, aerr)
	}
	ok, detail := judgeProbe(err)
	t.Logf("judged: ok=%v %s", ok, detail)
}
