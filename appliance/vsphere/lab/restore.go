package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// What a restore needs of the lab: VMs created through the API get real
// disks, powering one on boots it (Tools start when its first disk holds a
// GPT and a filesystem), destroying one removes its disks, flat extents can
// be uploaded over /folder, and a powered-off VM's disk can be hot-added
// for writing.

// folderHandler adds to vcsim's Folder what restores need.
type folderHandler struct {
	*simulator.Folder
	Self   types.ManagedObjectReference // see vmHandler
	entity mo.ManagedEntity
	lab    *Lab
}

// Entity implements mo.Entity with the stand-in's own fields; see vmHandler.
func (f *folderHandler) Entity() *mo.ManagedEntity { return &f.entity }

// CreateVMTask lets vcsim create the VM, then gives its disks flat files
// within the same task.
func (f *folderHandler) CreateVMTask(ctx *simulator.Context, req *types.CreateVM_Task) soap.HasFault {
	defer f.lab.release(ctx, f.Self)
	task := simulator.CreateTask(f.Folder, "createVM", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, fault := runInner(ctx, f.Folder.CreateVMTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		ref := res.(types.ManagedObjectReference)
		if req.Config.Name == ApplianceVMName {
			return res, nil // its disks are other VMs' disks, attached
		}
		obj, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine)
		if !ok {
			return nil, &types.ManagedObjectNotFound{Obj: ref}
		}
		f.lab.mu.Lock()
		f.lab.vms[ref.Value] = &vm{ref: ref, name: req.Config.Name, disks: map[int32]*disk{}, guest: map[int32]*GuestDisk{}}
		f.lab.mu.Unlock()
		var sync types.BaseMethodFault
		ctx.Map.WithLock(&simulator.Context{Map: ctx.Map}, obj, func() { sync = f.lab.syncVM(obj) })
		return res, sync
	})
	return &methods.CreateVM_TaskBody{Res: &types.CreateVM_TaskResponse{Returnval: task.Run(ctx)}}
}

// PowerOnVMTask powers the VM on and boots its guest: Tools run and send
// heartbeats only when the first disk holds a GPT whose first partition has
// a filesystem the lab knows, so a restore that lost the disk's contents
// fails its rehearsal.
func (v *vmHandler) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	task := simulator.CreateTask(v.VirtualMachine, "powerOn", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, fault := runInner(ctx, v.VirtualMachine.PowerOnVMTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		running, heartbeat := types.VirtualMachineToolsRunningStatusGuestToolsNotRunning, types.ManagedEntityStatusGray
		if err := v.lab.boots(v.Self); err == nil {
			running, heartbeat = types.VirtualMachineToolsRunningStatusGuestToolsRunning, types.ManagedEntityStatusGreen
		} else {
			v.lab.log.Info("guest does not boot", "vm", v.Name, "err", err)
		}
		toolsStatus := types.VirtualMachineToolsStatusToolsOk
		if running != types.VirtualMachineToolsRunningStatusGuestToolsRunning {
			toolsStatus = types.VirtualMachineToolsStatusToolsNotRunning
		}
		ctx.Update(v.VirtualMachine, []types.PropertyChange{
			{Name: "guest.toolsRunningStatus", Val: string(running)},
			{Name: "guest.toolsStatus", Val: toolsStatus},
			{Name: "guestHeartbeatStatus", Val: heartbeat},
			{Name: "summary.guest.toolsRunningStatus", Val: string(running)},
			{Name: "summary.quickStats.guestHeartbeatStatus", Val: heartbeat},
		})
		return res, nil
	})
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: task.Run(ctx)}}
}

// DestroyTask lets vcsim destroy the VM, which deletes its directory, and
// forgets its disks.
func (v *vmHandler) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	defer v.lab.release(ctx, v.Self)
	task := simulator.CreateTask(v.VirtualMachine, "destroy", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, fault := runInner(ctx, v.VirtualMachine.DestroyTask(ctx, req))
		if fault != nil {
			return nil, fault
		}
		v.lab.mu.Lock()
		lv := v.lab.vms[v.Self.Value]
		delete(v.lab.vms, v.Self.Value)
		v.lab.mu.Unlock()
		if lv != nil {
			for _, d := range lv.disks {
				d.close()
				for _, l := range d.layers {
					_ = os.Remove(l.path) // vcsim removed the directory; a disk elsewhere goes too
				}
			}
		}
		return res, nil
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: task.Run(ctx)}}
}

// boots says why a VM's guest would not boot: its first disk must hold a
// GPT whose first partition starts with an ext2/3/4 superblock.
func (l *Lab) boots(ref types.ManagedObjectReference) error {
	l.mu.Lock()
	lv := l.vms[ref.Value]
	l.mu.Unlock()
	if lv == nil {
		return errors.New("not a lab VM")
	}
	keys := lv.diskKeys()
	if len(keys) == 0 {
		return errors.New("no disks")
	}
	r := &Reader{d: lv.disks[keys[0]], layer: -1}
	parts, err := readGPT(r, r.Size())
	if err != nil {
		return fmt.Errorf("first disk: %w", err)
	}
	if len(parts) == 0 {
		return errors.New("first disk: no partitions")
	}
	magic := make([]byte, 2)
	if _, err := r.ReadAt(magic, parts[0].Start+1080); err != nil {
		return fmt.Errorf("first partition: %w", err)
	}
	if !bytes.Equal(magic, []byte{0x53, 0xef}) {
		return errors.New("first partition: no ext2/3/4 superblock")
	}
	return nil
}

// poweredOff says whether a VM is powered off, as vcsim has it.
func (l *Lab) poweredOff(ref types.ManagedObjectReference) bool {
	vm, ok := l.model.Map().Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return false
	}
	var state types.VirtualMachinePowerState
	l.model.Map().WithLock(&simulator.Context{Map: l.model.Map()}, vm, func() { state = vm.Runtime.PowerState })
	return state == types.VirtualMachinePowerStatePoweredOff
}

// liveDisk finds the disk whose live layer is the file at path, and its VM.
func (l *Lab) liveDisk(match func(*layer) bool) (*vm, *disk) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.vms {
		for _, d := range v.disks {
			d.mu.RLock()
			ok := match(d.layers[len(d.layers)-1])
			d.mu.RUnlock()
			if ok {
				return v, d
			}
		}
	}
	return nil, nil
}

// Device is a disk hot-added to the appliance VM, as its block device.
type Device struct {
	Reader
	writable bool
}

// WriteAt writes to a disk hot-added for writing; the writes are tracked
// as the guest's would be.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if !d.writable {
		return 0, errors.New("the disk was attached read-only")
	}
	if err := d.d.write(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close releases the device.
func (d *Device) Close() error { return nil }

// Attach is the lab's device resolver for hot-add: it maps the file of a
// disk attached to the appliance VM to its contents. Read-only, it gives
// the state a snapshot froze; writable, the live disk of a powered-off VM,
// as a restore over the original writes it.
func (l *Lab) Attach(fileName string, writable bool) (*Device, error) {
	if !writable {
		r, err := l.OpenAttached(fileName)
		if err != nil {
			return nil, err
		}
		return &Device{Reader: *r}, nil
	}
	v, d := l.liveDisk(func(top *layer) bool { return top.dsPath == fileName })
	if d == nil {
		return nil, fmt.Errorf("disk %s: %w", fileName, ErrNotFound)
	}
	if !l.poweredOff(v.ref) {
		return nil, fmt.Errorf("%s is in use by %s, which is powered on", fileName, v.name)
	}
	return &Device{Reader: Reader{d: d, layer: -1}, writable: true}, nil
}

// putFolder is ESXi's /folder upload: the body replaces the file. A lab
// disk's flat extent is written through the disk, so that its VM sees the
// data and CBT tracks it; zero blocks are written only where the disk
// holds data, which keeps a thin disk thin.
func (l *Lab) putFolder(w http.ResponseWriter, r *http.Request, file string) {
	v, d := l.liveDisk(func(top *layer) bool { return top.path == file })
	if d == nil {
		l.putDetached(w, r, file)
		return
	}
	if !l.poweredOff(v.ref) {
		http.Error(w, "the disk is in use by a powered-on VM", http.StatusConflict)
		return
	}
	const block = 64 << 10
	buf := make([]byte, block)
	cur := make([]byte, block)
	reader := &Reader{d: d, layer: -1}
	size := reader.Size()
	var off int64
	for {
		n, err := io.ReadFull(r.Body, buf)
		if n > 0 {
			if off+int64(n) > size {
				http.Error(w, fmt.Sprintf("upload longer than the disk's %d bytes", size), http.StatusBadRequest)
				return
			}
			p := buf[:n]
			write := !allZero(p)
			if !write {
				if _, rerr := reader.ReadAt(cur[:n], off); rerr != nil && !errors.Is(rerr, io.EOF) {
					http.Error(w, rerr.Error(), http.StatusInternalServerError)
					return
				}
				write = !allZero(cur[:n])
			}
			if write {
				if werr := d.write(p, off); werr != nil {
					http.Error(w, werr.Error(), http.StatusInternalServerError)
					return
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			http.Error(w, "read upload: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if off != size {
		http.Error(w, fmt.Sprintf("upload of %d bytes for a disk of %d", off, size), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// putDetached takes the upload of a flat extent of a disk that no VM uses,
// made by VirtualDiskManager: the body replaces the file, sparse.
func (l *Lab) putDetached(w http.ResponseWriter, r *http.Request, file string) {
	if !strings.HasSuffix(file, "-flat.vmdk") {
		http.Error(w, "the lab accepts uploads of disks' flat extents only", http.StatusForbidden)
		return
	}
	if l.inUse(file) {
		http.Error(w, "the disk belongs to a VM", http.StatusConflict)
		return
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		http.Error(w, "no such disk: create it first", http.StatusNotFound)
		return
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(r.Body, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := f.WriteAt(buf[:n], off); werr != nil {
				http.Error(w, werr.Error(), http.StatusInternalServerError)
				return
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			http.Error(w, "read upload: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if err := f.Truncate(off); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// inUse says whether a file is a layer of any VM's disk.
func (l *Lab) inUse(file string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.vms {
		for _, d := range v.disks {
			d.mu.RLock()
			for _, layer := range d.layers {
				if layer.path == file {
					d.mu.RUnlock()
					return true
				}
			}
			d.mu.RUnlock()
		}
	}
	return false
}

// DatastoreFile opens a file of a datastore, by its datastore path.
func (l *Lab) DatastoreFile(dsPath string) (*os.File, error) {
	p, err := l.datastorePath(dsPath)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
