package bootentry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/shlex"
)

// grubDirs are where grub.cfg and grubenv are looked for, in this order.
var grubDirs = []string{"boot/grub", "boot/grub2", "grub", "grub2"}

// grubenv is GRUB's environment block.
type grubenv struct {
	file string
	vars map[string]string
}

// readGrubenv reads the first grubenv found. It is parsed here rather than
// with u-root's grub.ParseEnvFile, which rejects the whole file when a
// variable is empty, as "next_entry=" is after every grub-reboot.
func readGrubenv(root string, l *List) grubenv {
	for _, d := range grubDirs {
		p := filepath.Join(root, d, "grubenv")
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		env := grubenv{file: p, vars: map[string]string{}}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if line == "" || line[0] == '#' {
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				env.vars[k] = v
			}
		}
		if err := sc.Err(); err != nil {
			l.Problems = append(l.Problems, fmt.Errorf("%s: %w", p, err))
		}
		return env
	}
	return grubenv{}
}

// grubMeta is what the line scan of grub.cfg knows of a menu entry.
type grubMeta struct {
	numPath, idPath, titlePath string // GRUB's ways to name it ("1>2", ids, titles)
	id, title                  string
	line                       int
	linux                      string   // the path of the linux line, "" if none
	initrds                    []string // the paths of the last initrd line
	unsupported                string   // a construct that makes the entry unfollowable
}

// grubScan is what scanGrub found.
type grubScan struct {
	file                          string
	entries                       []Entry
	meta                          []grubMeta // parallel to entries
	defaultValue, defaultLine     string
	usesSavedEntry, usesNextEntry bool
}

// scanGrub lists the Linux entries of the first grub.cfg found.
func scanGrub(ctx context.Context, root string, l *List) grubScan {
	var g grubScan
	var rel string
	for _, d := range grubDirs {
		p := filepath.Join(root, d, "grub.cfg")
		if _, err := os.Stat(p); err == nil {
			g.file, rel = p, filepath.Join(d, "grub.cfg")
			break
		}
	}
	if g.file == "" {
		return g
	}
	b, err := os.ReadFile(g.file)
	if err != nil {
		l.Problems = append(l.Problems, fmt.Errorf("%s: %w", g.file, err))
		return g
	}
	metas := g.scanLines(root, b, l)

	// u-root's parser gives each entry's title, kernel and command line
	// (with GRUB's quoting of the linux line's arguments).
	images, perr := parseGrubConfig(ctx, root, rel)
	if perr != nil {
		perr = fmt.Errorf("%s: u-root's grub parser: %v: %w", g.file, perr, ErrUnsupported)
		l.Problems = append(l.Problems, perr)
	}
	for _, m := range metas {
		if m.linux == "" && m.unsupported == "" {
			continue // not a Linux entry (fwsetup, chainloader to another OS)
		}
		id := m.id
		if id == "" {
			id = "grub-" + strings.ReplaceAll(m.numPath, ">", ".")
		}
		config := fmt.Sprintf("%s:%d", g.file, m.line)
		e := Entry{ID: id, Title: m.title, Source: SourceGrub, Config: config}
		switch {
		case perr != nil:
			e.Err = entryErr(SourceGrub, id, config, ErrUnsupported, "%s could not be parsed", g.file)
		case m.unsupported != "":
			e.Err = entryErr(SourceGrub, id, config, ErrUnsupported, "%s", m.unsupported)
		default:
			img := matchImage(images, root, m)
			if img == nil {
				e.Err = entryErr(SourceGrub, id, config, ErrUnsupported, "u-root's grub parser gives no kernel %s for it", m.linux)
				break
			}
			e.Cmdline = img.Cmdline
			e.Kernel = grubPath(root, m.linux)
			for _, p := range m.initrds {
				e.Initrds = append(e.Initrds, grubPath(root, p))
			}
			e.checkFiles()
		}
		g.entries = append(g.entries, e)
		g.meta = append(g.meta, m)
	}
	return g
}

// grubImage is what u-root's parser says of a Linux entry.
type grubImage struct {
	Title, Kernel, Cmdline string // Kernel: the path under the root it resolved
}

// matchImage finds u-root's image of an entry: same title, same kernel.
func matchImage(images []grubImage, root string, m grubMeta) *grubImage {
	want := within(root, m.linux)
	for i, im := range images {
		if im.Title == m.title && filepath.Clean(im.Kernel) == want {
			return &images[i]
		}
	}
	return nil
}

// grubPath resolves a path of grub.cfg: under the root, or under root/boot
// when /boot is a partition of its own (GRUB's root is then that
// partition, and its paths lack the /boot prefix).
func grubPath(root, p string) string {
	full := within(root, p)
	if _, err := os.Stat(full); err != nil {
		if alt := within(filepath.Join(root, "boot"), p); fileExists(alt) {
			return alt
		}
	}
	return full
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// followable says why a path of grub.cfg cannot be followed, or "".
func followable(what, p string) string {
	switch {
	case strings.Contains(p, "$"):
		return fmt.Sprintf("%s path %q goes through a GRUB variable, which is not expanded", what, p)
	case strings.HasPrefix(p, "("):
		return fmt.Sprintf("%s path %q names a GRUB device, which is not mapped to a mount", what, p)
	}
	return ""
}

// scanLines walks grub.cfg's lines for the menu's structure, each entry's
// linux and initrd paths, and the default.
func (g *grubScan) scanLines(root string, b []byte, l *List) []grubMeta {
	type frame struct {
		kind                       string // menuentry, submenu, other, top
		children                   int
		numPath, idPath, titlePath string
		entry                      int // index in metas of a menuentry frame
	}
	stack := []*frame{{kind: "top"}}
	var metas []grubMeta
	inEntry := func() *grubMeta {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].kind == "menuentry" {
				return &metas[stack[i].entry]
			}
		}
		return nil
	}
	join := func(parent, s string) string {
		if parent == "" {
			return s
		}
		return parent + ">" + s
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		kv := shlex.Argv(sc.Text())
		if len(kv) == 0 {
			continue
		}
		opens := kv[len(kv)-1] == "{"
		switch dir := strings.ToLower(kv[0]); {
		case dir == "}":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case dir == "menuentry" || dir == "submenu":
			parent := stack[len(stack)-1]
			title, id := "", ""
			if len(kv) > 1 {
				title = kv[1]
			}
			for i := 2; i+1 < len(kv); i++ {
				if kv[i] == "--id" || kv[i] == "$menuentry_id_option" || kv[i] == "${menuentry_id_option}" {
					id = kv[i+1]
				}
			}
			num := strconv.Itoa(parent.children)
			parent.children++
			idOrNum := id
			if idOrNum == "" {
				idOrNum = num
			}
			f := &frame{kind: dir, numPath: join(parent.numPath, num), idPath: join(parent.idPath, idOrNum), titlePath: join(parent.titlePath, title)}
			if dir == "menuentry" {
				metas = append(metas, grubMeta{numPath: f.numPath, idPath: f.idPath, titlePath: f.titlePath, id: id, title: title, line: n})
				f.entry = len(metas) - 1
			}
			if opens {
				stack = append(stack, f)
			}
		case opens:
			stack = append(stack, &frame{kind: "other"})
		default:
			m := inEntry()
			if m == nil {
				g.topLevel(root, n, dir, kv, l)
				continue
			}
			switch dir {
			case "linux", "linux16", "linuxefi":
				if len(kv) > 1 {
					m.linux, m.initrds = kv[1], nil
					if why := followable("kernel", kv[1]); why != "" && m.unsupported == "" {
						m.unsupported = why
					}
				}
			case "initrd", "initrd16", "initrdefi":
				m.initrds = kv[1:]
				for _, p := range kv[1:] {
					if why := followable("initrd", p); why != "" && m.unsupported == "" {
						m.unsupported = why
					}
				}
			case "configfile", "source", "multiboot", "multiboot2", "devicetree":
				if m.unsupported == "" {
					m.unsupported = fmt.Sprintf("line %d: %s inside the entry is not followed", n, dir)
				}
			}
		}
	}
	return metas
}

// topLevel notes what a line outside any entry says about the default,
// and includes that are not followed.
func (g *grubScan) topLevel(root string, n int, dir string, kv []string, l *List) {
	switch dir {
	case "set":
		if len(kv) < 2 {
			return
		}
		k, v, ok := strings.Cut(kv[1], "=")
		if !ok || k != "default" {
			return
		}
		switch {
		case v == "${saved_entry}" || v == "$saved_entry":
			g.usesSavedEntry = true
		case v == "${next_entry}" || v == "$next_entry":
			g.usesNextEntry = true
		case strings.Contains(v, "$"):
		default:
			g.defaultValue, g.defaultLine = v, fmt.Sprintf("%s:%d", g.file, n)
		}
	case "configfile", "source":
		if len(kv) < 2 {
			return
		}
		// Debian's 41_custom sources ${config_directory}/custom.cfg when
		// it exists; an include that exists is reported, not followed.
		p := strings.NewReplacer("${config_directory}", "$prefix", "${prefix}", "$prefix").Replace(kv[1])
		p = strings.ReplaceAll(p, "$prefix", strings.TrimPrefix(filepath.Dir(g.file), root))
		if !strings.Contains(p, "$") && fileExists(grubPath(root, p)) {
			l.Problems = append(l.Problems, fmt.Errorf("%s:%d: %s %s: %w: the entries of included files are not listed", g.file, n, dir, kv[1], ErrUnsupported))
		}
	}
}
