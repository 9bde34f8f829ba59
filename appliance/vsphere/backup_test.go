package vsphere_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/vspheretest"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// rig is a lab, a client connected to it and a store.
type rig struct {
	lab   *lab.Lab
	c     *vsphere.Client
	store *chunkstore.Store
}

func newRig(t *testing.T, opts lab.Options) *rig {
	t.Helper()
	r := vspheretest.New(t, opts)
	return &rig{lab: r.Lab, c: r.Client, store: r.Store}
}

func (r *rig) vmRef(t *testing.T, name string) types.ManagedObjectReference {
	t.Helper()
	vm, err := r.c.FindVM(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return types.ManagedObjectReference{Type: "VirtualMachine", Value: vm.MoRef}
}

// snapshots lists the names of a VM's snapshots.
func (r *rig) snapshots(t *testing.T, ref types.ManagedObjectReference) []string {
	t.Helper()
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(r.c.VIM()).RetrieveOne(context.Background(), ref, []string{"snapshot"}, &vm); err != nil {
		t.Fatal(err)
	}
	var names []string
	if vm.Snapshot != nil {
		var walk func([]types.VirtualMachineSnapshotTree)
		walk = func(list []types.VirtualMachineSnapshotTree) {
			for _, s := range list {
				names = append(names, s.Name)
				walk(s.ChildSnapshotList)
			}
		}
		walk(vm.Snapshot.RootSnapshotList)
	}
	return names
}

func (r *rig) points(t *testing.T) []*chunkstore.Point {
	t.Helper()
	ps, err := r.store.Points(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func hashReader(t *testing.T, ra io.ReaderAt, size int64) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(ra, 0, size)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// guest writes into the lab's disks and remembers what it wrote.
type guest struct {
	t     *testing.T
	lab   *lab.Lab
	vm    string
	rng   *rand.Rand
	mu    sync.Mutex
	wrote map[int][]diskmap.Area // per disk, since the last take
}

func (g *guest) write(disk int, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.lab.Disk(g.vm, disk)
	if err != nil {
		g.t.Error(err)
		return
	}
	size := int64(n)
	off := g.rng.Int64N(d.Size() - size)
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(g.rng.IntN(256))
	}
	if err := g.lab.Write(g.vm, disk, off, p); err != nil {
		g.t.Error(err)
		return
	}
	g.wrote[disk] = append(g.wrote[disk], diskmap.Area{Offset: off, Length: size})
}

// take returns what was written since the last take.
func (g *guest) take() map[int][]diskmap.Area {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.wrote
	g.wrote = map[int][]diskmap.Area{}
	return w
}

// TestBackupIncrementals makes a full backup and five incrementals of a VM
// with two disks of real filesystems, with guest writes between the
// backups and during each one. Every point restores bit-exact to the disks
// as they were when its snapshot was taken, and each incremental reads no
// more than the written areas, widened to CBT's blocks and then to the
// parent's chunk boundaries.
func TestBackupIncrementals(t *testing.T) {
	ctx := context.Background()
	const cbtBlock = 64 << 10
	r := newRig(t, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20, CBTBlock: cbtBlock, ChangedAreaBytes: 256 << 10})
	ref := r.vmRef(t, "vm01")
	g := &guest{t: t, lab: r.lab, vm: "vm01", rng: rand.New(rand.NewPCG(1, 2)), wrote: map[int][]diskmap.Area{}}

	type want struct {
		sums [2][32]byte
	}
	var wants []want
	for round := 0; round < 6; round++ {
		var w want
		for i := range 2 {
			d, _ := r.lab.Disk("vm01", i)
			w.sums[i] = hashReader(t, d, d.Size())
		}
		wants = append(wants, w)
		before := g.take()
		// Writes during the backup land after its snapshot: they belong to
		// the next point, and must not leak into this one.
		var once sync.Once
		res, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{Job: "nightly", Progress: func(disk int, done, total int64) {
			once.Do(func() {
				for range 3 {
					g.write(0, 4096+g.rng.IntN(100000))
					g.write(1, 512+g.rng.IntN(20000))
				}
			})
		}})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if res.Consistency != vsphere.Quiesced {
			t.Errorf("round %d: consistency %q", round, res.Consistency)
		}
		if n := r.snapshots(t, ref); len(n) != 0 {
			t.Fatalf("round %d: snapshots left: %v", round, n)
		}
		if round == 0 {
			if len(res.FullReads) != 2 {
				t.Fatalf("first backup: full reads %v", res.FullReads)
			}
		} else {
			if len(res.FullReads) != 0 {
				t.Fatalf("round %d: full reads %v", round, res.FullReads)
			}
			// What this backup may read: writes made before it (since the
			// last one's snapshot), which includes that one's during-writes.
			parent := *res.Point.Parent
			var bound int64
			for i := range 2 {
				pr, err := r.store.OpenDisk(ctx, parent, i)
				if err != nil {
					t.Fatal(err)
				}
				var aligned []diskmap.Area
				for _, a := range before[i] {
					start := a.Offset - a.Offset%cbtBlock
					end := (a.End() + cbtBlock - 1) / cbtBlock * cbtBlock
					aligned = append(aligned, diskmap.Area{Offset: start, Length: end - start})
				}
				for _, a := range diskmap.Widen(pr.Extents(), aligned, pr.Size(), int64(r.store.Params().ZeroBlock)) {
					bound += a.Length
				}
			}
			if res.Point.Stats.BytesRead > bound || res.BytesTransferred > bound || res.BytesTransferred == 0 {
				t.Fatalf("round %d: read %d (transport %d), more than the %d bytes of widened changes", round,
					res.Point.Stats.BytesRead, res.BytesTransferred, bound)
			}
			t.Logf("round %d: read %d bytes of at most %d", round, res.BytesTransferred, bound)
		}
		// Between backups; the writes during this backup stay in g.wrote
		// with these, as what the next backup may read.
		for range 5 {
			g.write(0, 1+g.rng.IntN(300000))
			g.write(1, 1+g.rng.IntN(50000))
		}
	}

	points := r.points(t)
	if len(points) != 6 {
		t.Fatalf("%d points", len(points))
	}
	for i, p := range sortByTime(points) {
		for d := range 2 {
			dr, err := r.store.OpenDisk(ctx, p.ID, d)
			if err != nil {
				t.Fatal(err)
			}
			if hashReader(t, dr, dr.Size()) != wants[i].sums[d] {
				t.Fatalf("point %d disk %d does not restore to the disk at its snapshot", i, d)
			}
		}
		p, err := r.store.LoadPoint(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		var config types.VirtualMachineConfigInfo
		if err := types.NewJSONDecoder(bytes.NewReader(p.VMConfig)).Decode(&config); err != nil {
			t.Fatalf("point %d: VM configuration: %v", i, err)
		}
		if disks := object.VirtualDeviceList(config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)); len(disks) != 2 || config.Name != "vm01" {
			t.Fatalf("point %d: VM configuration of %q with %d disks", i, config.Name, len(disks))
		}
		if p.Job != "nightly" || p.Source.VMName != "vm01" || p.Consistency != vsphere.Quiesced {
			t.Fatalf("point %d: job %q, config %d bytes, consistency %q, source %+v", i, p.Job, len(p.VMConfig), p.Consistency, p.Source)
		}
	}
}

func sortByTime(ps []*chunkstore.Point) []*chunkstore.Point {
	out := append([]*chunkstore.Point(nil), ps...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Time.Before(out[i].Time) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBackupFullReads: a CBT reset, a grown disk and an added disk each
// lead to a full read of the disks concerned, recorded in the point, and
// the points restore bit-exact.
func TestBackupFullReads(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20})
	ref := r.vmRef(t, "vm01")
	vm := object.NewVirtualMachine(r.c.VIM(), ref)
	backup := func(what string, want ...string) {
		t.Helper()
		res, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(res.FullReads) != len(want) {
			t.Fatalf("%s: full reads %q, want %q", what, res.FullReads, want)
		}
		for i, w := range want {
			if !strings.Contains(res.FullReads[i], w) {
				t.Fatalf("%s: full reads %q, want %q", what, res.FullReads, want)
			}
		}
		for i := range res.Point.Disks {
			d, _ := r.lab.Disk("vm01", i)
			dr, err := r.store.OpenDisk(ctx, res.Point.ID, i)
			if err != nil {
				t.Fatal(err)
			}
			if dr.Size() != d.Size() || hashReader(t, dr, dr.Size()) != hashReader(t, d, d.Size()) {
				t.Fatalf("%s: disk %d does not restore bit-exact", what, i)
			}
		}
	}
	backup("first", "disk 0: first backup")
	if err := r.lab.ResetCBT("vm01"); err != nil {
		t.Fatal(err)
	}
	if err := r.lab.Write("vm01", 0, 12345, []byte("after the reset")); err != nil {
		t.Fatal(err)
	}
	backup("after a CBT reset", "disk 0: changed block tracking was reset")
	backup("after the full read")

	// Grow the disk and add a second one.
	devices, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	disk := devices.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
	disk.CapacityInBytes += 16 << 20
	disk.CapacityInKB = disk.CapacityInBytes / 1024
	if err := vm.EditDevice(ctx, disk); err != nil {
		t.Fatal(err)
	}
	ctrl, err := devices.FindDiskController("scsi")
	if err != nil {
		t.Fatal(err)
	}
	added := devices.CreateDisk(ctrl, types.ManagedObjectReference{}, "[LocalDS_0] vm01/added.vmdk")
	added.CapacityInKB = 64 << 10
	if err := vm.AddDevice(ctx, added); err != nil {
		t.Fatal(err)
	}
	if err := r.lab.Write("vm01", 1, 4096, []byte("on the new disk")); err != nil {
		t.Fatal(err)
	}
	backup("after growing disk 0 and adding disk 1", "disk 0: disk resized", "disk 1: disk is new")
	backup("after the full reads")
}

// TestBackupFailures: a failed snapshot, a failed quiesce, sessions that
// drop in the middle and a cancelled backup leave no snapshot behind and no
// partial point.
func TestBackupFailures(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20})
	ref := r.vmRef(t, "vm01")
	check := func(what string, points int) {
		t.Helper()
		if n := r.snapshots(t, ref); len(n) != 0 {
			t.Fatalf("%s: snapshots left: %v", what, n)
		}
		if n := len(r.points(t)); n != points {
			t.Fatalf("%s: %d points, want %d", what, n, points)
		}
	}

	r.lab.FailSnapshots("vm01", 1)
	if _, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{}); err == nil || !strings.Contains(err.Error(), "FileLocked") {
		t.Fatalf("failed snapshot: %v", err)
	}
	check("failed snapshot", 0)

	r.lab.FailQuiesce("vm01", 1)
	res, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Consistency != vsphere.CrashConsistent || !strings.Contains(strings.Join(res.Warnings, "\n"), "quiescing failed") {
		t.Fatalf("failed quiesce: %q %v", res.Consistency, res.Warnings)
	}
	if p, _ := r.store.LoadPoint(ctx, res.Point.ID); p.Consistency != vsphere.CrashConsistent {
		t.Fatalf("the point says %q", p.Consistency)
	}
	check("failed quiesce", 1)

	// Sessions end in the middle of the backup and as the snapshot is
	// removed: the client logs in again and carries on.
	for i, method := range []string{"QueryChangedDiskAreas", "RemoveSnapshot_Task"} {
		r.lab.DropSessionsOn(method, 1)
		if _, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{}); err != nil {
			t.Fatalf("session dropped on %s: %v", method, err)
		}
		check("session dropped on "+method, 2+i)
	}

	cctx, cancel := context.WithCancel(ctx)
	if err := r.lab.Write("vm01", 0, 1<<20, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_, err = r.c.BackupVM(cctx, r.store, ref, vsphere.BackupOptions{Progress: func(int, int64, int64) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v", err)
	}
	check("cancelled backup", 3)
}

// TestBackupHotAdd reads the disks by attaching them to the appliance VM.
func TestBackupHotAdd(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20, ApplianceVM: true})
	ref := r.vmRef(t, "vm01")
	appliance := r.vmRef(t, lab.ApplianceVMName)
	var attached []string
	resolve := func(ctx context.Context, d *types.VirtualDisk, writable bool) (vsphere.Device, error) {
		name := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName
		attached = append(attached, name)
		if writable {
			t.Errorf("a backup attached %s for writing", name)
		}
		return r.lab.Attach(name, writable)
	}
	res, err := r.c.BackupVM(ctx, r.store, ref, vsphere.BackupOptions{Transport: r.c.HotAdd(appliance, resolve)})
	if err != nil {
		t.Fatal(err)
	}
	if len(attached) != 2 || res.BytesTransferred == 0 {
		t.Fatalf("attached %v, read %d", attached, res.BytesTransferred)
	}
	for i := range 2 {
		d, _ := r.lab.Disk("vm01", i)
		dr, err := r.store.OpenDisk(ctx, res.Point.ID, i)
		if err != nil {
			t.Fatal(err)
		}
		if hashReader(t, dr, dr.Size()) != hashReader(t, d, d.Size()) {
			t.Fatalf("disk %d read by hot-add does not restore bit-exact", i)
		}
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(r.c.VIM()).RetrieveOne(ctx, appliance, []string{"config.hardware.device"}, &vm); err != nil {
		t.Fatal(err)
	}
	if disks := object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)); len(disks) != 0 {
		t.Fatalf("the appliance VM kept %d hot-added disks", len(disks))
	}
	if n := r.snapshots(t, ref); len(n) != 0 {
		t.Fatalf("snapshots left: %v", n)
	}
	// A live disk cannot be hot-added: the lab refuses, as a locked VMDK does.
	if _, err := r.lab.OpenAttached(res.Point.Disks[0].Label[strings.Index(res.Point.Disks[0].Label, " ")+1:]); err == nil {
		t.Fatal("the lab let a live disk be opened as hot-added")
	}
}
