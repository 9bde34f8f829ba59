package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// placement is where a new VM goes.
type placement struct {
	folder *object.Folder
	pool   *object.ResourcePool
	host   *object.HostSystem
	ds     *object.Datastore
}

// populate creates the lab's VMs through the simulator's own API, as an
// administrator would, and then gives their disks contents.
func (l *Lab) populate(ctx context.Context, c *govmomi.Client) error {
	for _, obj := range l.model.Map().All("Datastore") {
		ds := obj.(*simulator.Datastore)
		l.datastores[ds.Name] = ds.Summary.Url
	}
	f := find.NewFinder(c.Client)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return fmt.Errorf("lab: datacenter: %w", err)
	}
	f.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return fmt.Errorf("lab: folders: %w", err)
	}
	var vmFolders []*object.Folder
	for _, name := range []string{"prod", "test"} {
		sub, err := folders.VmFolder.CreateFolder(ctx, name)
		if err != nil {
			return fmt.Errorf("lab: create folder %s: %w", name, err)
		}
		vmFolders = append(vmFolders, sub)
	}
	clusterHosts, err := f.HostSystemList(ctx, "/DC0/host/DC0_C0/*")
	if err != nil {
		return fmt.Errorf("lab: cluster hosts: %w", err)
	}
	clusterPool, err := f.ResourcePool(ctx, "/DC0/host/DC0_C0/Resources")
	if err != nil {
		return fmt.Errorf("lab: cluster pool: %w", err)
	}
	standalone, err := f.HostSystem(ctx, "/DC0/host/DC0_H0/DC0_H0")
	if err != nil {
		return fmt.Errorf("lab: standalone host: %w", err)
	}
	standalonePool, err := standalone.ResourcePool(ctx)
	if err != nil {
		return fmt.Errorf("lab: standalone host's pool: %w", err)
	}
	dss, err := f.DatastoreList(ctx, "*")
	if err != nil {
		return fmt.Errorf("lab: datastores: %w", err)
	}
	network, err := f.Network(ctx, "VM Network")
	if err != nil {
		return fmt.Errorf("lab: network: %w", err)
	}

	var made []*vm
	for i := range l.opts.VMs {
		p := placement{folder: vmFolders[i%2], pool: clusterPool, host: clusterHosts[i%len(clusterHosts)], ds: dss[i%len(dss)]}
		if i%4 == 3 {
			p.pool, p.host = standalonePool, standalone
		}
		v, err := l.createVM(ctx, c, fmt.Sprintf("vm%02d", i+1), p, network, l.opts.Disks)
		if err != nil {
			return err
		}
		made = append(made, v)
	}
	if l.opts.ApplianceVM {
		p := placement{folder: folders.VmFolder, pool: clusterPool, host: clusterHosts[0], ds: dss[0]}
		if _, err := l.createVM(ctx, c, ApplianceVMName, p, network, 0); err != nil {
			return err
		}
	}

	// Making filesystems is the slow part: one per disk, on every core.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, v := range made {
		for j, key := range v.diskKeys() {
			d := v.disks[key]
			g.Go(func() error {
				gd, err := l.fill(gctx, d, fmt.Sprintf("%s-disk%d", v.name, j), int64(i*16+j+1))
				if err != nil {
					return fmt.Errorf("lab: contents of %s disk %d: %w", v.name, j, err)
				}
				l.mu.Lock()
				v.guest[key] = gd
				l.mu.Unlock()
				return nil
			})
		}
	}
	return g.Wait()
}

// createVM creates and powers on a VM with the given number of thin disks.
func (l *Lab) createVM(ctx context.Context, c *govmomi.Client, name string, p placement, network object.NetworkReference, disks int) (*vm, error) {
	dsName, err := p.ds.ObjectName(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: datastore name: %w", err)
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	devices = append(devices, scsi)
	for i := range disks {
		file := fmt.Sprintf("[%s] %s/%s.vmdk", dsName, name, name)
		if i > 0 {
			file = fmt.Sprintf("[%s] %s/%s_%d.vmdk", dsName, name, name, i)
		}
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), p.ds.Reference(), file)
		disk.CapacityInKB = l.opts.DiskSize / 1024
		disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ThinProvisioned = types.NewBool(true)
		devices = append(devices, disk)
	}
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: network: %w", name, err)
	}
	nic, err := object.EthernetCardTypes().CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	devices = append(devices, nic)
	changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	for _, ch := range changes {
		if s := ch.GetVirtualDeviceConfigSpec(); isDisk(s.Device) {
			s.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
	}
	spec := types.VirtualMachineConfigSpec{
		Name: name, GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		NumCPUs: 1, MemoryMB: 1024, DeviceChange: changes,
		Files: &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", dsName)},
	}
	task, err := p.folder.CreateVM(ctx, spec, p.pool, p.host)
	if err != nil {
		return nil, fmt.Errorf("lab: create %s: %w", name, err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: create %s: %w", name, err)
	}
	ref := info.Result.(types.ManagedObjectReference)
	t, err := object.NewVirtualMachine(c.Client, ref).PowerOn(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: power on %s: %w", name, err)
	}
	obj := l.model.Map().Get(ref).(*simulator.VirtualMachine)
	lock := &simulator.Context{Map: l.model.Map()}
	// vcsim's VMs run no Tools; the lab's guests do, so snapshots can quiesce.
	l.model.Map().WithLock(lock, obj, func() {
		obj.Guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		obj.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
		obj.Summary.Guest.ToolsRunningStatus = obj.Guest.ToolsRunningStatus
	})
	if name == ApplianceVMName {
		return nil, nil
	}

	l.mu.Lock()
	v := l.vms[ref.Value] // registered, with its disks, by the CreateVM hook
	l.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("lab: %s was created without its disks", name)
	}
	return v, nil
}

func isDisk(d types.BaseVirtualDevice) bool {
	_, ok := d.(*types.VirtualDisk)
	return ok
}

// fill makes a GPT disk with real filesystems and copies it into d, skipping
// what is zero so that the disk's allocated areas are the image's.
func (l *Lab) fill(ctx context.Context, d *disk, label string, seed int64) (*GuestDisk, error) {
	dir, err := os.MkdirTemp(l.opts.Dir, "guest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	gd, err := MakeGuestDisk(ctx, dir, GuestDiskSpec{Size: d.capacity, Label: label, Seed: seed, FileBytes: l.opts.FileBytes})
	if err != nil {
		return nil, err
	}
	f, err := os.Open(gd.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const block = 64 << 10
	buf := make([]byte, 1<<20)
	zero := make([]byte, block)
	for off := int64(0); off < gd.Size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("find data: %w", err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find hole: %w", err)
		}
		for pos := data; pos < hole; {
			n := min(int64(len(buf)), hole-pos)
			if _, err := io.ReadFull(io.NewSectionReader(f, pos, n), buf[:n]); err != nil {
				return nil, err
			}
			for b := int64(0); b < n; b += block {
				p := buf[b:min(b+block, n)]
				if bytes.Equal(p, zero[:len(p)]) {
					continue
				}
				if err := d.write(p, pos+b); err != nil {
					return nil, err
				}
			}
			pos += n
		}
		off = hole
	}
	gd.Path = ""
	return gd, nil
}
