package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/types"
)

// VM is a virtual machine or template as the inventory lists it.
type VM struct {
	MoRef        string   `json:"moref"`
	Name         string   `json:"name"`
	UUID         string   `json:"uuid"`          // BIOS UUID, config.uuid
	InstanceUUID string   `json:"instance_uuid"` // vCenter-assigned, config.instanceUuid
	Folder       string   `json:"folder"`        // inventory path of the parent folder (or vApp), e.g. "/DC0/vm/prod"
	Path         string   `json:"path"`          // inventory path of the VM
	Cluster      string   `json:"cluster"`       // cluster name, "" if on a standalone host
	Host         string   `json:"host"`          // host moref
	Datastores   []string `json:"datastores"`
	PowerState   string   `json:"power_state"` // poweredOn, poweredOff or suspended
	GuestOS      string   `json:"guest_os"`    // the configured guest OS, by full name when vCenter knows it
	CBT          bool     `json:"cbt"`         // config.changeTrackingEnabled
	Template     bool     `json:"template"`
}

// Folder is an inventory folder. Kind says what it holds: vm, host,
// datastore, network or datacenter. Datastore clusters are listed as
// datastore folders, which is what they are in the inventory tree.
type Folder struct {
	MoRef string `json:"moref"`
	Name  string `json:"name"`
	Path  string `json:"path"`
	Kind  string `json:"kind"`
}

// Cluster is a cluster of hosts; Hosts are host morefs.
type Cluster struct {
	MoRef string   `json:"moref"`
	Name  string   `json:"name"`
	Path  string   `json:"path"`
	Hosts []string `json:"hosts"`
}

// Host is an ESXi host. Cluster is the cluster name, "" for a standalone
// host; Datastores are the names of the datastores it mounts.
type Host struct {
	MoRef           string   `json:"moref"`
	Name            string   `json:"name"`
	Cluster         string   `json:"cluster"`
	Datastores      []string `json:"datastores"`
	ConnectionState string   `json:"connection_state"`
}

// Datastore is a datastore; Capacity and Free are in bytes.
type Datastore struct {
	MoRef      string `json:"moref"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	URL        string `json:"url"`
	Capacity   int64  `json:"capacity"`
	Free       int64  `json:"free"`
	Accessible bool   `json:"accessible"`
}

// Network is a network a NIC can be attached to. Kind is its managed object
// type (Network, DistributedVirtualPortgroup or OpaqueNetwork), which a
// restore needs to build the NIC backing.
type Network struct {
	MoRef string `json:"moref"`
	Name  string `json:"name"`
	Kind  string `json:"kind"`
}

// Inventory is a snapshot of a vCenter's inventory. Names are as the vSphere
// Client shows them; paths keep vCenter's escaping of "/" (as %2f) so that
// they split unambiguously.
type Inventory struct {
	VMs        []VM        `json:"vms"`
	Folders    []Folder    `json:"folders"`
	Clusters   []Cluster   `json:"clusters"`
	Hosts      []Host      `json:"hosts"`
	Datastores []Datastore `json:"datastores"`
	Networks   []Network   `json:"networks"`
}

// viewCleanupTimeout bounds DestroyView, which runs even when the caller's
// context has ended.
const viewCleanupTimeout = 10 * time.Second

// inventorySpecs asks for just the properties the inventory needs, one
// PropertySpec per type, so that the whole inventory comes back from one
// RetrievePropertiesEx (paged by vCenter on large inventories). A spec also
// matches subtypes: ComputeResource covers clusters, Network covers
// portgroups and opaque networks, Folder covers datastore clusters.
func inventorySpecs() []types.PropertySpec {
	return []types.PropertySpec{
		{Type: "VirtualMachine", PathSet: []string{
			"name", "parent", "parentVApp", "datastore",
			"config.uuid", "config.instanceUuid", "config.template",
			"config.guestId", "config.guestFullName", "config.changeTrackingEnabled",
			"runtime.host", "runtime.powerState",
		}},
		{Type: "VirtualApp", PathSet: []string{"name", "parentFolder", "parentVApp"}},
		{Type: "Folder", PathSet: []string{"name", "parent", "childType"}},
		{Type: "Datacenter", PathSet: []string{"name", "parent"}},
		{Type: "ComputeResource", PathSet: []string{"name", "parent", "host"}},
		{Type: "HostSystem", PathSet: []string{"name", "parent", "datastore", "runtime.connectionState"}},
		{Type: "Datastore", PathSet: []string{"name", "parent", "summary"}},
		{Type: "Network", PathSet: []string{"name", "parent"}},
	}
}

// Inventory reads the whole inventory visible to the session: a container
// view over the root folder and one property retrieval.
func (c *Client) Inventory(ctx context.Context) (*Inventory, error) {
	gen := c.auth.gen.Load()
	inv, err := c.inventory(ctx)
	if err != nil && ctx.Err() == nil && c.auth.gen.Load() != gen {
		// The container view and paging tokens belong to the session; one
		// that was replaced half-way left them behind. Start over, once.
		c.log.Info("inventory read interrupted by a re-login, reading again", "err", err)
		inv, err = c.inventory(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory of vCenter %s: %w", c.url.Host, err)
	}
	return inv, nil
}

func (c *Client) inventory(ctx context.Context) (*Inventory, error) {
	specs := inventorySpecs()
	kinds := make([]string, len(specs))
	for i, s := range specs {
		kinds[i] = s.Type
	}
	v, err := view.NewManager(c.vim).CreateContainerView(ctx, c.vim.ServiceContent.RootFolder, kinds, true)
	if err != nil {
		return nil, fmt.Errorf("create container view: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), viewCleanupTimeout)
		defer cancel()
		if err := v.Destroy(ctx); err != nil {
			// The view dies with the session anyway.
			c.log.Debug("destroy container view", "view", v.Reference().Value, "err", err)
		}
	}()

	req := types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{{
		ObjectSet: []types.ObjectSpec{{
			Obj:  v.Reference(),
			Skip: types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{
				&types.TraversalSpec{Type: "ContainerView", Path: "view"},
			},
		}},
		PropSet: specs,
	}}}
	res, err := property.DefaultCollector(c.vim).RetrieveProperties(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("retrieve properties: %w", err)
	}
	objects := make([]retrieved, 0, len(res.Returnval))
	for _, oc := range res.Returnval {
		if len(oc.MissingSet) > 0 {
			// An object with an unreadable property is still listed, with
			// the field empty: leaving a VM out would silently leave it out
			// of backups.
			paths := make([]string, len(oc.MissingSet))
			for i, m := range oc.MissingSet {
				paths[i] = m.Path
			}
			c.log.Warn("vCenter did not return some properties", "object", oc.Obj.Value,
				"properties", paths, "fault", fmt.Sprintf("%T", oc.MissingSet[0].Fault.Fault))
		}
		o := retrieved{ref: oc.Obj, props: make(map[string]types.AnyType, len(oc.PropSet))}
		for _, p := range oc.PropSet {
			o.props[p.Name] = p.Val
		}
		objects = append(objects, o)
	}
	return buildInventory(c.vim.ServiceContent.RootFolder, objects), nil
}

// retrieved is the properties retrieved for one managed object.
type retrieved struct {
	ref   types.ManagedObjectReference
	props map[string]types.AnyType
}

func (o retrieved) str(name string) string {
	switch v := o.props[name].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		// Enumerations such as VirtualMachinePowerState are string types.
		return fmt.Sprint(v)
	}
}

func (o retrieved) boolean(name string) bool {
	switch v := o.props[name].(type) {
	case bool:
		return v
	case *bool:
		return v != nil && *v
	}
	return false
}

func (o retrieved) ref1(name string) (types.ManagedObjectReference, bool) {
	switch v := o.props[name].(type) {
	case types.ManagedObjectReference:
		return v, true
	case *types.ManagedObjectReference:
		if v != nil {
			return *v, true
		}
	}
	return types.ManagedObjectReference{}, false
}

func (o retrieved) refs(name string) []types.ManagedObjectReference {
	switch v := o.props[name].(type) {
	case types.ArrayOfManagedObjectReference:
		return v.ManagedObjectReference
	case []types.ManagedObjectReference:
		return v
	}
	return nil
}

func (o retrieved) strs(name string) []string {
	switch v := o.props[name].(type) {
	case types.ArrayOfString:
		return v.String
	case []string:
		return v
	}
	return nil
}

// buildInventory resolves parents, paths, clusters and datastore names in
// memory from the retrieved objects.
func buildInventory(root types.ManagedObjectReference, objects []retrieved) *Inventory {
	tree := newTree(root)
	byRef := make(map[types.ManagedObjectReference]retrieved, len(objects))
	for _, o := range objects {
		byRef[o.ref] = o
		parent, ok := o.ref1("parent")
		switch o.ref.Type {
		case "VirtualMachine":
			if !ok {
				// A VM in a vApp has a parentVApp instead of a parent.
				parent, ok = o.ref1("parentVApp")
			}
		case "VirtualApp":
			// A vApp's parent is a resource pool; in the VM and template
			// tree, where its path lives, it sits in parentFolder.
			parent, ok = o.ref1("parentFolder")
			if !ok {
				parent, ok = o.ref1("parentVApp")
			}
		}
		tree.add(o.ref, o.str("name"), parent, ok)
	}

	name := func(ref types.ManagedObjectReference) string {
		return unescapeName(byRef[ref].str("name"))
	}
	clusterOf := func(ref types.ManagedObjectReference) string {
		if p, ok := byRef[ref].ref1("parent"); ok && p.Type == "ClusterComputeResource" {
			return name(p)
		}
		return ""
	}
	names := func(refs []types.ManagedObjectReference) []string {
		out := make([]string, 0, len(refs))
		for _, r := range refs {
			out = append(out, name(r))
		}
		slices.Sort(out)
		return out
	}

	inv := new(Inventory)
	for _, o := range objects {
		switch o.ref.Type {
		case "VirtualMachine":
			host, _ := o.ref1("runtime.host")
			parent, _ := tree.parent(o.ref)
			guest := o.str("config.guestFullName")
			if guest == "" {
				guest = o.str("config.guestId")
			}
			vm := VM{
				MoRef:        o.ref.Value,
				Name:         unescapeName(o.str("name")),
				UUID:         o.str("config.uuid"),
				InstanceUUID: o.str("config.instanceUuid"),
				Folder:       tree.path(parent),
				Path:         tree.path(o.ref),
				Host:         host.Value,
				Datastores:   names(o.refs("datastore")),
				PowerState:   o.str("runtime.powerState"),
				GuestOS:      guest,
				CBT:          o.boolean("config.changeTrackingEnabled"),
				Template:     o.boolean("config.template"),
			}
			if host.Value != "" {
				vm.Cluster = clusterOf(host)
			}
			inv.VMs = append(inv.VMs, vm)
		case "Folder", "StoragePod":
			inv.Folders = append(inv.Folders, Folder{
				MoRef: o.ref.Value,
				Name:  unescapeName(o.str("name")),
				Path:  tree.path(o.ref),
				Kind:  folderKind(o),
			})
		case "ClusterComputeResource":
			hosts := make([]string, 0, len(o.refs("host")))
			for _, h := range o.refs("host") {
				hosts = append(hosts, h.Value)
			}
			slices.Sort(hosts)
			inv.Clusters = append(inv.Clusters, Cluster{
				MoRef: o.ref.Value,
				Name:  unescapeName(o.str("name")),
				Path:  tree.path(o.ref),
				Hosts: hosts,
			})
		case "HostSystem":
			inv.Hosts = append(inv.Hosts, Host{
				MoRef:           o.ref.Value,
				Name:            unescapeName(o.str("name")),
				Cluster:         clusterOf(o.ref),
				Datastores:      names(o.refs("datastore")),
				ConnectionState: o.str("runtime.connectionState"),
			})
		case "Datastore":
			ds := Datastore{MoRef: o.ref.Value, Name: unescapeName(o.str("name"))}
			var s *types.DatastoreSummary
			switch v := o.props["summary"].(type) {
			case types.DatastoreSummary:
				s = &v
			case *types.DatastoreSummary:
				s = v
			}
			if s != nil {
				ds.Type, ds.URL = s.Type, s.Url
				ds.Capacity, ds.Free = s.Capacity, s.FreeSpace
				ds.Accessible = s.Accessible
			}
			inv.Datastores = append(inv.Datastores, ds)
		case "Network", "DistributedVirtualPortgroup", "OpaqueNetwork":
			inv.Networks = append(inv.Networks, Network{
				MoRef: o.ref.Value,
				Name:  unescapeName(o.str("name")),
				Kind:  o.ref.Type,
			})
		}
	}

	slices.SortFunc(inv.VMs, func(a, b VM) int { return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.MoRef, b.MoRef)) })
	slices.SortFunc(inv.Folders, func(a, b Folder) int { return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.MoRef, b.MoRef)) })
	slices.SortFunc(inv.Clusters, func(a, b Cluster) int { return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.MoRef, b.MoRef)) })
	slices.SortFunc(inv.Hosts, func(a, b Host) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.MoRef, b.MoRef)) })
	slices.SortFunc(inv.Datastores, func(a, b Datastore) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.MoRef, b.MoRef)) })
	slices.SortFunc(inv.Networks, func(a, b Network) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.MoRef, b.MoRef)) })
	return inv
}

// folderKind names the tree a folder belongs to after what it may contain.
func folderKind(o retrieved) string {
	if o.ref.Type == "StoragePod" {
		return "datastore"
	}
	ct := o.strs("childType")
	switch {
	case slices.Contains(ct, "VirtualMachine"):
		return "vm"
	case slices.Contains(ct, "ComputeResource"):
		return "host"
	case slices.Contains(ct, "Datastore"):
		return "datastore"
	case slices.Contains(ct, "Network"):
		return "network"
	case slices.Contains(ct, "Datacenter"):
		return "datacenter"
	}
	return ""
}

// tree computes inventory paths from the parent chain.
type tree struct {
	root    types.ManagedObjectReference
	nodes   map[types.ManagedObjectReference]treeNode
	memo    map[types.ManagedObjectReference]string
	visited map[types.ManagedObjectReference]bool
}

type treeNode struct {
	name      string // as vCenter stores it, escaped
	parent    types.ManagedObjectReference
	hasParent bool
}

func newTree(root types.ManagedObjectReference) *tree {
	return &tree{
		root:    root,
		nodes:   make(map[types.ManagedObjectReference]treeNode),
		memo:    map[types.ManagedObjectReference]string{root: ""},
		visited: make(map[types.ManagedObjectReference]bool),
	}
}

func (t *tree) add(ref types.ManagedObjectReference, name string, parent types.ManagedObjectReference, hasParent bool) {
	t.nodes[ref] = treeNode{name: name, parent: parent, hasParent: hasParent}
}

func (t *tree) parent(ref types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	n, ok := t.nodes[ref]
	return n.parent, ok && n.hasParent
}

// path returns ref's inventory path, "/" for the root folder and "" when the
// chain to the root is broken (a parent the session cannot see).
func (t *tree) path(ref types.ManagedObjectReference) string {
	if ref == t.root {
		return "/"
	}
	return t.walk(ref)
}

func (t *tree) walk(ref types.ManagedObjectReference) string {
	if p, ok := t.memo[ref]; ok {
		return p
	}
	n, ok := t.nodes[ref]
	if !ok || !n.hasParent || t.visited[ref] {
		return "" // unknown, detached, or a cycle
	}
	t.visited[ref] = true
	p := ""
	if parent := t.walk(n.parent); parent != "" || n.parent == t.root {
		p = parent + "/" + n.name
	}
	t.memo[ref] = p
	return p
}

// unescapeName undoes vCenter's escaping of "/", "\" and "%" in entity names.
func unescapeName(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%2f", "/", "%2F", "/", "%5c", `\`, "%5C", `\`, "%25", "%").Replace(s)
}

// FindVM finds a VM or template by moref ("vm-42" or
// "VirtualMachine:vm-42"), by inventory path
// ("/DC0/vm/prod/web01") or by name. A moref wins over a VM that happens to
// be named like one.
func (c *Client) FindVM(ctx context.Context, nameOrRef string) (*VM, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	return inv.FindVM(nameOrRef, c.url.Host)
}

// FindVM is Client.FindVM on an inventory already read; vcenter names the
// vCenter in errors.
func (inv *Inventory) FindVM(nameOrRef, vcenter string) (*VM, error) {
	// govc and PowerCLI print morefs as Type:value.
	ref := strings.TrimPrefix(nameOrRef, "VirtualMachine:")
	for i := range inv.VMs {
		if inv.VMs[i].MoRef == ref {
			return &inv.VMs[i], nil
		}
	}
	var matches []*VM
	for i := range inv.VMs {
		vm := &inv.VMs[i]
		if vm.Name == nameOrRef || (strings.HasPrefix(nameOrRef, "/") && vm.Path == nameOrRef) {
			matches = append(matches, vm)
		}
	}
	switch len(matches) {
	case 0:
		return nil, &VMNotFoundError{Query: nameOrRef, VCenter: vcenter}
	case 1:
		return matches[0], nil
	}
	err := &AmbiguousVMError{Name: nameOrRef}
	for _, vm := range matches {
		err.MoRefs = append(err.MoRefs, vm.MoRef)
		err.Paths = append(err.Paths, vm.Path)
	}
	return nil, err
}

// VMNotFoundError says that no VM has the moref, path or name asked for.
type VMNotFoundError struct {
	Query   string
	VCenter string
}

func (e *VMNotFoundError) Error() string {
	return fmt.Sprintf("no VM or template with moref, path or name %q on vCenter %s", e.Query, e.VCenter)
}

// AmbiguousVMError says that several VMs have the name asked for; MoRefs
// and Paths list them, in the same order.
type AmbiguousVMError struct {
	Name   string
	MoRefs []string
	Paths  []string
}

func (e *AmbiguousVMError) Error() string {
	list := make([]string, len(e.MoRefs))
	for i := range e.MoRefs {
		list[i] = fmt.Sprintf("%s (%s)", e.MoRefs[i], e.Paths[i])
	}
	return fmt.Sprintf("%d VMs are named %q: %s; name one by moref", len(e.MoRefs), e.Name, strings.Join(list, ", "))
}
