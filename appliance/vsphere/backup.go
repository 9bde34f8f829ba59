package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/chunkstore"
)

// BackupOptions shape one VM's backup.
type BackupOptions struct {
	Job string
	// Owner names the appliance's snapshots, so that it removes only its
	// own leftovers; the store's ID by default.
	Owner string
	// Transport reads the disks; the datastore HTTP transport by default.
	Transport Transport
	// Progress, if set, is called as each disk is read.
	Progress func(disk int, done, total int64)
}

// BackupResult is what one VM's backup made.
type BackupResult struct {
	Point       *chunkstore.Point
	Consistency string
	// FullReads says which disks were read whole, and why.
	FullReads []string
	Warnings  []string
	// BytesTransferred is what the transport fetched from the datastores.
	BytesTransferred int64
}

// SourceOf identifies a VM in the store: by the vCenter's and the VM's
// instance UUIDs, which survive renames and moves, with its name and moref
// for people.
func SourceOf(vcenter string, vm *mo.VirtualMachine) chunkstore.Source {
	return chunkstore.Source{
		Name:    "vsphere/" + vcenter + "/" + vm.Config.InstanceUuid,
		VCenter: vcenter, VMUUID: vm.Config.InstanceUuid, MoRef: vm.Self.Value, VMName: vm.Name,
	}
}

// BackupVM backs up one VM: CBT on, a snapshot, the VM's configuration,
// then per disk the areas changed since the VM's last point in the store
// (the allocated areas the first time), and the snapshot removed whatever
// happens. A CBT answer that cannot be used means a full read of that
// disk, recorded in the point, never a failure.
func (c *Client) BackupVM(ctx context.Context, store *chunkstore.Store, ref types.ManagedObjectReference, o BackupOptions) (res *BackupResult, err error) {
	if o.Owner == "" {
		o.Owner = store.ID()
	}
	if o.Transport == nil {
		o.Transport = c.HTTP()
	}
	props, err := c.vmProps(ctx, ref)
	if err != nil {
		return nil, err
	}
	log := c.log.With("vm", props.Name)
	vm := object.NewVirtualMachine(c.vim, ref)
	res = &BackupResult{}
	if cbt := props.Config.ChangeTrackingEnabled; cbt == nil || !*cbt {
		// Normal for a VM's first backup, so no warning.
		log.Info("enabling changed block tracking")
		if err := c.enableCBT(ctx, vm); err != nil {
			return nil, err
		}
	}
	source := SourceOf(c.InstanceUUID(), props)
	parent, err := latestPoint(ctx, store, source)
	if err != nil {
		return nil, err
	}

	snap, consistency, warnings, err := c.createSnapshot(ctx, vm, props, snapshotName(o.Owner, o.Job, time.Now()))
	res.Warnings = append(res.Warnings, warnings...)
	if err != nil {
		return res, err
	}
	res.Consistency = consistency
	defer func() {
		if rerr := c.removeSnapshot(ctx, snap); rerr != nil {
			log.Error("snapshot left behind; the next start of the appliance removes it", "err", rerr)
			err = errors.Join(err, rerr)
		}
	}()

	var snapProps mo.VirtualMachineSnapshot
	if err := property.DefaultCollector(c.vim).RetrieveOne(ctx, snap, []string{"config"}, &snapProps); err != nil {
		return res, fmt.Errorf("read snapshot of %s: %w", props.Name, err)
	}
	var config bytes.Buffer
	if err := types.NewJSONEncoder(&config).Encode(snapProps.Config); err != nil {
		return res, fmt.Errorf("encode the configuration of %s: %w", props.Name, err)
	}
	opts := chunkstore.BackupOptions{Source: source, Job: o.Job, Consistency: consistency,
		VMConfig: json.RawMessage(bytes.TrimSpace(config.Bytes()))}
	if parent != nil {
		opts.Parent = &parent.ID
	}
	b, err := store.NewBackup(ctx, opts)
	if err != nil {
		return res, fmt.Errorf("back up %s: %w", props.Name, err)
	}
	defer b.Close()

	disks := snapshotDisks(&snapProps)
	for i, disk := range disks {
		if err := c.backupDisk(ctx, b, props, snap, parent, i, disk, o, res); err != nil {
			return res, fmt.Errorf("back up %s: %w", props.Name, err)
		}
	}
	if parent != nil && len(parent.Disks) > len(disks) {
		log.Info("disks removed since the last point", "before", len(parent.Disks), "now", len(disks))
	}
	p, err := b.Commit(ctx)
	if err != nil {
		return res, fmt.Errorf("back up %s: %w", props.Name, err)
	}
	res.Point = p
	for _, d := range p.Disks {
		if d.FullRead != "" {
			res.FullReads = append(res.FullReads, fmt.Sprintf("disk %d: %s", d.Index, d.FullRead))
		}
	}
	log.Info("backed up", "point", p.ID.Short(), "consistency", consistency, "read", res.BytesTransferred,
		"new", p.Stats.BytesNew, "full_reads", len(res.FullReads))
	return res, nil
}

// backupDisk reads one disk of the snapshot into the backup.
func (c *Client) backupDisk(ctx context.Context, b *chunkstore.Backup, vm *mo.VirtualMachine, snap types.ManagedObjectReference,
	parent *chunkstore.Point, index int, disk *types.VirtualDisk, o BackupOptions, res *BackupResult) error {
	backing, _ := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	spec := chunkstore.DiskSpec{Index: index, Label: diskLabel(disk), Size: disk.CapacityInBytes}
	if backing != nil {
		spec.ChangeID = backing.ChangeId
	}
	log := c.log.With("vm", vm.Name, "disk", index)

	allocated, err := c.changedAreas(ctx, vm.Self, &snap, disk, "*")
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("disk %d: %w", index, err) // cancelled: no fault of CBT's
	}
	if err != nil {
		log.Warn("no allocated areas: reading the whole disk", "err", err)
		allocated = nil
	}
	spec.Allocated = allocated
	var prev *chunkstore.Disk
	if parent != nil {
		prev, _ = parent.Disk(index)
	}
	switch {
	case prev == nil:
	case prev.Label != spec.Label:
		spec.FullRead = fmt.Sprintf("a different disk than in the parent (%s, was %s)", spec.Label, prev.Label)
	case prev.Capacity != disk.CapacityInBytes:
		// chunkstore reads a resized disk whole and says so.
	case spec.ChangeID == "" || prev.ChangeID == "":
		spec.FullRead = "no change ID to compare with"
	case changeUUID(spec.ChangeID) != changeUUID(prev.ChangeID):
		spec.FullRead = fmt.Sprintf("changed block tracking was reset (change ID %s, was %s)", spec.ChangeID, prev.ChangeID)
	default:
		changed, err := c.changedAreas(ctx, vm.Self, &snap, disk, prev.ChangeID)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("disk %d: %w", index, err)
		case err != nil:
			spec.FullRead = "changed block tracking failed: " + err.Error()
		default:
			spec.Changed = changed
		}
	}
	if spec.FullRead != "" {
		log.Warn("reading the whole disk", "why", spec.FullRead)
	}
	r, err := o.Transport.Open(ctx, vm, disk)
	if err != nil {
		return fmt.Errorf("disk %d: open over %s: %w", index, o.Transport.Name(), err)
	}
	defer func() {
		res.BytesTransferred += r.BytesRead()
		if cerr := r.Close(); cerr != nil {
			log.Error("close disk", "err", cerr)
		}
	}()
	spec.Reader = r
	if o.Progress != nil {
		spec.Progress = func(done, total int64) { o.Progress(index, done, total) }
	}
	if _, err := b.AddDisk(ctx, spec); err != nil {
		return err
	}
	return nil
}

// diskLabel names a disk so that a later backup can tell whether it is
// the same disk: its device key and its base file.
func diskLabel(disk *types.VirtualDisk) string {
	name := ""
	if fb, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		name = fb.GetVirtualDeviceFileBackingInfo().FileName
		if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
			for p := b; p != nil; p = p.Parent {
				name = p.FileName
			}
		}
	}
	return fmt.Sprintf("%d %s", disk.Key, name)
}

// snapshotDisks lists the snapshot's disks by device key, the order that
// numbers them in points.
func snapshotDisks(s *mo.VirtualMachineSnapshot) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(s.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Key < disks[j].Key })
	return disks
}

// latestPoint is the VM's newest point: the parent of its next backup.
func latestPoint(ctx context.Context, store *chunkstore.Store, source chunkstore.Source) (*chunkstore.Point, error) {
	points, err := store.Points(ctx)
	if err != nil {
		return nil, fmt.Errorf("points of %s: %w", source.VMName, err)
	}
	var latest *chunkstore.Point
	for _, p := range points {
		if p.Source.VCenter == source.VCenter && p.Source.VMUUID == source.VMUUID && (latest == nil || p.Time.After(latest.Time)) {
			latest = p
		}
	}
	return latest, nil
}
