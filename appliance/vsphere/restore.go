package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/restore"
)

// RestoreTarget is a vCenter as restore.Hypervisor: VMs created from a
// point's configuration, disks uploaded over the datastore HTTP interface
// or written through hot-add.
type RestoreTarget struct {
	c *Client
	// hotAdd writes disks in place; nil when the appliance is not a VM.
	hotAdd *HotAddTransport
}

var _ restore.Hypervisor = (*RestoreTarget)(nil)

// RestoreTarget returns the vCenter as a restore target. hotAdd may be nil;
// then disks can only be uploaded whole, and restores over the original
// VM, which write in place, are refused.
func (c *Client) RestoreTarget(hotAdd *HotAddTransport) *RestoreTarget {
	return &RestoreTarget{c: c, hotAdd: hotAdd}
}

// FindVM finds a VM by instance UUID, moref or name.
func (t *RestoreTarget) FindVM(ctx context.Context, ref string) (restore.VM, error) {
	si := object.NewSearchIndex(t.c.vim)
	if found, err := si.FindByUuid(ctx, nil, ref, true, types.NewBool(true)); err == nil && found != nil {
		return t.openVM(ctx, found.Reference())
	}
	vm, err := t.c.FindVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	return t.openVM(ctx, types.ManagedObjectReference{Type: "VirtualMachine", Value: vm.MoRef})
}

func (t *RestoreTarget) openVM(ctx context.Context, ref types.ManagedObjectReference) (*restoreVM, error) {
	props, err := t.c.vmProps(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &restoreVM{t: t, props: props, obj: object.NewVirtualMachine(t.c.vim, ref)}, nil
}

// CreateVM makes a VM from a point's configuration: its guest OS, CPUs,
// memory, firmware and hardware version, its disk controllers, new thin
// disks of the given capacities, and its NICs on the mapped networks with
// new MAC addresses. Other devices (CD-ROMs, serial ports, USB) are left
// out: vSphere adds the defaults a VM needs.
func (t *RestoreTarget) CreateVM(ctx context.Context, config json.RawMessage, capacities []int64, spec restore.NewVM) (restore.VM, error) {
	var info types.VirtualMachineConfigInfo
	if err := types.NewJSONDecoder(bytes.NewReader(config)).Decode(&info); err != nil {
		return nil, fmt.Errorf("the point's VM configuration: %w", err)
	}
	if spec.Name == "" {
		return nil, errors.New("the new VM needs a name")
	}
	p, err := t.place(ctx, &info, spec)
	if err != nil {
		return nil, err
	}
	changes, err := t.devices(ctx, &info, capacities, spec, p)
	if err != nil {
		return nil, err
	}
	cs := types.VirtualMachineConfigSpec{
		Name: spec.Name, GuestId: info.GuestId, NumCPUs: info.Hardware.NumCPU, MemoryMB: int64(info.Hardware.MemoryMB),
		NumCoresPerSocket: info.Hardware.NumCoresPerSocket, Firmware: info.Firmware, Version: info.Version, DeviceChange: changes,
		// Until the restore marks it done, the VM says what it is, so that
		// one left by a restore that was killed can be told apart.
		Annotation: fmt.Sprintf("Bulwark restore IN PROGRESS since %s (a backup of %s). If no restore is running, this VM is incomplete: delete it.",
			time.Now().UTC().Format(time.RFC3339), info.Name),
		Files: &types.VirtualMachineFileInfo{VmPathName: "[" + p.dsName + "]"},
	}
	task, err := p.folder.CreateVM(ctx, cs, p.pool, p.host)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %w", spec.Name, err)
	}
	res, err := task.WaitForResult(ctx)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %s", spec.Name, faultText(err))
	}
	vm, err := t.openVM(ctx, res.Result.(types.ManagedObjectReference))
	if err != nil {
		return nil, err
	}
	if got := len(vm.disks()); got != len(capacities) {
		return vm, fmt.Errorf("created VM %s has %d disks, not %d", spec.Name, got, len(capacities))
	}
	t.c.log.Info("created VM for a restore", "vm", spec.Name, "moref", vm.Ref(), "datastore", p.dsName)
	return vm, nil
}

// placement is where a new VM goes.
type placement struct {
	finder *find.Finder
	folder *object.Folder
	pool   *object.ResourcePool
	host   *object.HostSystem // nil: vSphere chooses within the pool's cluster
	ds     *object.Datastore
	dsName string
}

// place resolves where a new VM goes: what the operator named, else where
// the original VM is, if it still exists, else the datacenter's defaults.
func (t *RestoreTarget) place(ctx context.Context, info *types.VirtualMachineConfigInfo, spec restore.NewVM) (*placement, error) {
	f := find.NewFinder(t.c.vim, false)
	if dc, err := f.DefaultDatacenter(ctx); err == nil {
		f.SetDatacenter(dc)
	}
	p := &placement{finder: f}
	var orig *mo.VirtualMachine
	if found, err := object.NewSearchIndex(t.c.vim).FindByUuid(ctx, nil, info.InstanceUuid, true, types.NewBool(true)); err == nil && found != nil {
		var vm mo.VirtualMachine
		if err := property.DefaultCollector(t.c.vim).RetrieveOne(ctx, found.Reference(), []string{"parent", "resourcePool", "runtime.host", "datastore"}, &vm); err == nil {
			orig = &vm
		}
	}
	var err error
	switch {
	case spec.Folder != "":
		if p.folder, err = f.Folder(ctx, spec.Folder); err != nil {
			return nil, fmt.Errorf("folder %q: %w", spec.Folder, err)
		}
	case orig != nil && orig.Parent != nil && orig.Parent.Type == "Folder":
		p.folder = object.NewFolder(t.c.vim, *orig.Parent)
	default:
		if p.folder, err = f.DefaultFolder(ctx); err != nil {
			return nil, fmt.Errorf("VM folder: %w (name one)", err)
		}
	}
	if spec.Host != "" {
		if p.host, err = f.HostSystem(ctx, spec.Host); err == nil {
			p.pool, err = p.host.ResourcePool(ctx)
		} else if cluster, cerr := f.ClusterComputeResource(ctx, spec.Host); cerr == nil {
			p.pool, err = cluster.ResourcePool(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("host or cluster %q: %w", spec.Host, err)
		}
	}
	if spec.Pool != "" {
		if p.pool, err = f.ResourcePool(ctx, spec.Pool); err != nil {
			return nil, fmt.Errorf("resource pool %q: %w", spec.Pool, err)
		}
	}
	if p.pool == nil && orig != nil && orig.ResourcePool != nil {
		p.pool = object.NewResourcePool(t.c.vim, *orig.ResourcePool)
		if orig.Runtime.Host != nil {
			p.host = object.NewHostSystem(t.c.vim, *orig.Runtime.Host)
		}
	}
	if p.pool == nil {
		if p.pool, err = f.DefaultResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool: %w (name a host, cluster or pool)", err)
		}
	}
	ds := spec.Datastore
	if ds == "" {
		ds = firstDiskDatastore(info)
	}
	if ds == "" {
		return nil, errors.New("the point names no datastore: name one")
	}
	if p.ds, err = f.Datastore(ctx, ds); err != nil {
		return nil, fmt.Errorf("datastore %q: %w", ds, err)
	}
	if p.dsName, err = p.ds.ObjectName(ctx); err != nil {
		return nil, fmt.Errorf("datastore %q: %w", ds, err)
	}
	return p, nil
}

// firstDiskDatastore is the datastore the configuration's first disk was on.
func firstDiskDatastore(info *types.VirtualMachineConfigInfo) string {
	for _, d := range sortedDisks(info.Hardware.Device) {
		if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			var p object.DatastorePath
			if p.FromString(b.GetVirtualDeviceFileBackingInfo().FileName) {
				return p.Datastore
			}
		}
	}
	return ""
}

// devices turns the point's devices into the new VM's device changes.
func (t *RestoreTarget) devices(ctx context.Context, info *types.VirtualMachineConfigInfo, capacities []int64, spec restore.NewVM, p *placement) ([]types.BaseVirtualDeviceConfigSpec, error) {
	var changes []types.BaseVirtualDeviceConfigSpec
	add := func(d types.BaseVirtualDevice, create bool) {
		s := &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d}
		if create {
			s.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
		changes = append(changes, s)
	}
	key := int32(-100)
	newKey := func() int32 { key--; return key }
	controllers := map[int32]int32{} // the point's controller keys -> the new ones
	all := append([]types.BaseVirtualDevice(nil), info.Hardware.Device...)
	sort.Slice(all, func(i, j int) bool { return all[i].GetVirtualDevice().Key < all[j].GetVirtualDevice().Key })
	var skipped []string
	for _, dev := range all {
		switch d := dev.(type) {
		case types.BaseVirtualSCSIController, *types.VirtualAHCIController, *types.VirtualNVMEController:
			c := dev.(types.BaseVirtualController).GetVirtualController()
			old := c.Key
			c.Key, c.Device, c.DeviceInfo, c.SlotInfo = newKey(), nil, nil, nil
			controllers[old] = c.Key
			add(dev, false)
		case *types.VirtualDisk:
		case types.BaseVirtualEthernetCard:
			card := d.GetVirtualEthernetCard()
			backing, err := t.network(ctx, p.finder, card.Backing, spec.Networks)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", deviceName(dev), err)
			}
			card.Key, card.Backing, card.DeviceInfo, card.SlotInfo = newKey(), backing, nil, nil
			card.MacAddress, card.AddressType, card.ExternalId = "", string(types.VirtualEthernetCardMacTypeGenerated), ""
			card.Connectable = &types.VirtualDeviceConnectInfo{StartConnected: !spec.DisconnectNICs, AllowGuestControl: true}
			add(dev, false)
		case types.BaseVirtualController: // IDE, PCI, PS/2, SIO: every VM has its own
		default:
			skipped = append(skipped, deviceName(dev))
		}
	}
	if len(skipped) > 0 {
		t.c.log.Info("devices not restored", "devices", skipped)
	}
	disks := sortedDisks(info.Hardware.Device)
	if len(disks) != len(capacities) {
		return nil, fmt.Errorf("the configuration has %d disks, the point %d", len(disks), len(capacities))
	}
	for i, d := range disks {
		ctrl, ok := controllers[d.ControllerKey]
		if !ok {
			ctrl = d.ControllerKey // an IDE controller, which the new VM has too
		}
		file := fmt.Sprintf("[%s] %s/%s.vmdk", p.dsName, spec.Name, spec.Name)
		if i > 0 {
			file = fmt.Sprintf("[%s] %s/%s_%d.vmdk", p.dsName, spec.Name, spec.Name, i)
		}
		ds := p.ds.Reference()
		add(&types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{Key: newKey(), ControllerKey: ctrl, UnitNumber: d.UnitNumber,
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file, Datastore: &ds},
					DiskMode:                     string(types.VirtualDiskModePersistent),
					ThinProvisioned:              types.NewBool(true),
				}},
			CapacityInBytes: capacities[i], CapacityInKB: capacities[i] / 1024,
		}, true)
	}
	return changes, nil
}

// network maps a NIC's network in the point to a network of the target.
func (t *RestoreTarget) network(ctx context.Context, f *find.Finder, backing types.BaseVirtualDeviceBackingInfo, mapping map[string]string) (types.BaseVirtualDeviceBackingInfo, error) {
	var name string
	switch b := backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		name = b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		name = b.Port.PortgroupKey
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		name = b.OpaqueNetworkId
	default:
		return nil, fmt.Errorf("a %T network backing cannot be mapped", backing)
	}
	if to, ok := mapping[name]; ok {
		name = to
	}
	n, err := f.Network(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w (map it to one of the target's)", name, err)
	}
	return n.EthernetCardBackingInfo(ctx)
}

func deviceName(d types.BaseVirtualDevice) string {
	if info := d.GetVirtualDevice().DeviceInfo; info != nil {
		if di := info.GetDescription(); di != nil && di.Label != "" {
			return di.Label
		}
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", d), "*types.")
}

// sortedDisks lists the disks of a device list by key: the order that
// numbers them in points.
func sortedDisks(devices []types.BaseVirtualDevice) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(devices).SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Key < disks[j].Key })
	return disks
}

// restoreVM is a VM of the target, as restore.VM.
type restoreVM struct {
	t     *RestoreTarget
	props *mo.VirtualMachine
	obj   *object.VirtualMachine
}

func (v *restoreVM) Name() string { return v.props.Name }
func (v *restoreVM) Ref() string  { return v.props.Self.Value }

func (v *restoreVM) disks() []*types.VirtualDisk { return sortedDisks(v.props.Config.Hardware.Device) }

func (v *restoreVM) Disks() []int64 {
	var out []int64
	for _, d := range v.disks() {
		out = append(out, d.CapacityInBytes)
	}
	return out
}

func (v *restoreVM) disk(i int) (*types.VirtualDisk, error) {
	disks := v.disks()
	if i < 0 || i >= len(disks) {
		return nil, fmt.Errorf("VM %s has no disk %d", v.Name(), i)
	}
	return disks[i], nil
}

// Annotate sets the VM's notes.
func (v *restoreVM) Annotate(ctx context.Context, note string) error {
	task, err := v.obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{Annotation: note})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("annotate %s: %s", v.Name(), faultText(err))
	}
	return nil
}

// AddDisk adds a thin disk on the VM's first SCSI controller, named after
// the VM, and reloads the VM's configuration to find it.
func (v *restoreVM) AddDisk(ctx context.Context, capacity int64, datastore string) (int, error) {
	devices := object.VirtualDeviceList(v.props.Config.Hardware.Device)
	ctrl, err := devices.FindDiskController("scsi")
	if err != nil {
		return 0, fmt.Errorf("add a disk to %s: %w", v.Name(), err)
	}
	f := find.NewFinder(v.t.c.vim, false)
	if dc, err := f.DefaultDatacenter(ctx); err == nil {
		f.SetDatacenter(dc)
	}
	if datastore == "" {
		if datastore = firstDiskDatastore(v.props.Config); datastore == "" {
			return 0, fmt.Errorf("%s has no disk to take the datastore from: name one", v.Name())
		}
	}
	ds, err := f.Datastore(ctx, datastore)
	if err != nil {
		return 0, fmt.Errorf("datastore %q: %w", datastore, err)
	}
	dsName, err := ds.ObjectName(ctx)
	if err != nil {
		return 0, err
	}
	file := fmt.Sprintf("[%s] %s/%s_restored_%s.vmdk", dsName, v.Name(), v.Name(), time.Now().UTC().Format("20060102-150405.000000000"))
	disk := devices.CreateDisk(ctrl, ds.Reference(), file)
	disk.CapacityInBytes, disk.CapacityInKB = capacity, capacity/1024
	disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ThinProvisioned = types.NewBool(true)
	spec := types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{
		Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: disk}}}
	task, err := v.obj.Reconfigure(ctx, spec)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("add a disk to %s: %s", v.Name(), faultText(err))
	}
	if v.props, err = v.t.c.vmProps(ctx, v.props.Self); err != nil {
		return 0, err
	}
	for i, d := range v.disks() {
		if b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.FileName == file {
			return i, nil
		}
	}
	return 0, fmt.Errorf("the disk added to %s is not among its disks", v.Name())
}

func (v *restoreVM) PoweredOff(ctx context.Context) (bool, error) {
	state, err := v.obj.PowerState(ctx)
	if err != nil {
		return false, fmt.Errorf("power state of %s: %w", v.Name(), err)
	}
	return state == types.VirtualMachinePowerStatePoweredOff, nil
}

// ChangedAreas asks CBT about the VM's current state, which vSphere allows
// without a snapshot only while the VM is powered off.
func (v *restoreVM) ChangedAreas(ctx context.Context, i int, changeID string) ([]diskmap.Area, error) {
	d, err := v.disk(i)
	if err != nil {
		return nil, err
	}
	if cbt := v.props.Config.ChangeTrackingEnabled; cbt == nil || !*cbt {
		return nil, errors.New("changed block tracking is off")
	}
	return v.t.c.changedAreas(ctx, v.props.Self, nil, d, changeID)
}

// Upload writes a whole disk's flat extent over the datastore HTTP
// interface of the VM's host. ESXi's /folder takes whole files only, so the
// zero areas travel too; hot-add writes only what holds data.
func (v *restoreVM) Upload(ctx context.Context, i int, r io.Reader, size int64, progress func(int64)) error {
	d, err := v.disk(i)
	if err != nil {
		return err
	}
	base, err := v.t.c.flatURL(ctx, v.props, d)
	if err != nil {
		return err
	}
	if err := v.t.c.upload(ctx, base, r, size, progress); err != nil {
		return fmt.Errorf("upload disk %d of %s: %w", i, v.Name(), err)
	}
	return nil
}

// upload PUTs a file to a host's /folder under a service ticket.
func (c *Client) upload(ctx context.Context, base string, r io.Reader, size int64, progress func(int64)) error {
	u, cookie, err := c.serviceTicket(ctx, base, types.SessionManagerHttpServiceRequestSpecMethodHttpPut)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), &countingReader{r: r, progress: progress})
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.AddCookie(cookie)
	return c.vim.Do(ctx, req, func(res *http.Response) error {
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
			msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			return fmt.Errorf("PUT %s: %s: %s", base, res.Status, bytes.TrimSpace(msg))
		}
		return nil
	})
}

// CreateDisk creates a thin virtual disk file on a datastore, for a single
// disk restored to no VM.
func (t *RestoreTarget) CreateDisk(ctx context.Context, dsPath string, capacity int64) (restore.DiskFile, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || !strings.HasSuffix(p.Path, ".vmdk") || p.Path == ".vmdk" {
		return nil, fmt.Errorf("disk path %q: want [datastore] folder/name.vmdk", dsPath)
	}
	f := find.NewFinder(t.c.vim, false)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("datacenter: %w", err)
	}
	f.SetDatacenter(dc)
	ds, err := f.Datastore(ctx, p.Datastore)
	if err != nil {
		return nil, fmt.Errorf("datastore %q: %w", p.Datastore, err)
	}
	hosts, err := ds.AttachedHosts(ctx)
	if err != nil || len(hosts) == 0 {
		return nil, fmt.Errorf("datastore %q: no host mounts it (%v)", p.Datastore, err)
	}
	spec := &types.FileBackedVirtualDiskSpec{CapacityKb: capacity / 1024, VirtualDiskSpec: types.VirtualDiskSpec{
		DiskType: string(types.VirtualDiskTypeThin), AdapterType: string(types.VirtualDiskAdapterTypeLsiLogic)}}
	if dir := path.Dir(p.Path); dir != "." {
		err := object.NewFileManager(t.c.vim).MakeDirectory(ctx, "["+p.Datastore+"] "+dir, dc, true)
		if err != nil && !fault.Is(err, &types.FileAlreadyExists{}) {
			return nil, fmt.Errorf("create folder %s on %s: %s", dir, p.Datastore, faultText(err))
		}
	}
	task, err := object.NewVirtualDiskManager(t.c.vim).CreateVirtualDisk(ctx, dsPath, dc, spec)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("create disk %s: %s", dsPath, faultText(err))
	}
	addr, err := hostAddress(ctx, hosts[0])
	if err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: "https", Host: addr, Path: "/folder/" + strings.TrimSuffix(p.Path, ".vmdk") + "-flat.vmdk",
		RawQuery: url.Values{"dsName": {p.Datastore}}.Encode()}
	return &datastoreDisk{c: t.c, path: dsPath, url: u.String()}, nil
}

// datastoreDisk is a disk file on a datastore, attached to no VM.
type datastoreDisk struct {
	c         *Client
	path, url string
}

func (d *datastoreDisk) Path() string { return d.path }

func (d *datastoreDisk) Upload(ctx context.Context, r io.Reader, size int64, progress func(int64)) error {
	if err := d.c.upload(ctx, d.url, r, size, progress); err != nil {
		return fmt.Errorf("upload %s: %w", d.path, err)
	}
	return nil
}

type countingReader struct {
	r        io.Reader
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}

// OpenDisk hot-adds the disk to the appliance VM for writing.
func (v *restoreVM) OpenDisk(ctx context.Context, i int) (restore.Disk, error) {
	if v.t.hotAdd == nil {
		return nil, errors.New("writing a disk in place needs the hot-add transport: run the appliance as a VM and name it (runner.appliance_vm)")
	}
	d, err := v.disk(i)
	if err != nil {
		return nil, err
	}
	return v.t.hotAdd.OpenWritable(ctx, v.props, d)
}

// SetChangeTracking turns CBT off or on; on a powered-off VM that takes
// effect at once.
func (v *restoreVM) SetChangeTracking(ctx context.Context, on bool) error {
	task, err := v.obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(on)})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("turn changed block tracking of %s %s: %s", v.Name(), map[bool]string{false: "off", true: "on"}[on], faultText(err))
	}
	return nil
}

func (v *restoreVM) PowerOn(ctx context.Context) error {
	return v.wait(ctx, "power on", v.obj.PowerOn)
}

func (v *restoreVM) PowerOff(ctx context.Context) error {
	return v.wait(ctx, "power off", v.obj.PowerOff)
}

func (v *restoreVM) Destroy(ctx context.Context) error {
	return v.wait(ctx, "destroy", v.obj.Destroy)
}

func (v *restoreVM) wait(ctx context.Context, what string, start func(context.Context) (*object.Task, error)) error {
	task, err := start(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %s", what, v.Name(), faultText(err))
	}
	return nil
}

// WaitGuest waits until the guest's Tools send heartbeats (green).
func (v *restoreVM) WaitGuest(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var vm mo.VirtualMachine
		if err := property.DefaultCollector(v.t.c.vim).RetrieveOne(ctx, v.props.Self, []string{"guestHeartbeatStatus"}, &vm); err != nil {
			return fmt.Errorf("heartbeat of %s: %w", v.Name(), err)
		}
		if vm.GuestHeartbeatStatus == types.ManagedEntityStatusGreen {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no Tools heartbeat from %s (status %s): %w", v.Name(), vm.GuestHeartbeatStatus, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
