package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func agentSync(path string) agent.SyncRequest { return agent.SyncRequest{Manifest: path} }

func cmdManifest(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("manifest needs a subcommand: create, diff, validate")
	}
	switch args[0] {
	case "create":
		return manifestCreate(ctx, e, args[1:])
	case "diff":
		return manifestDiff(e, args[1:])
	case "validate":
		return manifestValidate(ctx, e, args[1:])
	}
	return usagef("unknown manifest subcommand %q (create, diff, validate)", args[0])
}

func manifestCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlags("manifest create")
	var img imageFlags
	addImageFlags(fs, &img)
	out := fs.String("o", "", "write the manifest to this file instead of stdout")
	relative := fs.Bool("relative", false, "with -o: module sources relative to the manifest's directory")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("manifest create takes flags only, got %q", pos)
	}
	m, err := img.manifest(ctx, e, true)
	if err != nil {
		return err
	}
	if *relative && *out != "" {
		// Sources relative to the manifest's directory, so the tree can move.
		dir, err := filepath.Abs(filepath.Dir(*out))
		if err != nil {
			return err
		}
		for i := range m.Modules {
			if r, err := filepath.Rel(dir, m.Modules[i].Source); err == nil {
				m.Modules[i].Source = r
			}
		}
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = e.stdout.Write(b)
		return err
	}
	// A temporary file renamed over -o: a symlink there is replaced, never
	// followed, and its target never truncated; a crash leaves the old
	// manifest or the new one.
	if err := atomicfile.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

func manifestDiff(e *env, args []string) error {
	fs := newFlags("manifest diff")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("manifest diff takes OLD NEW, got %q", pos)
	}
	old, err := bootimage.Load(pos[0])
	if err != nil {
		return err
	}
	nw, err := bootimage.Load(pos[1])
	if err != nil {
		return err
	}
	d := bootimage.Diff(old, nw)
	if *asJSON {
		return printJSON(e.stdout, manifestDiffDoc(d))
	}
	if d.Empty() {
		fmt.Fprintln(e.stdout, "no difference")
		return nil
	}
	fmt.Fprintln(e.stdout, d.String())
	return nil
}

// manifestValidate checks a manifest; with --content it also reads each
// module from its source, checking size, digest and content.
func manifestValidate(ctx context.Context, e *env, args []string) error {
	fs := newFlags("manifest validate")
	content := fs.Bool("content", false, "also read every module and check its size, digest and format")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("manifest validate takes one MANIFEST, got %q", pos)
	}
	m, err := bootimage.Load(pos[0])
	if err != nil {
		return err
	}
	result := struct {
		Manifest string               `json:"manifest"`
		Modules  int                  `json:"modules"`
		Content  *modcache.SyncReport `json:"content,omitempty"`
	}{Manifest: pos[0], Modules: len(m.Modules)}
	if *content {
		// A throwaway cache does exactly the checks staging does.
		c := modcache.New(modcache.Options{Logger: e.log, Check: bootimage.CheckModuleLimits(e.cfg.machine.InitrdLimits), Root: e.root})
		defer c.Close()
		rep, err := c.Sync(ctx, m, modcache.DirSource(filepath.Dir(pos[0])))
		if err != nil {
			return err
		}
		result.Content = &rep
	}
	if *asJSON {
		return printJSON(e.stdout, manifestValidateDoc(result.Manifest, result.Modules, result.Content))
	}
	fmt.Fprintf(e.stdout, "%s: valid (%d modules", pos[0], len(m.Modules))
	if *content {
		fmt.Fprintf(e.stdout, ", contents checked: %s read", human(result.Content.BytesRead))
	}
	fmt.Fprintln(e.stdout, ")")
	return nil
}
