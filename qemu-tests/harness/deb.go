package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

// DebVersion is the version of the .deb BuildDeb makes.
const DebVersion = "0.1.0~test"

// BuildDeb builds the fastreboot .deb from the repository with nfpm: the
// CLI built for linux/amd64 (static, as for the guest), plus what
// dist/nfpm.yaml lists (the systemd units, the initramfs-tools hook and
// boot scripts, /etc/default/fastreboot). moduleDir is the qemu-tests
// module's directory ("" finds it from the working directory). It returns
// the package's path in outDir: fastreboot_VERSION_amd64.deb.
func BuildDeb(ctx context.Context, moduleDir, outDir string) (string, error) {
	if moduleDir == "" {
		d, err := FindModuleDir("")
		if err != nil {
			return "", err
		}
		moduleDir = d
	}
	repo := filepath.Dir(moduleDir)
	bin := filepath.Join(outDir, "fastreboot")
	flags := []string{"build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", bin, FastrebootCmd}
	if _, err := goCmd(ctx, moduleDir, guestGoEnv, flags...); err != nil {
		return "", fmt.Errorf("build the fastreboot binary for the .deb: %w", err)
	}
	cfgPath := filepath.Join(repo, "dist", "nfpm.yaml")
	cfg, err := nfpm.ParseFileWithEnvMapping(cfgPath, func(k string) string {
		switch k {
		case "FASTREBOOT_BIN":
			return bin
		case "FASTREBOOT_VERSION":
			return DebVersion
		}
		return os.Getenv(k)
	})
	if err != nil {
		return "", fmt.Errorf("nfpm config %s: %w", cfgPath, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("nfpm config %s: %w", cfgPath, err)
	}
	// The config's relative paths are the repository's.
	for _, c := range info.Contents {
		if c.Source != "" && !filepath.IsAbs(c.Source) {
			c.Source = filepath.Join(repo, c.Source)
		}
	}
	for _, s := range []*string{&info.Scripts.PostInstall, &info.Scripts.PreRemove} {
		if *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(repo, *s)
		}
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("nfpm: %w", err)
	}
	pkgr, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	out := filepath.Join(outDir, pkgr.ConventionalFileName(info))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	info.Target = out
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return "", fmt.Errorf("nfpm deb: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return out, nil
}
