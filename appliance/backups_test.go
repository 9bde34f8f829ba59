package appliance_test

import (
	"context"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/vspheretest"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// rig is a lab, a store, and a job runner backing up the one into the
// other, as the appliance wires them.
type rig struct {
	lab    *lab.Lab
	store  *chunkstore.Store
	runner *jobs.Runner
	state  *jobs.State
}

func newRig(t testing.TB, opts lab.Options, concurrency, perDatastore int) *rig {
	t.Helper()
	v := vspheretest.New(t, opts)
	st, err := jobs.OpenState(t.TempDir(), v.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	// The runner asks for the job's vCenter by name; Backups has only one.
	u := v.Lab.URL()
	u.User = nil
	if err := st.PutVCenter(jobs.VCenter{Name: "lab", URL: u.String(), Username: v.Lab.Username(),
		PasswordEnv: "UNUSED", Thumbprint: v.Lab.Thumbprint()}); err != nil {
		t.Fatal(err)
	}
	b := &appliance.Backups{VCenter: v.Client, Store: v.Store, Log: v.Log}
	r, err := jobs.NewRunner(jobs.RunnerConfig{Inventory: b, Backuper: b, Retainer: b, State: st,
		Concurrency: concurrency, SnapshotsPerDatastore: perDatastore, Log: v.Log})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{lab: v.Lab, store: v.Store, runner: r, state: st}
}

// TestJobLimits runs a job over 20 VMs on 3 datastores: the lab counts the
// snapshots that exist at once on each datastore, and the limit of 2 holds
// while backups do run side by side.
func TestJobLimits(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 20, Datastores: 3, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20}, 8, 2)
	job := jobs.Job{Name: "all", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily", Enabled: true,
		Retention: retention.Policy{Last: 1}}
	if err := r.state.PutJob(job); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		run, err := r.runner.RunJob(ctx, job, "manual", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if run.Result != jobs.ResultSuccess || len(run.VMs) != 20 {
			t.Fatalf("round %d: run %s with %d VMs: %s", round, run.Result, len(run.VMs), run.Error)
		}
		for _, v := range run.VMs {
			if v.Result != jobs.ResultSuccess || v.Point == "" || v.Consistency != vsphere.Quiesced {
				t.Fatalf("round %d: VM %s: %+v", round, v.Name, v)
			}
			if round == 0 && len(v.FullReads) != 1 || round == 1 && len(v.FullReads) != 0 {
				t.Fatalf("round %d: VM %s full reads %v", round, v.Name, v.FullReads)
			}
		}
	}
	peak := r.lab.PeakSnapshots()
	if len(peak) != 3 {
		t.Fatalf("snapshots on %d datastores: %v", len(peak), peak)
	}
	most := 0
	for ds, n := range peak {
		if n > 2 {
			t.Errorf("%d snapshots at once on %s, the limit is 2", n, ds)
		}
		most = max(most, n)
	}
	if most < 2 {
		t.Errorf("no datastore ever had 2 snapshots at once (%v): the backups did not run side by side", peak)
	}
	if n := r.lab.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left", n)
	}
	// Retention kept the newest point of each VM.
	points, err := r.store.Points(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 20 {
		t.Fatalf("%d points after retention keeping 1 of each of 20 VMs", len(points))
	}
	runs, err := r.state.Runs("all", 10)
	if err != nil || len(runs) != 2 {
		t.Fatalf("history: %d runs, %v", len(runs), err)
	}
	t.Logf("peak snapshots per datastore: %v", peak)
}

// TestJobCancel cancels a running job: its snapshots are removed and no
// point is made.
func TestJobCancel(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, lab.Options{VMs: 4, Datastores: 1, Disks: 1, DiskSize: 64 << 20, FileBytes: 8 << 20}, 2, 2)
	job := jobs.Job{Name: "cancel-me", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily", Enabled: true}
	exec, err := r.runner.Start(ctx, job, "manual", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Cancel as soon as a snapshot exists.
	for r.lab.Snapshots() == 0 {
		select {
		case <-exec.Done():
			t.Fatal("the job ended before it was cancelled")
		case <-time.After(time.Millisecond):
		}
	}
	if !r.runner.Cancel("cancel-me") {
		t.Fatal("Cancel found no run")
	}
	run, err := exec.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != jobs.ResultCancelled {
		t.Fatalf("run %s", run.Result)
	}
	points, _ := r.store.Points(ctx)
	cancelled := 0
	for _, v := range run.VMs {
		if v.Result == jobs.ResultCancelled {
			cancelled++
		}
	}
	if cancelled == 0 || len(points) != 4-cancelled {
		t.Fatalf("%d VMs cancelled, %d points", cancelled, len(points))
	}
	if n := r.lab.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left after the cancel", n)
	}
}
