package appliance_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/jobs"
	"github.com/bulwarkbackup/bulwark/restore"
)

// TestRestoreEndpoints restores through the API, as tasks: a rehearsal
// that boots and leaves nothing, a new VM whose disk matches the
// original's, a disk to a datastore file, and a restore over the original
// that an operator may not start and that refuses a running VM.
func TestRestoreEndpoints(t *testing.T) {
	rig := newApplianceRig(t, &lab.Options{VMs: 1, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20})
	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", jobs.Job{Name: "all",
		Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily", Enabled: true}, nil)
	var started api.RunStarted
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/all/run", nil, &started)
	if run := admin.waitRun(started.RunID); run.Result != jobs.ResultSuccess {
		t.Fatalf("backup: %s: %s", run.Result, run.Error)
	}
	points := e2eListPoints(t, admin, "")
	if len(points) != 1 {
		t.Fatalf("%d points, want 1", len(points))
	}
	point := api.Prefix + "/points/" + points[0].ID
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/users", api.NewUser{Name: "olga", Password: "a long operator password", Role: auth.RoleOperator}, nil)
	op := newE2EClient(rig)
	op.login("olga", "a long operator password")

	run := func(c *e2eClient, path string, in any) tasks.Task {
		t.Helper()
		var tk tasks.Task
		c.ok(http.StatusAccepted, http.MethodPost, path, in, &tk)
		return c.waitTask(tk.ID)
	}
	vms := len(rig.lab.VMs())
	tk := run(op, point+"/rehearse", api.RehearsalRequest{TimeoutSeconds: 60})
	var reh restore.Rehearsal
	if err := json.Unmarshal(tk.Result, &reh); tk.State != tasks.StateSucceeded || err != nil || !reh.Booted {
		t.Fatalf("rehearsal: %s %s %s (%v)", tk.State, tk.Error, tk.Result, err)
	}
	if n := len(rig.lab.VMs()); n != vms {
		t.Errorf("%d lab VMs after the rehearsal, want %d", n, vms)
	}

	tk = run(op, point+"/restore", api.VMRestoreRequest{NewVM: restore.NewVM{Name: "vm01-api", Folder: "/DC0/vm/test"}})
	if tk.State != tasks.StateSucceeded {
		t.Fatalf("restore to a new VM: %s: %s", tk.State, tk.Error)
	}
	if a, b := labDiskSum(t, rig.lab, "vm01", 0), labDiskSum(t, rig.lab, "vm01-api", 0); a != b {
		t.Error("the restored VM's disk differs from the original's")
	}

	tk = run(op, point+"/restore-disk", api.DiskRestoreRequest{DatastorePath: "[LocalDS_0] api/disk0.vmdk"})
	if tk.State != tasks.StateSucceeded {
		t.Fatalf("restore of a disk to a datastore: %s: %s", tk.State, tk.Error)
	}
	f, err := rig.lab.DatastoreFile("[LocalDS_0] api/disk0-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if sumOf(t, f) != labDiskSum(t, rig.lab, "vm01", 0) {
		t.Error("the restored disk file differs from the original disk")
	}

	op.refused(http.StatusForbidden, http.MethodPost, point+"/restore", api.VMRestoreRequest{OverOriginal: true}, "admin")
	op.refused(http.StatusBadRequest, http.MethodPost, point+"/restore", api.VMRestoreRequest{}, "name")
	op.refused(http.StatusBadRequest, http.MethodPost, point+"/restore-disk", api.DiskRestoreRequest{Disk: 7, VM: "vm01"}, "disk")
	tk = run(admin, point+"/restore", api.VMRestoreRequest{OverOriginal: true})
	if tk.State != tasks.StateFailed || !strings.Contains(tk.Error, "powered on") {
		t.Errorf("restore over a running VM: %s: %q, want a failure saying it is powered on", tk.State, tk.Error)
	}
}

func labDiskSum(t *testing.T, l *lab.Lab, vm string, disk int) [32]byte {
	t.Helper()
	r, err := l.Disk(vm, disk)
	if err != nil {
		t.Fatal(err)
	}
	return sumOf(t, io.NewSectionReader(r, 0, r.Size()))
}

func sumOf(t *testing.T, r io.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
