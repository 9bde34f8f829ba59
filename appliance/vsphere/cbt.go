package vsphere

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// enableCBT turns Changed Block Tracking on. It takes effect at the next
// snapshot, which the backup is about to take.
func (c *Client) enableCBT(ctx context.Context, vm *object.VirtualMachine) error {
	on := true
	t, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("enable changed block tracking: %s", faultText(err))
	}
	return nil
}

// changedAreas asks vSphere which areas of a disk changed between changeID
// and the snapshot ("*": which hold data at all), a page at a time.
// A nil snapshot asks about the VM's current state, which vSphere answers
// only for a powered-off VM.
func (c *Client) changedAreas(ctx context.Context, vm types.ManagedObjectReference, snapshot *types.ManagedObjectReference, disk *types.VirtualDisk, changeID string) ([]diskmap.Area, error) {
	var out []diskmap.Area
	for off := int64(0); off < disk.CapacityInBytes; {
		req := types.QueryChangedDiskAreas{This: vm, Snapshot: snapshot, DeviceKey: disk.Key, StartOffset: off, ChangeId: changeID}
		res, err := methods.QueryChangedDiskAreas(ctx, c.vim, &req)
		if err != nil {
			return nil, fmt.Errorf("changed areas of disk %d since %s: %s", disk.Key, changeID, faultText(err))
		}
		info := res.Returnval
		if info.StartOffset != off || info.Length <= 0 {
			return nil, fmt.Errorf("changed areas of disk %d: a reply for [%d, +%d) to a question at %d", disk.Key, info.StartOffset, info.Length, off)
		}
		end := info.StartOffset + info.Length
		for _, a := range info.ChangedArea {
			if a.Start < info.StartOffset || a.Length <= 0 || a.Start+a.Length > end {
				return nil, fmt.Errorf("changed areas of disk %d: area [%d, +%d) outside the reply's [%d, %d)", disk.Key, a.Start, a.Length, info.StartOffset, end)
			}
			out = append(out, diskmap.Area{Offset: a.Start, Length: a.Length})
		}
		off = end
	}
	return diskmap.Normalize(out, disk.CapacityInBytes), nil
}

// changeUUID is the part of a change ID that CBT renews when it resets;
// IDs with different UUIDs cannot be compared.
func changeUUID(id string) string {
	u, _, _ := strings.Cut(id, "/")
	return u
}
