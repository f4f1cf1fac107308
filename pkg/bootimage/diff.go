package bootimage

import (
	"fmt"
	"slices"
	"strings"
)

// ManifestDiff says how one boot image differs from another, by module
// name. (The type cannot share the name of the Diff function.)
type ManifestDiff struct {
	// Added lists modules of the new manifest that the old one lacks, in
	// the new manifest's order.
	Added []string `json:"added,omitempty"`
	// Removed lists modules of the old manifest that the new one lacks,
	// in the old manifest's order.
	Removed []string `json:"removed,omitempty"`
	// Changed lists modules present in both whose digest (or role)
	// differs, in the new manifest's order.
	Changed []string `json:"changed,omitempty"`
	// CmdlineChanged is true when the command lines differ.
	CmdlineChanged bool `json:"cmdline_changed,omitempty"`
	// OrderChanged is true when the initrd modules both manifests hold
	// are unpacked in another order: later files overwrite earlier ones,
	// so the order is part of the image.
	OrderChanged bool `json:"order_changed,omitempty"`
}

// Diff compares two manifests. A nil old manifest is empty: everything in
// new is added. Module contents are compared by digest only; the source
// path and the manifest name do not count.
func Diff(old, new *Manifest) ManifestDiff {
	if old == nil {
		old = &Manifest{}
	}
	if new == nil {
		new = &Manifest{}
	}
	var d ManifestDiff
	oldByName := make(map[string]Module, len(old.Modules))
	for _, m := range old.Modules {
		oldByName[m.Name] = m
	}
	newByName := make(map[string]Module, len(new.Modules))
	for _, m := range new.Modules {
		newByName[m.Name] = m
		o, ok := oldByName[m.Name]
		switch {
		case !ok:
			d.Added = append(d.Added, m.Name)
		case o.SHA256 != m.SHA256 || o.Role != m.Role:
			d.Changed = append(d.Changed, m.Name)
		}
	}
	for _, m := range old.Modules {
		if _, ok := newByName[m.Name]; !ok {
			d.Removed = append(d.Removed, m.Name)
		}
	}
	d.CmdlineChanged = old.Cmdline != new.Cmdline
	d.OrderChanged = !slices.Equal(commonInitrds(old, newByName), commonInitrds(new, oldByName))
	return d
}

// commonInitrds lists m's initrd names that other also has, in m's order.
func commonInitrds(m *Manifest, other map[string]Module) []string {
	var names []string
	for _, mod := range m.Modules {
		if o, ok := other[mod.Name]; ok && mod.Role == RoleInitrd && o.Role == RoleInitrd {
			names = append(names, mod.Name)
		}
	}
	return names
}

// Empty reports whether the two manifests describe the same boot image.
func (d ManifestDiff) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0 &&
		!d.CmdlineChanged && !d.OrderChanged
}

// String describes the difference on one line per kind of change, or says
// "no changes".
func (d ManifestDiff) String() string {
	if d.Empty() {
		return "no changes"
	}
	var lines []string
	add := func(what string, names []string) {
		if len(names) > 0 {
			lines = append(lines, fmt.Sprintf("%s: %s", what, strings.Join(names, ", ")))
		}
	}
	add("added", d.Added)
	add("removed", d.Removed)
	add("changed", d.Changed)
	if d.OrderChanged {
		lines = append(lines, "initrd order changed")
	}
	if d.CmdlineChanged {
		lines = append(lines, "cmdline changed")
	}
	return strings.Join(lines, "\n")
}
