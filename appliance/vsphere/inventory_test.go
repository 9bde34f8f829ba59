package vsphere

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// inventoryModel is a vCenter with one datacenter inside a folder, a
// standalone host and two clusters of two hosts, three VMs per host or
// cluster, and two datastores mounted everywhere.
func inventoryModel(m *simulator.Model) {
	m.Datacenter = 1
	m.Folder = 1
	m.Host = 1
	m.Cluster = 2
	m.ClusterHost = 2
	m.Machine = 3
	m.Datastore = 2
}

const (
	dcPath      = "/F0/DC0"
	vmFolder    = dcPath + "/vm/F0" // the model puts everything in F0 sub-folders
	standaloneH = "DC0_H0"
)

func TestInventory(t *testing.T) {
	m, s := newSim(t, inventoryModel)
	ac := adminClient(t, s)
	ctx := context.Background()
	finder := find.NewFinder(ac.Client)

	// Make one template and turn CBT on for one VM, through the API.
	tmpl, err := finder.VirtualMachine(ctx, vmFolder+"/DC0_C0_RP0_VM1")
	if err != nil {
		t.Fatal(err)
	}
	if task, err := tmpl.PowerOff(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("power off: %v", err)
	}
	if err := tmpl.MarkAsTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	cbt, err := finder.VirtualMachine(ctx, vmFolder+"/DC0_C1_RP0_VM2")
	if err != nil {
		t.Fatal(err)
	}
	task, err := cbt.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(true)})
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("enable CBT: %v", err)
	}

	log, _ := newLogger(t)
	c := connect(t, simConfig(s), log)
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}

	count := m.Count()
	for _, n := range []struct {
		what      string
		got, want int
	}{
		{"VMs", len(inv.VMs), 9},
		{"hosts", len(inv.Hosts), 5},
		{"clusters", len(inv.Clusters), 2},
		{"datastores", len(inv.Datastores), 2},
	} {
		if n.got != n.want {
			t.Errorf("%d %s, want %d", n.got, n.what, n.want)
		}
	}
	if len(inv.VMs) != count.Machine || len(inv.Hosts) != count.Host {
		t.Errorf("simulator has %d VMs and %d hosts, inventory %d and %d", count.Machine, count.Host, len(inv.VMs), len(inv.Hosts))
	}

	hosts := make(map[string]Host)
	for _, h := range inv.Hosts {
		hosts[h.MoRef] = h
	}
	var dsNames []string
	for _, ds := range inv.Datastores {
		dsNames = append(dsNames, ds.Name)
	}

	t.Run("VMs", func(t *testing.T) {
		for _, vm := range inv.VMs {
			if vm.Folder != vmFolder || vm.Path != vm.Folder+"/"+vm.Name {
				t.Errorf("%s: folder %q path %q, want %q/%s", vm.MoRef, vm.Folder, vm.Path, vmFolder, vm.Name)
			}
			// The path must be one that govmomi resolves to the same VM.
			if obj, err := finder.VirtualMachine(ctx, vm.Path); err != nil || obj.Reference().Value != vm.MoRef {
				t.Errorf("%s: path %q does not resolve to it: %v", vm.MoRef, vm.Path, err)
			}
			h, ok := hosts[vm.Host]
			if !ok {
				t.Errorf("%s: host %q not in the inventory", vm.Name, vm.Host)
			}
			if vm.Cluster != h.Cluster {
				t.Errorf("%s: cluster %q, its host's %q", vm.Name, vm.Cluster, h.Cluster)
			}
			wantCluster := ""
			if !strings.HasPrefix(vm.Name, standaloneH+"_") {
				wantCluster = vm.Name[:len("DC0_C0")]
			}
			if vm.Cluster != wantCluster {
				t.Errorf("%s: cluster %q, want %q", vm.Name, vm.Cluster, wantCluster)
			}
			if len(vm.Datastores) == 0 {
				t.Errorf("%s: no datastore", vm.Name)
			}
			for _, ds := range vm.Datastores {
				if !slices.Contains(dsNames, ds) {
					t.Errorf("%s: datastore %q not in the inventory", vm.Name, ds)
				}
			}
			if vm.UUID == "" || vm.InstanceUUID == "" || vm.UUID == vm.InstanceUUID {
				t.Errorf("%s: uuid %q instance uuid %q", vm.Name, vm.UUID, vm.InstanceUUID)
			}
			if vm.GuestOS == "" {
				t.Errorf("%s: no guest OS", vm.Name)
			}
			isTemplate := vm.MoRef == tmpl.Reference().Value
			if vm.Template != isTemplate {
				t.Errorf("%s: template %t, want %t", vm.Name, vm.Template, isTemplate)
			}
			wantPower := "poweredOn"
			if isTemplate {
				wantPower = "poweredOff"
			}
			if vm.PowerState != wantPower {
				t.Errorf("%s: power state %q, want %q", vm.Name, vm.PowerState, wantPower)
			}
			if want := vm.MoRef == cbt.Reference().Value; vm.CBT != want {
				t.Errorf("%s: CBT %t, want %t", vm.Name, vm.CBT, want)
			}
		}
	})

	t.Run("folders", func(t *testing.T) {
		kinds := make(map[string]string)
		for _, f := range inv.Folders {
			kinds[f.Path] = f.Kind
			if obj, err := finder.Folder(ctx, f.Path); err != nil || obj.Reference().Value != f.MoRef {
				t.Errorf("folder %s: path %q does not resolve to it: %v", f.MoRef, f.Path, err)
			}
			if !strings.HasSuffix(f.Path, "/"+f.Name) {
				t.Errorf("folder %s: path %q does not end in its name %q", f.MoRef, f.Path, f.Name)
			}
		}
		for path, kind := range map[string]string{
			"/F0":                    "datacenter",
			dcPath + "/vm":           "vm",
			vmFolder:                 "vm",
			dcPath + "/host":         "host",
			dcPath + "/host/F0":      "host",
			dcPath + "/datastore":    "datastore",
			dcPath + "/datastore/F0": "datastore",
			dcPath + "/network":      "network",
		} {
			if kinds[path] != kind {
				t.Errorf("folder %s: kind %q, want %q", path, kinds[path], kind)
			}
		}
	})

	t.Run("clusters and hosts", func(t *testing.T) {
		for _, cl := range inv.Clusters {
			if want := dcPath + "/host/F0/" + cl.Name; cl.Path != want {
				t.Errorf("cluster %s: path %q, want %q", cl.Name, cl.Path, want)
			}
			if len(cl.Hosts) != 2 {
				t.Errorf("cluster %s: %d hosts, want 2", cl.Name, len(cl.Hosts))
			}
			for _, ref := range cl.Hosts {
				if h := hosts[ref]; h.Cluster != cl.Name {
					t.Errorf("host %s of cluster %s says cluster %q", ref, cl.Name, h.Cluster)
				}
			}
		}
		for _, h := range inv.Hosts {
			if (h.Name == standaloneH) != (h.Cluster == "") {
				t.Errorf("host %s: cluster %q", h.Name, h.Cluster)
			}
			if !slices.Equal(h.Datastores, []string{"LocalDS_0", "LocalDS_1"}) {
				t.Errorf("host %s: datastores %q", h.Name, h.Datastores)
			}
			if h.ConnectionState != "connected" {
				t.Errorf("host %s: connection state %q", h.Name, h.ConnectionState)
			}
		}
	})

	t.Run("datastores and networks", func(t *testing.T) {
		if !slices.Equal(dsNames, []string{"LocalDS_0", "LocalDS_1"}) {
			t.Errorf("datastores %q", dsNames)
		}
		for _, ds := range inv.Datastores {
			if !ds.Accessible || ds.Type == "" || ds.URL == "" || ds.Capacity <= 0 || ds.Free <= 0 || ds.Free > ds.Capacity {
				t.Errorf("datastore %+v", ds)
			}
		}
		var nets []string
		for _, n := range inv.Networks {
			nets = append(nets, n.Kind+":"+n.Name)
		}
		for _, want := range []string{"Network:VM Network", "DistributedVirtualPortgroup:DC0_DVPG0"} {
			if !slices.Contains(nets, want) {
				t.Errorf("networks %q lack %s", nets, want)
			}
		}
	})
}

// createVM creates a VM named name in a new folder under the model's VM
// folder, in the resource pool of an existing clustered VM.
func createVM(t *testing.T, ac *govmomi.Client, folderName, name string) string {
	t.Helper()
	ctx := context.Background()
	finder := find.NewFinder(ac.Client)
	parent, err := finder.Folder(ctx, vmFolder)
	if err != nil {
		t.Fatal(err)
	}
	folder, err := parent.CreateFolder(ctx, folderName)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := finder.VirtualMachine(ctx, vmFolder+"/DC0_C0_RP0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := peer.ResourcePool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := folder.CreateVM(ctx, types.VirtualMachineConfigSpec{
		Name:    name,
		GuestId: string(types.VirtualMachineGuestOsIdentifierOtherGuest),
		Files:   &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
	}, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Result.(types.ManagedObjectReference).Value
}

func TestFindVM(t *testing.T) {
	_, s := newSim(t, inventoryModel)
	ac := adminClient(t, s)
	ctx := context.Background()
	dup := createVM(t, ac, "other", "DC0_H0_VM0")
	nested := createVM(t, ac, "prod", "web01")

	log, _ := newLogger(t)
	c := connect(t, simConfig(s), log)
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var orig VM
	for _, vm := range inv.VMs {
		if vm.Name == "DC0_H0_VM0" && vm.MoRef != dup {
			orig = vm
		}
	}
	if orig.MoRef == "" {
		t.Fatal("model VM DC0_H0_VM0 not in the inventory")
	}

	for _, tc := range []struct{ query, want string }{
		{"web01", nested},
		{nested, nested},
		{vmFolder + "/prod/web01", nested},
		{orig.MoRef, orig.MoRef},
		{"VirtualMachine:" + orig.MoRef, orig.MoRef},
		{dup, dup},
		{vmFolder + "/DC0_H0_VM0", orig.MoRef},
		{vmFolder + "/other/DC0_H0_VM0", dup},
	} {
		vm, err := c.FindVM(ctx, tc.query)
		if err != nil {
			t.Errorf("FindVM(%q): %v", tc.query, err)
			continue
		}
		if vm.MoRef != tc.want {
			t.Errorf("FindVM(%q) = %s, want %s", tc.query, vm.MoRef, tc.want)
		}
	}

	vm, err := c.FindVM(ctx, "web01")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Folder != vmFolder+"/prod" || vm.Path != vmFolder+"/prod/web01" || vm.Cluster != "DC0_C0" {
		t.Errorf("web01 = %+v", vm)
	}

	t.Run("ambiguous", func(t *testing.T) {
		_, err := c.FindVM(ctx, "DC0_H0_VM0")
		var amb *AmbiguousVMError
		if !errors.As(err, &amb) {
			t.Fatalf("FindVM of a duplicated name: %v, want *AmbiguousVMError", err)
		}
		got := slices.Sorted(slices.Values(amb.MoRefs))
		want := slices.Sorted(slices.Values([]string{orig.MoRef, dup}))
		if !slices.Equal(got, want) {
			t.Errorf("ambiguous morefs %q, want %q", got, want)
		}
		for _, ref := range want {
			if !strings.Contains(err.Error(), ref) {
				t.Errorf("error %q does not name %s", err, ref)
			}
		}
	})

	t.Run("missing", func(t *testing.T) {
		for _, q := range []string{"no-such-vm", "vm-999999", vmFolder + "/nope", "web0"} {
			_, err := c.FindVM(ctx, q)
			var nf *VMNotFoundError
			if !errors.As(err, &nf) || nf.Query != q {
				t.Errorf("FindVM(%q): %v, want *VMNotFoundError", q, err)
				continue
			}
			if !strings.Contains(err.Error(), q) {
				t.Errorf("error %q does not name %q", err, q)
			}
		}
	})
}

// TestInventoryRestartsAfterReloginMidway makes the property retrieval, not
// the container view's creation, meet the lost session: the view belongs to
// the old session, so the retried retrieval cannot find it and the whole read
// must start over.
func TestInventoryRestartsAfterReloginMidway(t *testing.T) {
	m, s := newSim(t, inventoryModel)
	log, logs := newLogger(t)
	c := connect(t, simConfig(s), log)

	m.Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName:  "RetrievePropertiesEx",
		ObjectType:  "*",
		ObjectName:  "*",
		Probability: 1,
		FaultType:   simulator.FaultTypeNotAuthenticated,
		MaxCount:    1,
		Enabled:     true,
	})

	inv, err := c.Inventory(context.Background())
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if len(inv.VMs) != 9 {
		t.Errorf("%d VMs, want 9", len(inv.VMs))
	}
	out := logs.String()
	if strings.Count(out, msgRelogin) != 1 || !strings.Contains(out, "inventory read interrupted by a re-login") {
		t.Errorf("log does not show one re-login and a restarted read:\n%s", out)
	}
}

func TestUnescapeName(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "plain",
		"a%2fb%2Fc":     "a/b/c",
		`x%5cy%5Cz`:     `x\y\z`,
		"100%25 done":   "100% done",
		"%252f literal": "%2f literal",
	} {
		if got := unescapeName(in); got != want {
			t.Errorf("unescapeName(%q) = %q, want %q", in, got, want)
		}
	}
}
