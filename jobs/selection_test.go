package jobs

import (
	"slices"
	"testing"
)

func TestResolve(t *testing.T) {
	inventory := []Target{
		{MoRef: "vm-1", Name: "web1", UUID: "uuid-1", Folder: "/DC0/vm/prod/web", Cluster: "gold", ClusterMoRef: "domain-c1"},
		{MoRef: "vm-2", Name: "web2", Folder: "/DC0/vm/prod/web", Cluster: "gold", ClusterMoRef: "domain-c1"},
		{MoRef: "vm-3", Name: "db1", Folder: "/DC0/vm/prod", Cluster: "silver", ClusterMoRef: "domain-c2"},
		{MoRef: "vm-4", Name: "build", Folder: "/DC0/vm/production", Cluster: "silver", ClusterMoRef: "domain-c2"},
		{MoRef: "vm-5", Name: "test", Folder: "/DC0/vm/test"},
		{MoRef: "vm-6", Name: "db1", Folder: "/DC1/vm"},           // same name, other VM
		{MoRef: "vm-1", Name: "web1", Folder: "/DC0/vm/prod/web"}, // listed twice
	}
	for _, c := range []struct {
		name string
		sel  Selection
		want []string // morefs, in order
	}{
		{"by name", Selection{VMs: []string{"web2", "test"}}, []string{"vm-5", "vm-2"}},
		{"by moref", Selection{VMs: []string{"vm-4"}}, []string{"vm-4"}},
		{"by uuid", Selection{VMs: []string{"uuid-1"}}, []string{"vm-1"}},
		{"a name shared by two VMs selects both", Selection{VMs: []string{"db1"}}, []string{"vm-3", "vm-6"}},
		{"folder and below, whole elements only", Selection{Folders: []string{"/DC0/vm/prod"}}, []string{"vm-3", "vm-1", "vm-2"}},
		{"folder with trailing slash", Selection{Folders: []string{"/DC0/vm/prod/"}}, []string{"vm-3", "vm-1", "vm-2"}},
		{"leaf folder", Selection{Folders: []string{"/DC0/vm/prod/web"}}, []string{"vm-1", "vm-2"}},
		{"partial element matches nothing", Selection{Folders: []string{"/DC0/vm/pro"}}, nil},
		{"root folder", Selection{Folders: []string{"/"}}, []string{"vm-4", "vm-3", "vm-6", "vm-5", "vm-1", "vm-2"}},
		{"cluster by name", Selection{Clusters: []string{"silver"}}, []string{"vm-4", "vm-3"}},
		{"cluster by moref", Selection{Clusters: []string{"domain-c1"}}, []string{"vm-1", "vm-2"}},
		{"exclusions by name and moref", Selection{Folders: []string{"/DC0"}, Exclude: []string{"web2", "vm-4"}}, []string{"vm-3", "vm-5", "vm-1"}},
		{"exclusion wins over an explicit VM", Selection{VMs: []string{"test"}, Exclude: []string{"test"}}, nil},
		{"overlapping rules select once", Selection{VMs: []string{"web1", "vm-1"}, Folders: []string{"/DC0/vm/prod"}, Clusters: []string{"gold"}}, []string{"vm-3", "vm-1", "vm-2"}},
		{"unknown names select nothing", Selection{VMs: []string{"nope"}, Clusters: []string{"bronze"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, vm := range c.sel.Resolve(inventory) {
				got = append(got, vm.MoRef)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Resolve = %v, want %v", got, c.want)
			}
		})
	}
}

func TestResolveIgnoresEmptyClusterOfUnclusteredVMs(t *testing.T) {
	// A VM on a standalone host has no cluster; no selection of a cluster
	// may match it by that emptiness.
	vms := []Target{{MoRef: "vm-1", Name: "a"}}
	if got := (Selection{Clusters: []string{"c"}}).Resolve(vms); len(got) != 0 {
		t.Errorf("Resolve = %v", got)
	}
}
