package vsphere_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/restore"
)

// backup backs a VM up and returns what the backup made.
func (r *rig) backup(t *testing.T, ref types.ManagedObjectReference) *vsphere.BackupResult {
	t.Helper()
	res, err := r.c.BackupVM(context.Background(), r.store, ref, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// restoreTarget is the rig's vCenter as a restore target, with hot-add
// through the lab's appliance VM.
func (r *rig) restoreTarget(t *testing.T) *vsphere.RestoreTarget {
	appliance := r.vmRef(t, lab.ApplianceVMName)
	resolve := func(ctx context.Context, d *types.VirtualDisk, writable bool) (vsphere.Device, error) {
		return r.lab.Attach(d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName, writable)
	}
	return r.c.RestoreTarget(r.c.HotAdd(appliance, resolve))
}

// requireDisksMatch checks that every disk of a lab VM holds exactly the
// point's disk.
func (r *rig) requireDisksMatch(t *testing.T, vmName string, point blob.ID) {
	t.Helper()
	ctx := context.Background()
	p, err := r.store.LoadPoint(ctx, point)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Disks {
		got, err := r.lab.Disk(vmName, i)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.store.OpenDisk(ctx, point, i)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size() != want.Size() {
			t.Fatalf("%s disk %d: %d bytes, the point's %d", vmName, i, got.Size(), want.Size())
		}
		if g, w := hashOf(t, got, got.Size()), hashOf(t, want, want.Size()); g != w {
			t.Fatalf("%s disk %d differs from point %s", vmName, i, point.Short())
		}
	}
}

func hashOf(t *testing.T, r io.ReaderAt, size int64) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func (r *rig) config(t *testing.T, ref types.ManagedObjectReference) *types.VirtualMachineConfigInfo {
	t.Helper()
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(r.c.VIM()).RetrieveOne(context.Background(), ref, []string{"config"}, &vm); err != nil {
		t.Fatal(err)
	}
	return vm.Config
}

func (r *rig) powerOff(t *testing.T, ref types.ManagedObjectReference) {
	t.Helper()
	task, err := object.NewVirtualMachine(r.c.VIM(), ref).PowerOff(context.Background())
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoreToNewVM restores a point as new VMs over both transports: the
// disks match the point bit for bit, the configuration matches, NICs start
// as asked, and hot-add writes only the disks' data.
func TestRestoreToNewVM(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20, ApplianceVM: true})
	ref := r.vmRef(t, "vm01")
	res := r.backup(t, ref)
	point := res.Point
	target := r.restoreTarget(t)
	orig := r.config(t, ref)

	for _, tc := range []struct {
		transport  string
		disconnect bool
	}{{restore.TransportHTTP, false}, {restore.TransportHotAdd, true}} {
		t.Run(tc.transport, func(t *testing.T) {
			name := "vm01-" + tc.transport
			out, err := restore.ToNewVM(ctx, r.store, point.ID, target,
				restore.NewVM{Name: name, Folder: "/DC0/vm/test", DisconnectNICs: tc.disconnect}, restore.Options{Transport: tc.transport})
			if err != nil {
				t.Fatal(err)
			}
			r.requireDisksMatch(t, name, point.ID)
			got := r.config(t, types.ManagedObjectReference{Type: "VirtualMachine", Value: out.MoRef})
			if !strings.HasPrefix(got.Annotation, "Restored by Bulwark") || !strings.Contains(got.Annotation, point.ID.Short()) {
				t.Errorf("notes %q, want the restore's", got.Annotation)
			}
			if got.GuestId != orig.GuestId || got.Hardware.NumCPU != orig.Hardware.NumCPU || got.Hardware.MemoryMB != orig.Hardware.MemoryMB {
				t.Errorf("config %s/%d CPUs/%d MB, want %s/%d/%d", got.GuestId, got.Hardware.NumCPU, got.Hardware.MemoryMB,
					orig.GuestId, orig.Hardware.NumCPU, orig.Hardware.MemoryMB)
			}
			nics := object.VirtualDeviceList(got.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil))
			if len(nics) != 1 {
				t.Fatalf("%d NICs, want 1", len(nics))
			}
			nic := nics[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
			if nic.Connectable == nil || nic.Connectable.StartConnected == tc.disconnect {
				t.Errorf("NIC start connected = %v, want %v", nic.Connectable, !tc.disconnect)
			}
			if nb, ok := nic.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); !ok || nb.DeviceName != "VM Network" {
				t.Errorf("NIC backing %#v, want VM Network", nic.Backing)
			}
			for i, d := range out.Disks {
				data := point.Disks[i].DataBytes
				switch tc.transport {
				case restore.TransportHotAdd:
					if d.BytesWritten != data {
						t.Errorf("disk %d: hot-add wrote %d bytes, the point holds %d of data", i, d.BytesWritten, data)
					}
				case restore.TransportHTTP:
					if d.BytesWritten != point.Disks[i].Capacity {
						t.Errorf("disk %d: uploaded %d bytes, want the whole %d", i, d.BytesWritten, point.Disks[i].Capacity)
					}
				}
				t.Logf("disk %d: %s wrote %d bytes (%d of data) in %.2fs", i, tc.transport, d.BytesWritten, data, d.Seconds)
			}
		})
	}
}

// TestRestoreOverOriginal writes into a VM after its backup, then restores
// the point over it: refused while it runs; once off, only the areas CBT
// reports (widened to chunks) are written and the disks match the point;
// the next backup reads the disks whole. With CBT reset, the same restore
// compares by hash.
func TestRestoreOverOriginal(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20, ApplianceVM: true})
	ref := r.vmRef(t, "vm01")
	res := r.backup(t, ref)
	point := res.Point
	target := r.restoreTarget(t)
	rng := rand.New(rand.NewPCG(1, 2))
	scribble := func() []diskmap.Area {
		var areas []diskmap.Area
		for _, a := range []diskmap.Area{{Offset: 3 << 20, Length: 100 << 10}, {Offset: 40 << 20, Length: 4096}, {Offset: 63 << 20, Length: 512}} {
			b := make([]byte, a.Length)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if err := r.lab.Write("vm01", 0, a.Offset, b); err != nil {
				t.Fatal(err)
			}
			areas = append(areas, a)
		}
		return areas
	}
	changed := scribble()

	if _, err := restore.OverOriginal(ctx, r.store, point.ID, target, "", restore.Options{}); !errors.Is(err, restore.ErrPoweredOn) {
		t.Fatalf("restore over a running VM: %v, want ErrPoweredOn", err)
	}
	r.powerOff(t, ref)

	disk, err := r.store.OpenDisk(ctx, point.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	// CBT reports 64 KiB blocks; the restore widens them to the point's
	// chunks (and zero gaps to 64 KiB).
	bound := diskmap.Widen(disk.Extents(), alignAreas(changed, 64<<10), disk.Size(), 64<<10)
	for _, tc := range []struct {
		method string
		prep   func()
	}{
		{"cbt", func() {}},
		{"hash", func() { scribble(); _ = r.lab.ResetCBT("vm01") }},
	} {
		tc.prep()
		out, err := restore.OverOriginal(ctx, r.store, point.ID, target, "", restore.Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		d := out.Disks[0]
		if d.Method != tc.method {
			t.Errorf("restore chose %q (%s), want %q", d.Method, d.Reason, tc.method)
		}
		if max := total(bound); d.BytesWritten > max || d.BytesWritten < total(changed) {
			t.Errorf("%s: wrote %d bytes; want at least the %d changed and at most the %d of the changed blocks widened to chunks", tc.method, d.BytesWritten, total(changed), max)
		}
		t.Logf("%s: %d bytes changed, %d differing, %d written (bound %d) in %.2fs", tc.method, total(changed), d.Differing, d.BytesWritten, total(bound), d.Seconds)
		r.requireDisksMatch(t, "vm01", point.ID)
	}

	// CBT was reset by the restore: the next backup reads the disk whole.
	task, err := object.NewVirtualMachine(r.c.VIM(), ref).PowerOn(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	next, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(next.FullReads) != 1 {
		t.Errorf("the backup after a restore read %v whole, want disk 0", next.FullReads)
	}
}

func alignAreas(areas []diskmap.Area, block int64) []diskmap.Area {
	var out []diskmap.Area
	for _, a := range areas {
		start := a.Offset - a.Offset%block
		end := (a.End() + block - 1) / block * block
		out = append(out, diskmap.Area{Offset: start, Length: end - start})
	}
	return out
}

func total(areas []diskmap.Area) int64 {
	var n int64
	for _, a := range areas {
		n += a.Length
	}
	return n
}

// TestRehearsal restores the latest point as a VM with NICs disconnected,
// boots it and removes it: success, and nothing left in vCenter or on the
// datastore. A point whose disk does not boot fails its rehearsal, and
// leaves nothing either.
func TestRehearsal(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20})
	ref := r.vmRef(t, "vm01")
	res := r.backup(t, ref)
	target := r.c.RestoreTarget(nil)
	before := len(r.lab.VMs())
	reh, err := restore.Rehearse(ctx, r.store, res.Point.ID, target, restore.NewVM{Name: "vm01-rehearsal"}, time.Minute, false, restore.Options{})
	if err != nil || !reh.Booted {
		t.Fatalf("rehearsal: %+v, %v", reh, err)
	}
	if _, err := target.FindVM(ctx, "vm01-rehearsal"); err == nil {
		t.Error("the rehearsal VM is still in vCenter")
	}
	if n := len(r.lab.VMs()); n != before {
		t.Errorf("%d lab VMs after the rehearsal, want %d", n, before)
	}

	// Wipe the GPT and take another point: that one must not boot.
	if err := r.lab.Write("vm01", 0, 0, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	bad, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reh, err = restore.Rehearse(ctx, r.store, bad.Point.ID, target, restore.NewVM{Name: "vm01-bad"}, 2*time.Second, false, restore.Options{})
	if err == nil || reh == nil || reh.Booted {
		t.Fatalf("rehearsal of an unbootable point: %+v, %v; want a failure", reh, err)
	}
	if _, err := target.FindVM(ctx, "vm01-bad"); err == nil {
		t.Error("the failed rehearsal's VM is still in vCenter")
	}
}

// TestRestoreDiskToVM restores one disk of a point as a new disk of another
// VM, over each transport, and the new disk matches the point's.
func TestRestoreDiskToVM(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 2, Disks: 2, DiskSize: 64 << 20, ApplianceVM: true})
	res := r.backup(t, r.vmRef(t, "vm01"))
	target := r.restoreTarget(t)
	r.powerOff(t, r.vmRef(t, "vm02")) // hot-add writes only to a powered-off VM's disks
	for n, transport := range []string{restore.TransportHTTP, restore.TransportHotAdd} {
		out, err := restore.DiskToVM(ctx, r.store, res.Point.ID, 1, target, "vm02", "", restore.Options{Transport: transport})
		if err != nil {
			t.Fatalf("%s: %v", transport, err)
		}
		if got := out.Disks[0].Index; got != 2+n {
			t.Errorf("%s: restored as disk %d of vm02, want %d", transport, got, 2+n)
		}
		got, err := r.lab.Disk("vm02", out.Disks[0].Index)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.store.OpenDisk(ctx, res.Point.ID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if hashOf(t, got, got.Size()) != hashOf(t, want, want.Size()) {
			t.Errorf("%s: vm02's new disk differs from point disk 1", transport)
		}
	}
}

// TestRestoreDiskToDatastore restores one disk of a point as a disk file of
// its own on a datastore: its flat extent matches the point's disk.
func TestRestoreDiskToDatastore(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20})
	res := r.backup(t, r.vmRef(t, "vm01"))
	path := "[LocalDS_0] restored/vm01-disk1.vmdk"
	out, err := restore.DiskToDatastore(ctx, r.store, res.Point.ID, 1, r.c.RestoreTarget(nil), path, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.lab.DatastoreFile("[LocalDS_0] restored/vm01-disk1-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := r.store.OpenDisk(ctx, res.Point.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() != want.Size() || hashOf(t, f, st.Size()) != hashOf(t, want, want.Size()) {
		t.Errorf("%s (%d bytes) differs from point disk 1 (%d bytes)", path, st.Size(), want.Size())
	}
	if out.BytesWritten != want.Size() {
		t.Errorf("uploaded %d bytes, want %d", out.BytesWritten, want.Size())
	}
	if _, err := restore.DiskToDatastore(ctx, r.store, res.Point.ID, 1, r.c.RestoreTarget(nil), path, restore.Options{}); err == nil {
		t.Error("a second restore over the same disk file succeeded; want an error saying it exists")
	}
}

// TestRestoreOverOriginalInterrupted cuts restores over the original short
// at random moments: every one that did not finish leaves CBT off, so the
// next backup cannot trust change IDs from before its writes; a last
// restore completes, the disk matches the point, and the next backup reads
// the disk whole.
func TestRestoreOverOriginalInterrupted(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20, ApplianceVM: true})
	ref := r.vmRef(t, "vm01")
	res := r.backup(t, ref)
	target := r.restoreTarget(t)
	r.powerOff(t, ref)
	rng := rand.New(rand.NewPCG(5, 6))
	scribble := func() {
		for range 8 {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if err := r.lab.Write("vm01", 0, rng.Int64N(63)<<20, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	scribble()
	start := time.Now()
	if _, err := restore.OverOriginal(ctx, r.store, res.Point.ID, target, "", restore.Options{}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	cut := 0
	for i := range 12 {
		scribble()
		cctx, cancel := context.WithTimeout(ctx, time.Duration(rng.Int64N(int64(took)*3/2)))
		_, err := restore.OverOriginal(cctx, r.store, res.Point.ID, target, "", restore.Options{})
		cancel()
		cbt := r.config(t, ref).ChangeTrackingEnabled
		on := cbt != nil && *cbt
		switch {
		case err == nil && !on:
			t.Errorf("run %d: finished with CBT off", i)
		case err != nil && on && !strings.Contains(err.Error(), "tracking of vm01 on"):
			// Only turning CBT on, after every write, may be cut short
			// and still take effect.
			t.Errorf("run %d: cut short (%v) with CBT on", i, err)
		case err != nil:
			cut++
		}
	}
	if cut == 0 {
		t.Error("no restore was cut short")
	}
	if _, err := restore.OverOriginal(ctx, r.store, res.Point.ID, target, "", restore.Options{}); err != nil {
		t.Fatal(err)
	}
	r.requireDisksMatch(t, "vm01", res.Point.ID)
	next, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(next.FullReads) != 1 {
		t.Errorf("the backup after the restores read %v whole, want disk 0", next.FullReads)
	}
	t.Logf("%d of 12 restores cut short, each leaving CBT off", cut)
}

// TestRestoreToNewVMCancelled cancels a restore while it writes a disk:
// the half-restored VM is removed, not left looking like a VM.
func TestRestoreToNewVMCancelled(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20})
	res := r.backup(t, r.vmRef(t, "vm01"))
	target := r.c.RestoreTarget(nil)
	before := len(r.lab.VMs())
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err := restore.ToNewVM(cctx, r.store, res.Point.ID, target, restore.NewVM{Name: "vm01-cut"},
		restore.Options{Progress: func(disk int, done, total int64) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled restore: %v, want context.Canceled", err)
	}
	if _, err := target.FindVM(ctx, "vm01-cut"); err == nil {
		t.Error("the cancelled restore's VM is still in vCenter")
	}
	if n := len(r.lab.VMs()); n != before {
		t.Errorf("%d lab VMs, want %d", n, before)
	}
}
