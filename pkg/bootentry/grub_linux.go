package bootentry

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/boot"
	"github.com/u-root/u-root/pkg/boot/grub"
	"github.com/u-root/u-root/pkg/curl"
	"github.com/u-root/u-root/pkg/mount"
)

// parseGrubConfig runs u-root's grub parser on root/rel (it builds on
// Linux only: it links u-root's mount and kexec packages). No block
// devices and an empty mount pool: a `search` finds nothing and leaves the
// root where it was.
func parseGrubConfig(ctx context.Context, root, rel string) ([]grubImage, error) {
	rootURL := &url.URL{Scheme: "file", Path: root}
	images, err := grub.ParseConfigFile(ctx, curl.Schemes{"file": rootFiles{}}, rel, rootURL, nil, &mount.Pool{})
	if err != nil {
		return nil, err
	}
	var out []grubImage
	for _, im := range images {
		li, ok := im.(*boot.LinuxImage)
		if !ok {
			continue
		}
		gi := grubImage{Title: li.Name, Cmdline: li.Cmdline}
		if u, ok := li.Kernel.(interface{ URL() *url.URL }); ok {
			gi.Kernel = u.URL().Path
		}
		out = append(out, gi)
	}
	return out, nil
}

// rootFiles is the file scheme u-root's parser reads grub.cfg through: it
// reads the whole file and closes it (curl's LocalFileClient keeps every
// file it opens open). Kernels and initrds are fetched lazily, so never.
type rootFiles struct{}

func (rootFiles) Fetch(_ context.Context, u *url.URL) (io.ReaderAt, error) {
	b, err := os.ReadFile(filepath.Clean(u.Path))
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

func (rootFiles) FetchWithoutCache(_ context.Context, u *url.URL) (io.Reader, error) {
	b, err := os.ReadFile(filepath.Clean(u.Path))
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}
