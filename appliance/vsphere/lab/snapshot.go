package lab

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// createSnapshot runs inside the snapshot task, holding the VM's lock: it
// applies injected faults, freezes the disks, sets their change IDs in the
// configuration that vcsim copies into the snapshot, and lets vcsim make the
// snapshot object.
func (l *Lab) createSnapshot(ctx *simulator.Context, vm *simulator.VirtualMachine, req *types.CreateSnapshotEx_Task) (types.AnyType, types.BaseMethodFault) {
	if req.QuiesceSpec != nil {
		if vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
			return nil, &types.ToolsUnavailable{}
		}
		if l.faults.take(&l.faults.quiesce, vm.Name) {
			return nil, &types.ApplicationQuiesceFault{SnapshotFault: types.SnapshotFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
				FaultMessage: []types.LocalizableMessage{{Key: "lab.quiesce", Message: "lab: the guest failed to quiesce (injected)"}}}}}}
		}
	}
	if l.faults.take(&l.faults.snapshot, vm.Name) {
		return nil, &types.FileLocked{FileFault: types.FileFault{File: vm.Config.Files.VmPathName, VimFault: types.VimFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "lab.snapshot", Message: "lab: snapshot creation failed (injected)"}}}}}}
	}

	l.mu.Lock()
	lv := l.vms[vm.Self.Value]
	l.mu.Unlock()
	if lv == nil { // the appliance VM: no disks of the lab's
		return runInner(ctx, vm.CreateSnapshotExTask(ctx, req))
	}

	frozen := map[int32]int{} // disk key -> index of the layer frozen
	seq := map[int32]int{}
	var datastores []string
	for _, dev := range vm.Config.Hardware.Device {
		vd, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		d := lv.disks[vd.Key]
		b, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if d == nil || !ok {
			continue
		}
		base := d.layers[0].dsPath
		n := len(d.layers)
		dsPath := strings.TrimSuffix(base, ".vmdk") + fmt.Sprintf("-%06d.vmdk", n)
		file, err := l.datastorePath(strings.TrimSuffix(dsPath, ".vmdk") + "-delta.vmdk")
		if err != nil {
			return nil, &types.FileFault{File: dsPath}
		}
		changeID, err := d.freeze(dsPath, file)
		if err != nil {
			return nil, &types.CannotCreateFile{FileFault: types.FileFault{File: dsPath}}
		}
		frozen[vd.Key] = n - 1
		if d.cbt != nil {
			seq[vd.Key] = d.cbt.seq
		}
		b.ChangeId = changeID
		if ds := datastoreName(base); !slices.Contains(datastores, ds) {
			datastores = append(datastores, ds)
		}
	}

	res, fault := runInner(ctx, vm.CreateSnapshotExTask(ctx, req))
	if fault != nil {
		for key, i := range frozen {
			_ = lv.disks[key].thaw(i)
		}
		return nil, fault
	}
	ref := res.(types.ManagedObjectReference)
	for key, i := range frozen {
		d := lv.disks[key]
		d.mu.Lock()
		d.layers[i].frozenBy = ref.Value
		d.mu.Unlock()
	}
	l.setBackings(ctx, vm, lv)

	l.mu.Lock()
	l.snapshots[ref.Value] = &snapshot{vm: vm.Self.Value, seq: seq, datastores: datastores}
	for _, ds := range datastores {
		l.active[ds]++
		l.peak[ds] = max(l.peak[ds], l.active[ds])
	}
	l.mu.Unlock()
	l.log.Info("snapshot created", "vm", vm.Name, "snapshot", ref.Value, "quiesced", req.QuiesceSpec != nil)
	return ref, nil
}

// removeSnapshots consolidates the deltas of removed snapshots.
func (l *Lab) removeSnapshots(ctx *simulator.Context, vm *simulator.VirtualMachine, refs []types.ManagedObjectReference) types.BaseMethodFault {
	l.mu.Lock()
	lv := l.vms[vm.Self.Value]
	l.mu.Unlock()
	for _, ref := range refs {
		l.mu.Lock()
		s := l.snapshots[ref.Value]
		delete(l.snapshots, ref.Value)
		if s != nil {
			for _, ds := range s.datastores {
				l.active[ds]--
			}
		}
		l.mu.Unlock()
		if lv == nil {
			continue
		}
		for _, d := range lv.disks {
			if err := d.consolidate(ref.Value); err != nil {
				l.log.Error("consolidate", "vm", vm.Name, "err", err)
				return &types.FileFault{File: d.layers[0].dsPath}
			}
		}
		l.log.Info("snapshot removed", "vm", vm.Name, "snapshot", ref.Value)
	}
	if lv != nil {
		l.setBackings(ctx, vm, lv)
	}
	return nil
}

// setBackings points the VM's disks at their live layers, each with its
// chain of parents, as vSphere shows a VM with snapshots.
func (l *Lab) setBackings(ctx *simulator.Context, vm *simulator.VirtualMachine, lv *vm) {
	for _, dev := range vm.Config.Hardware.Device {
		vd, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		d := lv.disks[vd.Key]
		if !ok || d == nil {
			continue
		}
		d.mu.RLock()
		var parent *types.VirtualDiskFlatVer2BackingInfo
		for _, layer := range d.layers[:len(d.layers)-1] {
			p := *b
			p.FileName, p.Parent, p.ChangeId = layer.dsPath, parent, ""
			parent = &p
		}
		b.FileName, b.Parent = d.layers[len(d.layers)-1].dsPath, parent
		d.mu.RUnlock()
	}
	ctx.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
}

// changedAreas answers QueryChangedDiskAreas: the areas that changed since
// changeID, or the allocated ones for "*", from StartOffset on and at most
// ChangedAreaBytes of them.
func (l *Lab) changedAreas(vmRef types.ManagedObjectReference, poweredOff bool, req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, types.BaseMethodFault) {
	invalid := func(prop, msg string) types.BaseMethodFault {
		return &types.InvalidArgument{InvalidProperty: prop, RuntimeFault: types.RuntimeFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "lab.cbt", Message: msg}}}}}
	}
	// Without a snapshot, vSphere compares with the VM's current state,
	// which only a powered-off VM has settled.
	if req.Snapshot == nil && !poweredOff {
		return nil, invalid("snapshot", "a snapshot is required while the VM is powered on")
	}
	l.mu.Lock()
	lv := l.vms[vmRef.Value]
	var s *snapshot
	if req.Snapshot != nil {
		s = l.snapshots[req.Snapshot.Value]
	}
	l.mu.Unlock()
	if lv == nil {
		return nil, &types.ManagedObjectNotFound{Obj: vmRef}
	}
	if req.Snapshot != nil && (s == nil || s.vm != vmRef.Value) {
		return nil, &types.ManagedObjectNotFound{Obj: *req.Snapshot}
	}
	d := lv.disks[req.DeviceKey]
	if d == nil {
		return nil, invalid("deviceKey", fmt.Sprintf("no disk with key %d", req.DeviceKey))
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if req.StartOffset < 0 || req.StartOffset >= d.capacity {
		return nil, invalid("startOffset", fmt.Sprintf("start offset %d is outside the disk", req.StartOffset))
	}
	fileFault := func(msg string) types.BaseMethodFault {
		return &types.FileFault{File: strings.TrimSuffix(d.layers[0].dsPath, ".vmdk") + "-ctk.vmdk",
			VimFault: types.VimFault{MethodFault: types.MethodFault{FaultMessage: []types.LocalizableMessage{{Key: "lab.cbt", Message: msg}}}}}
	}
	if d.cbt == nil {
		return nil, fileFault("change tracking is not enabled on the disk")
	}
	layer, seq := len(d.layers)-1, d.cbt.seq // the current state
	if s != nil {
		if layer = d.layerOf(req.Snapshot.Value); layer < 0 {
			return nil, fileFault("the snapshot holds no state of the disk")
		}
		seq = s.seq[req.DeviceKey]
	}
	var areas []diskmap.Area
	if req.ChangeId == "*" {
		areas = d.allocated(layer)
	} else {
		var err error
		if areas, err = d.changedSince(req.ChangeId, seq); err != nil {
			return nil, fileFault(err.Error())
		}
		if s == nil { // and what was written since the last snapshot
			areas = diskmap.Normalize(append(areas, d.cbt.pending...), d.capacity)
		}
	}
	// The reply covers [StartOffset, end): up to the disk's end, or where
	// the budget ran out. The caller asks again from end.
	end := d.capacity
	var changed []types.DiskChangeExtent
	budget := l.opts.ChangedAreaBytes
	for i := diskmap.FindArea(areas, req.StartOffset); i < len(areas); i++ {
		start := max(areas[i].Offset, req.StartOffset)
		length := areas[i].End() - start
		if budget == 0 {
			end = start
			break
		}
		n := min(length, budget)
		changed = append(changed, types.DiskChangeExtent{Start: start, Length: n})
		budget -= n
		if n < length {
			end = start + n
			break
		}
	}
	info := &types.DiskChangeInfo{StartOffset: req.StartOffset, Length: end - req.StartOffset, ChangedArea: changed}
	return info, nil
}

// syncVM brings the lab's disks in line with a VM's configuration after a
// reconfiguration: added disks get flat files, grown disks grow, removed
// disks go, and change tracking follows the VM's setting. Enabling CBT,
// turning it off and resizing a disk all start tracking afresh.
func (l *Lab) syncVM(vm *simulator.VirtualMachine) types.BaseMethodFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	lv := l.vms[vm.Self.Value]
	if lv == nil {
		return nil
	}
	enabled := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
	seen := map[int32]bool{}
	for _, dev := range vm.Config.Hardware.Device {
		vd, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		seen[vd.Key] = true
		d := lv.disks[vd.Key]
		if d == nil {
			file, err := l.datastorePath(flatName(b.FileName))
			if err != nil {
				return &types.FileFault{File: b.FileName}
			}
			if d, err = openDisk(vd.Key, b.FileName, file, vd.CapacityInBytes, l.opts.CBTBlock); err != nil {
				l.log.Error("add disk", "vm", vm.Name, "err", err)
				return &types.CannotCreateFile{FileFault: types.FileFault{File: b.FileName}}
			}
			lv.disks[vd.Key] = d
		}
		if err := d.resize(vd.CapacityInBytes); err != nil {
			l.log.Error("resize disk", "vm", vm.Name, "err", err)
			return &types.FileFault{File: b.FileName}
		}
		d.mu.Lock()
		switch {
		case enabled && d.cbt == nil:
			d.cbt = newTracking()
		case !enabled:
			d.cbt = nil
		}
		d.mu.Unlock()
	}
	for key, d := range lv.disks {
		if !seen[key] {
			d.close()
			delete(lv.disks, key)
		}
	}
	lv.cbt = enabled
	return nil
}

// flatName is the flat extent of a disk descriptor: "x.vmdk" -> "x-flat.vmdk".
func flatName(dsPath string) string { return strings.TrimSuffix(dsPath, ".vmdk") + "-flat.vmdk" }

func datastoreName(dsPath string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(dsPath, "["), "]")
	return name
}
