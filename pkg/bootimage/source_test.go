package bootimage

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within fails the test if f has not returned within 20 s: opening a FIFO
// without O_NONBLOCK blocks until a writer appears.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return in 20 s", what)
		return nil
	}
}

// TestOpenFileRefusesNonRegular: FromFiles (manifest create, stage
// --kernel/--initrd) and Load refuse a device, a FIFO or a directory by
// name and kind, at once.
func TestOpenFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	kp := writeFile(t, dir, "vmlinuz", fakeBzImage(nil))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"kernel device", func() error { _, err := FromFiles("/dev/zero", nil, ""); return err }, "/dev/zero: is a character device"},
		{"kernel fifo", func() error { _, err := FromFiles(fifo, nil, ""); return err }, fifo + ": is a FIFO"},
		{"initrd fifo", func() error { _, err := FromFiles(kp, []string{fifo}, ""); return err }, fifo + ": is a FIFO"},
		{"initrd directory", func() error { _, err := FromFiles(kp, []string{dir}, ""); return err }, dir + ": is a directory"},
		{"manifest fifo", func() error { _, err := Load(fifo); return err }, fifo + ": is a FIFO"},
		{"manifest device", func() error { _, err := Load("/dev/zero"); return err }, "/dev/zero: is a character device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := within(t, tc.name, tc.call)
			if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrNotRegularFile saying %q", err, tc.want)
			}
		})
	}
}
