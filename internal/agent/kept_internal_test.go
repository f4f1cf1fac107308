package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// pmemLoader is a fake module loader: loading nd_pmem makes the region's
// /dev/pmem0 appear under root, as the nd bus's probe does.
type pmemLoader struct {
	t      *testing.T
	root   string
	loaded []string
}

func (l *pmemLoader) LoadModule(f *os.File, params string) error {
	name := filepath.Base(f.Name())
	l.loaded = append(l.loaded, name)
	// The kernel lists a loaded module in /sys/module.
	if err := os.MkdirAll(filepath.Join(l.root, "sys/module", strings.TrimSuffix(name, ".ko")), 0o755); err != nil {
		return err
	}
	if name == "nd_pmem.ko" {
		writeFiles(l.t, l.root, map[string]string{
			"sys/block/pmem0/size":            "131072\n",
			"sys/block/pmem0/device/resource": "0x40000000\n",
			"dev/pmem0":                       "",
		})
	}
	return nil
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnsureKeptDevice: a command line keeping a region with no device
// makes the daemon load nd_e820 and nd_pmem (dependencies first) before
// Resume; with the device there, or no region, nothing is loaded.
func TestEnsureKeptDevice(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"proc/cmdline":                                              "console=ttyS0 memmap=64M!0x40000000\n",
		"proc/sys/kernel/osrelease":                                 "6.1.0-test\n",
		"lib/modules/6.1.0-test/modules.dep":                        "kernel/drivers/nvdimm/libnvdimm.ko:\nkernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko\nkernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko\nkernel/arch/x86/nd_e820.ko: kernel/drivers/nvdimm/libnvdimm.ko\n",
		"lib/modules/6.1.0-test/kernel/drivers/nvdimm/libnvdimm.ko": "x",
		"lib/modules/6.1.0-test/kernel/drivers/nvdimm/nd_btt.ko":    "x",
		"lib/modules/6.1.0-test/kernel/drivers/nvdimm/nd_pmem.ko":   "x",
		"lib/modules/6.1.0-test/kernel/arch/x86/nd_e820.ko":         "x",
	})
	l := &pmemLoader{t: t, root: root}
	opts := Options{Root: root, Pstore: crashhandler.PstoreOptions{Modules: l}}
	what, err := ensureKeptDevice(opts, time.Second)
	if err != nil || !strings.Contains(what, "/dev/pmem0") {
		t.Fatalf("ensureKeptDevice = %q, %v", what, err)
	}
	if got := strings.Join(l.loaded, " "); got != "libnvdimm.ko nd_e820.ko nd_btt.ko nd_pmem.ko" {
		t.Errorf("loaded %s, want libnvdimm, nd_e820, nd_btt, nd_pmem", got)
	}
	// The device is there now: nothing more is loaded.
	l.loaded = nil
	if _, err := ensureKeptDevice(opts, time.Second); err != nil || len(l.loaded) != 0 {
		t.Errorf("second call: loaded %v, %v", l.loaded, err)
	}
	writeFiles(t, root, map[string]string{"proc/cmdline": "console=ttyS0\n"})
	if what, err := ensureKeptDevice(opts, time.Second); what != "" || err != nil || len(l.loaded) != 0 {
		t.Errorf("no region: %q, %v, loaded %v", what, err, l.loaded)
	}
}
