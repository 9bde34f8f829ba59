package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

func (s Selection) validate() error {
	if len(s.VMs) == 0 && len(s.Folders) == 0 && len(s.Clusters) == 0 {
		return errors.New("empty selection: select VMs, folders or clusters")
	}
	for _, l := range []struct {
		what  string
		items []string
	}{{"VM", s.VMs}, {"folder", s.Folders}, {"cluster", s.Clusters}, {"excluded VM", s.Exclude}} {
		for _, it := range l.items {
			if strings.TrimSpace(it) == "" {
				return fmt.Errorf("selection: empty %s", l.what)
			}
		}
	}
	for _, f := range s.Folders {
		if !strings.HasPrefix(f, "/") {
			return fmt.Errorf("selection: folder %q: want an inventory path such as /DC0/vm/prod", f)
		}
	}
	return nil
}

// Resolve returns the VMs of all that s selects, each once, sorted by name
// and then by reference. VMs are told apart by reference.
func (s Selection) Resolve(all []Target) []Target {
	var out []Target
	seen := make(map[string]bool)
	for _, t := range all {
		if seen[t.MoRef] || !s.selects(t) || matchesVM(s.Exclude, t) {
			continue
		}
		seen[t.MoRef] = true
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Target) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.MoRef, b.MoRef))
	})
	return out
}

func (s Selection) selects(t Target) bool {
	if matchesVM(s.VMs, t) {
		return true
	}
	for _, f := range s.Folders {
		if inFolder(t.Folder, f) {
			return true
		}
	}
	for _, c := range s.Clusters {
		if c == t.Cluster && c != "" || c == t.ClusterMoRef && c != "" {
			return true
		}
	}
	return false
}

func matchesVM(list []string, t Target) bool {
	for _, v := range list {
		if v != "" && (v == t.Name || v == t.MoRef || v == t.UUID) {
			return true
		}
	}
	return false
}

// inFolder reports whether path is folder or lies below it. Paths are
// compared whole element by element, so "/DC0/vm/prod" does not contain
// "/DC0/vm/production".
func inFolder(path, folder string) bool {
	folder = strings.TrimRight(folder, "/")
	return path == folder || strings.HasPrefix(path, folder+"/")
}
