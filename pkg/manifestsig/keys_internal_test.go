package manifestsig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateKeyFilesSyncsDir: the key files' directory is fsynced after
// both files are written (their entries must reach the disk too), and a
// failed directory sync leaves nothing behind.
func TestGenerateKeyFilesSyncsDir(t *testing.T) {
	dir := t.TempDir()
	var synced []string
	saved := syncDir
	t.Cleanup(func() { syncDir = saved })
	syncDir = func(d string) error {
		for _, s := range []string{PrivateKeySuffix, PublicKeySuffix} {
			if _, err := os.Stat(filepath.Join(d, "release"+s)); err != nil {
				t.Errorf("directory synced before release%s was written: %v", s, err)
			}
		}
		synced = append(synced, d)
		return nil
	}
	if _, _, _, err := GenerateKeyFiles(filepath.Join(dir, "release"), nil); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Errorf("directories synced %q, want [%s]", synced, dir)
	}

	syncDir = func(string) error { return errors.New("EIO") }
	_, _, _, err := GenerateKeyFiles(filepath.Join(dir, "other"), nil)
	if err == nil || !strings.Contains(err.Error(), "EIO") || !strings.Contains(err.Error(), "other.key") {
		t.Errorf("GenerateKeyFiles with a failing directory sync = %v, want the error naming other.key", err)
	}
	for _, s := range []string{PrivateKeySuffix, PublicKeySuffix} {
		if _, err := os.Lstat(filepath.Join(dir, "other"+s)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("other%s left behind after the failed sync: %v", s, err)
		}
	}
}
