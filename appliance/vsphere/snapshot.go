package vsphere

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Consistency of a point, as its snapshot made it.
const (
	Quiesced        = "quiesced"         // the guest flushed its writes through Tools
	CrashConsistent = "crash-consistent" // as if the power had been cut
	PoweredOff      = "powered-off"      // nothing was running: fully consistent
)

// SnapshotPrefix begins the name of every snapshot Bulwark takes. The
// store's ID follows it, so that an appliance removes only what it left
// behind, not the snapshots of another appliance backing up the same VMs.
const SnapshotPrefix = "bulwark-"

// snapshotName names a backup's snapshot: "bulwark-<store>-<job>-<time>".
func snapshotName(owner, job string, t time.Time) string {
	if job == "" {
		job = "adhoc"
	}
	return fmt.Sprintf("%s%s-%s-%s", SnapshotPrefix, owner, job, t.UTC().Format("20060102T150405Z"))
}

// removeTimeout bounds the removal of a snapshot that a cancelled backup
// leaves: it must still happen, but not hang the appliance.
const removeTimeout = 10 * time.Minute

// createSnapshot takes the backup's snapshot: quiesced when the VM runs
// Tools, and crash-consistent when quiescing fails, which is a warning,
// not an error.
func (c *Client) createSnapshot(ctx context.Context, vm *object.VirtualMachine, props *mo.VirtualMachine, name string) (types.ManagedObjectReference, string, []string, error) {
	var warnings []string
	consistency := CrashConsistent
	quiesce := false
	switch {
	case props.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn:
		consistency = PoweredOff
	case props.Guest != nil && props.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning):
		consistency, quiesce = Quiesced, true
	default:
		warnings = append(warnings, "VMware Tools are not running: the snapshot is crash-consistent")
	}
	const description = "Taken by Bulwark for a backup; removed when the backup ends."
	for {
		t, err := vm.CreateSnapshot(ctx, name, description, false, quiesce)
		if err != nil {
			return types.ManagedObjectReference{}, "", warnings, fmt.Errorf("snapshot %s: %s", props.Name, faultText(err))
		}
		info, err := t.WaitForResult(ctx)
		if ctx.Err() != nil {
			// The task goes on without us: wait for its end, and remove
			// the snapshot it may have made.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
			if info, err := t.WaitForResult(wctx); err == nil {
				if ref, ok := info.Result.(types.ManagedObjectReference); ok {
					if rerr := c.removeSnapshot(ctx, ref); rerr != nil {
						c.log.Error("snapshot left behind; the next start of the appliance removes it", "vm", props.Name, "err", rerr)
					}
				}
			}
			cancel()
			return types.ManagedObjectReference{}, "", warnings, fmt.Errorf("snapshot %s: %w", props.Name, ctx.Err())
		}
		if err == nil {
			ref, ok := info.Result.(types.ManagedObjectReference)
			if !ok {
				return types.ManagedObjectReference{}, "", warnings, fmt.Errorf("snapshot %s: the task ended %s with no snapshot", props.Name, info.State)
			}
			return ref, consistency, warnings, nil
		}
		if quiesce && isQuiesceFault(err) {
			c.log.Warn("quiesced snapshot failed: taking a crash-consistent one", "vm", props.Name, "err", faultText(err))
			warnings = append(warnings, "quiescing failed ("+faultText(err)+"): the snapshot is crash-consistent")
			quiesce, consistency = false, CrashConsistent
			continue
		}
		return types.ManagedObjectReference{}, "", warnings, fmt.Errorf("snapshot %s: %s", props.Name, faultText(err))
	}
}

func isQuiesceFault(err error) bool {
	return fault.Is(err, &types.ApplicationQuiesceFault{}) || fault.Is(err, &types.ToolsUnavailable{}) ||
		fault.Is(err, &types.ToolsInstallationInProgress{}) || fault.Is(err, &types.SnapshotFault{})
}

// faultText turns a vSphere error into words: a task's fault carries its
// message in the fault, not in the error's text.
func faultText(err error) string {
	var te task.Error
	if errors.As(err, &te) {
		if f := te.Fault(); f != nil {
			var msgs []string
			for _, m := range f.GetMethodFault().FaultMessage {
				msgs = append(msgs, m.Message)
			}
			if len(msgs) > 0 {
				return fmt.Sprintf("%T: %s", f, strings.Join(msgs, "; "))
			}
		}
	}
	return err.Error()
}

// removeSnapshot removes a snapshot, merging its delta. It runs even when
// the backup's context is cancelled.
func (c *Client) removeSnapshot(ctx context.Context, ref types.ManagedObjectReference) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	consolidate := true
	res, err := methods.RemoveSnapshot_Task(ctx, c.vim, &types.RemoveSnapshot_Task{This: ref, RemoveChildren: false, Consolidate: &consolidate})
	if err == nil {
		err = object.NewTask(c.vim, res.Returnval).Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %s", ref.Value, faultText(err))
	}
	return nil
}

// Orphan is a snapshot Bulwark took and did not remove.
type Orphan struct {
	VM, VMName, Snapshot, Name string
	Created                    time.Time
}

// OrphanSnapshots lists the snapshots that this store's backups took on
// any VM of the vCenter and left behind: after a crash, say.
func (c *Client) OrphanSnapshots(ctx context.Context, owner string) ([]Orphan, error) {
	m := view.NewManager(c.vim)
	v, err := m.CreateContainerView(ctx, c.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "snapshot"}, &vms); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	prefix := SnapshotPrefix + owner + "-"
	var out []Orphan
	for _, vm := range vms {
		if vm.Snapshot == nil {
			continue
		}
		var walk func([]types.VirtualMachineSnapshotTree)
		walk = func(list []types.VirtualMachineSnapshotTree) {
			for _, t := range list {
				walk(t.ChildSnapshotList)
				if strings.HasPrefix(t.Name, prefix) {
					out = append(out, Orphan{VM: vm.Self.Value, VMName: vm.Name, Snapshot: t.Snapshot.Value, Name: t.Name, Created: t.CreateTime})
				}
			}
		}
		walk(vm.Snapshot.RootSnapshotList)
	}
	return out, nil
}

// RemoveOrphanSnapshots removes the snapshots that this store's backups
// left behind, except those of the VMs in busy (backups running now). An
// appliance calls it when it starts.
func (c *Client) RemoveOrphanSnapshots(ctx context.Context, owner string, busy map[string]bool) ([]Orphan, error) {
	orphans, err := c.OrphanSnapshots(ctx, owner)
	if err != nil {
		return nil, err
	}
	var removed []Orphan
	var errs []error
	for _, o := range orphans {
		if busy[o.VM] {
			continue
		}
		if err := c.removeSnapshot(ctx, types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: o.Snapshot}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.VMName, err))
			continue
		}
		c.log.Warn("removed a snapshot an earlier backup left behind", "vm", o.VMName, "snapshot", o.Name, "created", o.Created)
		removed = append(removed, o)
	}
	return removed, errors.Join(errs...)
}

// vmProperties are what a backup reads of a VM.
var vmProperties = []string{"name", "config", "runtime.powerState", "runtime.host", "guest.toolsRunningStatus", "snapshot"}

func (c *Client) vmProps(ctx context.Context, ref types.ManagedObjectReference) (*mo.VirtualMachine, error) {
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(c.vim).RetrieveOne(ctx, ref, vmProperties, &vm); err != nil {
		return nil, fmt.Errorf("read VM %s: %w", ref.Value, err)
	}
	if vm.Config == nil {
		return nil, fmt.Errorf("VM %s: no configuration (is it inaccessible?)", vm.Name)
	}
	return &vm, nil
}
