package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Device is the block device of a disk hot-added to the appliance VM.
type Device interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
}

// DeviceResolver finds the block device that a disk hot-added to the
// appliance VM appears as, and opens it, for writing if asked. On a real
// appliance that is a /dev/sdX found by the disk's UUID; the lab maps the
// disk to its file.
type DeviceResolver func(ctx context.Context, attached *types.VirtualDisk, writable bool) (Device, error)

// HotAddTransport attaches a snapshot's disk to the VM the appliance runs
// in, read-only (independent non-persistent), and reads the block device:
// the data never crosses the network.
type HotAddTransport struct {
	c         *Client
	appliance types.ManagedObjectReference
	resolve   DeviceResolver
}

// HotAdd returns the hot-add transport for an appliance VM.
func (c *Client) HotAdd(appliance types.ManagedObjectReference, resolve DeviceResolver) *HotAddTransport {
	return &HotAddTransport{c: c, appliance: appliance, resolve: resolve}
}

// Name implements Transport.
func (t *HotAddTransport) Name() string { return "hotadd" }

// Open implements Transport: it attaches the disk and opens its device.
func (t *HotAddTransport) Open(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk) (DiskReader, error) {
	return t.attach(ctx, vm, disk, false)
}

// OpenWritable attaches a powered-off VM's disk to the appliance VM, as it
// is (persistent), and opens its device for writing: a restore over the
// original writes the differing blocks through it.
func (t *HotAddTransport) OpenWritable(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk) (Device, error) {
	return t.attach(ctx, vm, disk, true)
}

func (t *HotAddTransport) attach(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk, writable bool) (*hotAddDisk, error) {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, fmt.Errorf("disk %d: a %T backing cannot be hot-added", disk.Key, disk.Backing)
	}
	// A snapshot's disk is attached so that nothing it does persists; a
	// disk to restore into, so that everything does.
	mode := types.VirtualDiskModeIndependent_nonpersistent
	if writable {
		mode = types.VirtualDiskModeIndependent_persistent
	}
	appliance := object.NewVirtualMachine(t.c.vim, t.appliance)
	devices, err := appliance.Device(ctx)
	if err != nil {
		return nil, fmt.Errorf("hot-add: devices of the appliance VM: %w", err)
	}
	ctrl, err := devices.FindDiskController("scsi")
	if err != nil {
		return nil, fmt.Errorf("hot-add: the appliance VM needs a SCSI controller: %w", err)
	}
	add := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{Backing: &types.VirtualDiskFlatVer2BackingInfo{
			VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: b.FileName},
			DiskMode:                     string(mode),
		}},
		CapacityInBytes: disk.CapacityInBytes, CapacityInKB: disk.CapacityInKB,
	}
	devices.AssignController(add, ctrl)
	add.Key = devices.NewKey()
	// No file operation: the disk exists, and attaching must not create it.
	spec := types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: add}}}
	t2, err := appliance.Reconfigure(ctx, spec)
	if err == nil {
		err = t2.Wait(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("hot-add %s to the appliance VM: %s", b.FileName, faultText(err))
	}
	after, err := appliance.Device(ctx)
	var attached *types.VirtualDisk
	if err == nil {
		for _, d := range after.SelectByType((*types.VirtualDisk)(nil)) {
			vd := d.(*types.VirtualDisk)
			if ab, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && ab.FileName == b.FileName {
				attached = vd
			}
		}
		if attached == nil {
			err = errors.New("the attached disk is not among the appliance VM's devices")
		}
	}
	r := &hotAddDisk{t: t, vm: appliance, attached: attached, size: disk.CapacityInBytes}
	if err == nil {
		r.Device, err = t.resolve(ctx, attached, writable)
	}
	if err != nil {
		err = fmt.Errorf("hot-add %s: %w", b.FileName, err)
		if attached != nil {
			err = errors.Join(err, r.detach(ctx))
		}
		return nil, err
	}
	t.c.log.Debug("hot-added", "disk", b.FileName, "vm", vm.Name)
	return r, nil
}

type hotAddDisk struct {
	Device
	t             *HotAddTransport
	vm            *object.VirtualMachine
	attached      *types.VirtualDisk
	size          int64
	read, written atomic.Int64
}

// ReadAt counts what it reads.
func (r *hotAddDisk) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.Device.ReadAt(p, off)
	r.read.Add(int64(n))
	return n, err
}

// WriteAt counts what it writes.
func (r *hotAddDisk) WriteAt(p []byte, off int64) (int, error) {
	n, err := r.Device.WriteAt(p, off)
	r.written.Add(int64(n))
	return n, err
}

func (r *hotAddDisk) BytesRead() int64 { return r.read.Load() }

// BytesWritten counts the bytes written to the device.
func (r *hotAddDisk) BytesWritten() int64 { return r.written.Load() }

// Close closes the device and detaches the disk, keeping its file.
func (r *hotAddDisk) Close() error {
	err := r.Device.Close()
	return errors.Join(err, r.detach(context.Background()))
}

func (r *hotAddDisk) detach(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	if err := r.vm.RemoveDevice(ctx, true, r.attached); err != nil {
		return fmt.Errorf("detach hot-added disk: %s", faultText(err))
	}
	return nil
}
