package lab

import (
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// handle is the registry's dispatch hook. vcsim prefers an object in the
// caller's session to the registry's, so for the methods the lab extends it
// puts a stand-in there, one that embeds vcsim's object and adds to it, for
// the length of the call: the stand-in's method releases it when done.
// Everything else is vcsim's own.
func (l *Lab) handle(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if ctx.Session == nil {
		return nil, nil
	}
	l.sawSession(ctx.Session.Key)
	if l.faults.takeDrop(m.Name) {
		l.dropSessions(ctx)
		return nil, &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &m.This, PrivilegeId: "System.View"}}
	}
	switch m.This.Type + "." + m.Name {
	case "VirtualMachine.CreateSnapshot_Task", "VirtualMachine.CreateSnapshotEx_Task", "VirtualMachine.RemoveAllSnapshots_Task",
		"VirtualMachine.QueryChangedDiskAreas", "VirtualMachine.ReconfigVM_Task", "VirtualMachine.PowerOnVM_Task",
		"VirtualMachine.Destroy_Task":
		if v, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine); ok {
			l.override(ctx, &vmHandler{VirtualMachine: v, Self: m.This, lab: l})
		}
	case "Folder.CreateVM_Task":
		if f, ok := ctx.Map.Get(m.This).(*simulator.Folder); ok {
			l.override(ctx, &folderHandler{Folder: f, Self: m.This, lab: l})
		}
	case "VirtualMachineSnapshot.RemoveSnapshot_Task":
		if s, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachineSnapshot); ok {
			l.override(ctx, &snapshotHandler{VirtualMachineSnapshot: s, Self: m.This, lab: l})
		}
	case "SessionManager.AcquireGenericServiceTicket":
		l.override(ctx, &ticketIssuer{SessionManager: ctx.Map.SessionManager(), Self: m.This, lab: l})
	}
	return nil, nil
}

// override puts a stand-in for an object into the caller's session. Calls
// in one session can overlap, so stand-ins are counted, and the last
// release removes it.
func (l *Lab) override(ctx *simulator.Context, obj mo.Reference) {
	key := ctx.Session.Key + "/" + obj.Reference().Value
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.overrides[key]++; l.overrides[key] == 1 {
		ctx.Session.Put(obj)
	}
}

func (l *Lab) release(ctx *simulator.Context, ref types.ManagedObjectReference) {
	key := ctx.Session.Key + "/" + ref.Value
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.overrides[key]--; l.overrides[key] <= 0 {
		delete(l.overrides, key)
		ctx.Session.Remove(ctx, ref)
	}
}

// vmHandler adds to vcsim's VirtualMachine what backups need.
//
// Putting an object into a session's registry writes its Self field and,
// for an entity, its status fields. A stand-in's own Self and entity take
// those writes, which would otherwise race with every reader of the VM.
// (vcsim finds the embedded object by the first field, for the property
// collector, and the lock by the Self field.)
type vmHandler struct {
	*simulator.VirtualMachine
	Self   types.ManagedObjectReference
	entity mo.ManagedEntity
	lab    *Lab
}

// Entity implements mo.Entity with the stand-in's own fields; see vmHandler.
func (v *vmHandler) Entity() *mo.ManagedEntity { return &v.entity }

// CreateSnapshotTask is the older form of CreateSnapshotExTask.
func (v *vmHandler) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	ex := &types.CreateSnapshotEx_Task{This: req.This, Name: req.Name, Description: req.Description, Memory: req.Memory}
	if req.Quiesce {
		ex.QuiesceSpec = &types.VirtualMachineGuestQuiesceSpec{}
	}
	res := v.createSnapshot(ctx, ex).(*methods.CreateSnapshotEx_TaskBody)
	return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: res.Res.Returnval}}
}

// CreateSnapshotExTask freezes the disks and then lets vcsim make the
// snapshot, all within one task, so that a caller that sees the task end
// sees the snapshot's change IDs too.
func (v *vmHandler) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	return v.createSnapshot(ctx, req)
}

func (v *vmHandler) createSnapshot(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	task := simulator.CreateTask(v.VirtualMachine, "createSnapshot", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return v.lab.createSnapshot(ctx, v.VirtualMachine, req)
	})
	return &methods.CreateSnapshotEx_TaskBody{Res: &types.CreateSnapshotEx_TaskResponse{Returnval: task.Run(ctx)}}
}

// RemoveAllSnapshotsTask merges every delta back into the base disks.
func (v *vmHandler) RemoveAllSnapshotsTask(ctx *simulator.Context, req *types.RemoveAllSnapshots_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	task := simulator.CreateTask(v.VirtualMachine, "removeAllSnapshots", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		refs := snapshotRefs(v.VirtualMachine)
		res, fault := runInner(ctx, v.VirtualMachine.RemoveAllSnapshotsTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		return res, v.lab.removeSnapshots(ctx, v.VirtualMachine, refs)
	})
	return &methods.RemoveAllSnapshots_TaskBody{Res: &types.RemoveAllSnapshots_TaskResponse{Returnval: task.Run(ctx)}}
}

// ReconfigVMTask lets vcsim reconfigure the VM, then brings the lab's disks
// and change tracking in line with the new configuration.
func (v *vmHandler) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	task := simulator.CreateTask(v.VirtualMachine, "reconfigVM", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, fault := runInner(ctx, v.VirtualMachine.ReconfigVMTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		return res, v.lab.syncVM(v.VirtualMachine)
	})
	return &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: task.Run(ctx)}}
}

// QueryChangedDiskAreas answers from the lab's change tracking.
func (v *vmHandler) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	body := &methods.QueryChangedDiskAreasBody{}
	info, fault := v.lab.changedAreas(v.Self, v.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff, req)
	if fault != nil {
		body.Fault_ = simulator.Fault(faultMessage(fault), fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: *info}
	return body
}

// snapshotHandler merges a snapshot's delta back when it is removed.
type snapshotHandler struct {
	*simulator.VirtualMachineSnapshot
	Self types.ManagedObjectReference // see vmHandler
	lab  *Lab
}

// RemoveSnapshotTask removes the snapshot (and, if asked, its children) and
// consolidates their deltas, within one task.
func (s *snapshotHandler) RemoveSnapshotTask(ctx *simulator.Context, req *types.RemoveSnapshot_Task) soap.HasFault {
	defer s.lab.release(ctx, s.Self)
	vm, ok := ctx.Map.Get(s.Vm).(*simulator.VirtualMachine)
	if !ok {
		return &methods.RemoveSnapshot_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: s.Vm})}
	}
	task := simulator.CreateTask(vm, "removeSnapshot", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		refs := []types.ManagedObjectReference{s.Self}
		if req.RemoveChildren {
			refs = append(descendants(vm, s.Self), refs...)
		}
		res, fault := runInner(ctx, s.VirtualMachineSnapshot.RemoveSnapshotTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		return res, s.lab.removeSnapshots(ctx, vm, refs)
	})
	return &methods.RemoveSnapshot_TaskBody{Res: &types.RemoveSnapshot_TaskResponse{Returnval: task.Run(ctx)}}
}

// runInner waits for the task that a vcsim method started and returns its
// result. The caller runs inside its own task, on the same context, so the
// locks vcsim's task takes are already its own.
func runInner(ctx *simulator.Context, res soap.HasFault) (types.AnyType, types.BaseMethodFault) {
	if f := res.Fault(); f != nil {
		if mf, ok := f.VimFault().(types.BaseMethodFault); ok {
			return nil, mf
		}
		return nil, &types.SystemError{Reason: f.String}
	}
	ref := reflect.ValueOf(res).Elem().FieldByName("Res").Elem().FieldByName("Returnval").Interface().(types.ManagedObjectReference)
	t, ok := ctx.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: ref}
	}
	t.Wait()
	var info types.TaskInfo
	ctx.Map.WithLock(&simulator.Context{Map: ctx.Map}, t, func() { info = t.Info })
	if info.Error != nil {
		return nil, info.Error.Fault
	}
	return info.Result, nil
}

// snapshotRefs lists a VM's snapshots, children before their parents.
func snapshotRefs(vm *simulator.VirtualMachine) []types.ManagedObjectReference {
	if vm.Snapshot == nil {
		return nil
	}
	return postorder(vm.Snapshot.RootSnapshotList)
}

// descendants lists a snapshot's children, grandchildren first.
func descendants(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	if vm.Snapshot == nil {
		return nil
	}
	var find func([]types.VirtualMachineSnapshotTree) []types.ManagedObjectReference
	find = func(list []types.VirtualMachineSnapshotTree) []types.ManagedObjectReference {
		for _, t := range list {
			if t.Snapshot == ref {
				return postorder(t.ChildSnapshotList)
			}
			if out := find(t.ChildSnapshotList); out != nil {
				return out
			}
		}
		return nil
	}
	return find(vm.Snapshot.RootSnapshotList)
}

// postorder lists the snapshots of a tree, children before their parents.
func postorder(list []types.VirtualMachineSnapshotTree) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	for _, t := range list {
		out = append(out, postorder(t.ChildSnapshotList)...)
		out = append(out, t.Snapshot)
	}
	return out
}

// faultMessage gives a fault's message, which vSphere shows with it.
func faultMessage(f types.BaseMethodFault) string {
	if m := f.GetMethodFault().FaultMessage; len(m) > 0 {
		parts := make([]string, len(m))
		for i, lm := range m {
			parts[i] = lm.Message
		}
		return strings.Join(parts, "; ")
	}
	return reflect.TypeOf(f).Elem().Name()
}
