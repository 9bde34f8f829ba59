package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

func startLab(t *testing.T, opts Options) (*Lab, *govmomi.Client) {
	t.Helper()
	ctx := context.Background()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	c, err := govmomi.NewClient(ctx, l.URL(), true)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

func findVM(t *testing.T, c *govmomi.Client, name string) *object.VirtualMachine {
	t.Helper()
	vm, err := find.NewFinder(c.Client).VirtualMachine(context.Background(), "*/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func setCBT(t *testing.T, vm *object.VirtualMachine, on bool) {
	t.Helper()
	ctx := context.Background()
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func takeSnapshot(t *testing.T, vm *object.VirtualMachine, quiesce bool) (types.ManagedObjectReference, []*types.VirtualDisk) {
	t.Helper()
	ctx := context.Background()
	task, err := vm.CreateSnapshot(ctx, "test", "", false, quiesce)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := info.Result.(types.ManagedObjectReference)
	var snap mo.VirtualMachineSnapshot
	if err := vm.Properties(ctx, ref, []string{"config.hardware.device"}, &snap); err != nil {
		t.Fatal(err)
	}
	var disks []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(snap.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	return ref, disks
}

func removeSnapshot(t *testing.T, c *govmomi.Client, ref types.ManagedObjectReference) {
	t.Helper()
	ctx := context.Background()
	res, err := methods.RemoveSnapshot_Task(ctx, c.Client, &types.RemoveSnapshot_Task{This: ref})
	if err == nil {
		err = object.NewTask(c.Client, res.Returnval).Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// changed pages through QueryChangedDiskAreas as a backup does.
func changed(ctx context.Context, vm *object.VirtualMachine, snap types.ManagedObjectReference, d *types.VirtualDisk, changeID string) ([]diskmap.Area, int, error) {
	var out []diskmap.Area
	calls := 0
	for off := int64(0); off < d.CapacityInBytes; {
		info, err := vm.QueryChangedDiskAreas(ctx, &snap, nil, d, off)
		if changeID != "*" || err != nil {
			req := types.QueryChangedDiskAreas{This: vm.Reference(), Snapshot: &snap, DeviceKey: d.Key, StartOffset: off, ChangeId: changeID}
			res, err := methods.QueryChangedDiskAreas(ctx, vm.Client(), &req)
			if err != nil {
				return nil, calls, err
			}
			info = res.Returnval
		}
		calls++
		for _, a := range info.ChangedArea {
			out = append(out, diskmap.Area{Offset: a.Start, Length: a.Length})
		}
		if info.Length <= 0 {
			return nil, calls, fmt.Errorf("reply covers nothing at %d", off)
		}
		off = info.StartOffset + info.Length
	}
	return out, calls, nil
}

func sum(t *testing.T, r io.ReaderAt, size int64) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestLabSnapshotsAndCBT(t *testing.T) {
	ctx := context.Background()
	l, c := startLab(t, Options{VMs: 2, DiskSize: 64 << 20, ChangedAreaBytes: 1 << 20})
	vms := l.VMs()
	if len(vms) != 2 || len(vms[0].Disks) != 2 {
		t.Fatalf("VMs: %+v", vms)
	}
	live, err := l.Disk("vm01", 0)
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 8)
	if _, err := live.ReadAt(sig, 512); err != nil || string(sig) != "EFI PART" {
		t.Fatalf("disk 0 has no GPT: %q %v", sig, err)
	}
	vm := findVM(t, c, "vm01")

	// CBT off: no changed areas.
	s0, disks := takeSnapshot(t, vm, false)
	if _, _, err := changed(ctx, vm, s0, disks[0], "*"); err == nil {
		t.Fatal("QueryChangedDiskAreas answered with CBT off")
	}
	removeSnapshot(t, c, s0)

	setCBT(t, vm, true)
	before := sum(t, live, live.Size())
	s1, disks := takeSnapshot(t, vm, true)
	id1 := disks[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId
	id1b := disks[1].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId
	if strings.Split(id1, "/")[0] == strings.Split(id1b, "/")[0] {
		t.Fatalf("two disks share a change ID UUID: %s %s", id1, id1b)
	}
	if !strings.HasSuffix(id1, "/1") {
		t.Fatalf("change ID %q", id1)
	}
	alloc, calls, err := changed(ctx, vm, s1, disks[0], "*")
	if err != nil {
		t.Fatal(err)
	}
	_, d0, _ := l.lookup("vm01", 0)
	want := d0.allocated(0)
	if fmt.Sprint(diskmap.Normalize(alloc, 64<<20)) != fmt.Sprint(want) || calls < 2 {
		t.Fatalf("allocated areas in %d calls: %d areas, want %d", calls, len(alloc), len(want))
	}

	// A write after the snapshot changes the live disk, not the snapshot's.
	payload := bytes.Repeat([]byte("bulwark!"), 10000) // 80000 bytes
	if err := l.Write("vm01", 0, 40<<20+100, payload); err != nil {
		t.Fatal(err)
	}
	frozen := &Reader{d: d0, layer: 0}
	if sum(t, frozen, frozen.Size()) != before {
		t.Fatal("the snapshot's disk changed after a guest write")
	}
	got := make([]byte, len(payload))
	if _, err := live.ReadAt(got, 40<<20+100); err != nil || !bytes.Equal(got, payload) {
		t.Fatal("the live disk lacks the write")
	}
	removeSnapshot(t, c, s1)
	after := sum(t, live, live.Size())
	if after == before {
		t.Fatal("the write was lost when the snapshot was removed")
	}

	s2, disks := takeSnapshot(t, vm, false)
	if id2 := disks[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId; !strings.HasSuffix(id2, "/2") {
		t.Fatalf("second change ID %q", id2)
	}
	areas, _, err := changed(ctx, vm, s2, disks[0], id1)
	if err != nil {
		t.Fatal(err)
	}
	wantArea := diskmap.Area{Offset: 40 << 20, Length: 128 << 10} // the write, in 64 KiB blocks
	if len(areas) != 1 || areas[0] != wantArea {
		t.Fatalf("changed since %s: %v, want %v", id1, areas, wantArea)
	}
	if areas, _, err := changed(ctx, vm, s2, disks[1], id1b); err != nil || len(areas) != 0 {
		t.Fatalf("other disk: %v %v", areas, err)
	}
	if _, _, err := changed(ctx, vm, s2, disks[0], "52 00 11/7"); err == nil {
		t.Fatal("an unknown change ID was answered")
	}
	if err := l.ResetCBT("vm01"); err != nil {
		t.Fatal(err)
	}
	removeSnapshot(t, c, s2)
	s3, disks := takeSnapshot(t, vm, false)
	if _, _, err := changed(ctx, vm, s3, disks[0], id1); err == nil {
		t.Fatal("a change ID from before the reset was answered")
	}
	if id := disks[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId; strings.Split(id, "/")[0] == strings.Split(id1, "/")[0] {
		t.Fatalf("the reset kept the change ID's UUID: %s", id)
	}
	removeSnapshot(t, c, s3)
	if p := l.PeakSnapshots(); p["LocalDS_0"] != 1 {
		t.Fatalf("peak snapshots %v", p)
	}
}

func TestLabFaults(t *testing.T) {
	ctx := context.Background()
	l, c := startLab(t, Options{VMs: 1, DiskSize: 64 << 20})
	vm := findVM(t, c, "vm01")

	l.FailSnapshots("vm01", 1)
	task, err := vm.CreateSnapshot(ctx, "x", "", false, false)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "FileLocked") {
		t.Fatalf("injected snapshot failure: %v", err)
	}
	l.FailQuiesce("vm01", 1)
	task, err = vm.CreateSnapshot(ctx, "x", "", false, true)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "ApplicationQuiesceFault") {
		t.Fatalf("injected quiesce failure: %v", err)
	}
	s, _ := takeSnapshot(t, vm, false) // without quiescing it works
	removeSnapshot(t, c, s)
	if n := len(snapshotList(t, vm)); n != 0 {
		t.Fatalf("%d snapshots left", n)
	}

	l.DropSessionsOn("PowerOffVM_Task", 1)
	if _, err := vm.PowerOff(ctx); err == nil || !strings.Contains(err.Error(), "NotAuthenticated") {
		t.Fatalf("dropped session: %v", err)
	}
	if _, err := vm.PowerState(ctx); err == nil {
		t.Fatal("the session outlived the drop")
	}
	if err := c.Login(ctx, l.URL().User); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.PowerState(ctx); err != nil {
		t.Fatalf("after a new login: %v", err)
	}
}

func snapshotList(t *testing.T, vm *object.VirtualMachine) []types.ManagedObjectReference {
	var m mo.VirtualMachine
	if err := vm.Properties(context.Background(), vm.Reference(), []string{"rootSnapshot"}, &m); err != nil {
		t.Fatal(err)
	}
	return m.RootSnapshot
}

func TestLabHostTickets(t *testing.T) {
	ctx := context.Background()
	l, c := startLab(t, Options{VMs: 1, DiskSize: 64 << 20})
	vm := findVM(t, c, "vm01")
	setCBT(t, vm, true)
	s, disks := takeSnapshot(t, vm, false)
	defer removeSnapshot(t, c, s)
	b := disks[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	var dsPath object.DatastorePath
	dsPath.FromString(b.FileName)
	flat := strings.TrimSuffix(dsPath.Path, ".vmdk") + "-flat.vmdk"

	hostRef, err := vm.HostSystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ips, err := hostRef.ManagementIPs(ctx)
	if err != nil || len(ips) != 1 {
		t.Fatalf("management IPs %v %v", ips, err)
	}
	u := &url.URL{Scheme: "https", Host: ips[0].String(), Path: "/folder/" + flat, RawQuery: url.Values{"dsName": {dsPath.Datastore}}.Encode()}
	sm := session.NewManager(c.Client)
	tk, err := sm.AcquireGenericServiceTicket(ctx, &types.SessionManagerHttpServiceRequestSpec{Url: u.String(), Method: string(types.SessionManagerHttpServiceRequestSpecMethodHttpGet)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tk.HostName, ips[0].String()+":") || tk.SslThumbprint == "" {
		t.Fatalf("ticket %+v", tk)
	}
	u.Host = tk.HostName
	c.Client.SetThumbprint(u.Host, tk.SslThumbprint)
	get := func(cookie string, rng string) (*http.Response, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "vmware_cgi_ticket", Value: cookie})
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		var body []byte
		var res *http.Response
		err := c.Client.Do(ctx, req, func(r *http.Response) error {
			res = r
			var err error
			body, err = io.ReadAll(r.Body)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}
	if res, _ := get("", ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no ticket: %s", res.Status)
	}
	res, body := get(tk.Id, "bytes=512-519")
	if res.StatusCode != http.StatusPartialContent || string(body) != "EFI PART" {
		t.Fatalf("ranged GET: %s %q", res.Status, body)
	}
	// The ticket is for one host: another host's endpoint refuses it.
	for _, h := range l.hosts {
		if h.addr == tk.HostName {
			continue
		}
		u.Host = h.addr
		c.Client.SetThumbprint(h.addr, h.thumbprint)
		if res, _ := get(tk.Id, "bytes=0-1"); res.StatusCode != http.StatusForbidden {
			t.Fatalf("ticket used on another host: %s", res.Status)
		}
		break
	}
	if _, err := sm.AcquireGenericServiceTicket(ctx, &types.SessionManagerHttpServiceRequestSpec{Url: "https://10.9.9.9/folder/x", Method: "httpGet"}); err == nil {
		t.Fatal("a ticket for an unknown host was issued")
	}
}
