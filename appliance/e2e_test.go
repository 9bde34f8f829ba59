package appliance_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/soap"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// e2eWait bounds how long the end-to-end tests wait for a run, a task or an
// event. It is generous: it only says how long a broken appliance may hang a
// test, never how fast a working one must be.
const e2eWait = 2 * time.Minute

// TestEndToEnd drives the appliance as an operator does, over its HTTPS API
// only: add the lab as a vCenter, browse it, define a job, run it while
// watching the event stream, restart the appliance, run an incremental, and
// look after the store.
func TestEndToEnd(t *testing.T) {
	began := time.Now()
	rig := startApplianceRig(t, rigOptions{Lab: &lab.Options{VMs: 3, Disks: 1, DiskSize: 128 << 20}, LabNotConfigured: true})
	l := rig.lab
	t.Logf("lab and appliance started in %v", time.Since(began).Round(time.Millisecond))

	// Health needs no credentials; the API does.
	anon := newE2EClient(rig)
	var health api.Health
	anon.ok(http.StatusOK, http.MethodGet, "/healthz", nil, &health)
	if health.Status != "ok" {
		t.Fatalf("/healthz: %+v", health)
	}
	anon.refused(http.StatusUnauthorized, http.MethodGet, api.Prefix+"/jobs", nil)
	anon.refused(http.StatusUnauthorized, http.MethodGet, "/metrics", nil)

	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)

	// The lab is not in the configuration: there is no vCenter yet.
	var vcs []api.VCenterView
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vcenters", nil, &vcs)
	if len(vcs) != 0 {
		t.Fatalf("vCenters before any was added: %+v", vcs)
	}

	// A wrong thumbprint is refused, and the error says what the vCenter
	// presented, so that the operator can compare.
	add := rig.labVCenter("lab")
	wrong := add
	wrong.Thumbprint = strings.TrimSuffix(strings.Repeat("0A:", 20), ":")
	e := admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/vcenters", wrong, "thumbprint")
	if !strings.Contains(e2eHex(e.Error), e2eHex(l.Thumbprint())) {
		t.Errorf("the wrong-thumbprint error does not show the lab's SHA-1 fingerprint %s: %s", l.Thumbprint(), e.Error)
	}
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vcenters", nil, &vcs)
	if len(vcs) != 0 {
		t.Fatalf("a vCenter refused for its thumbprint was stored: %+v", vcs)
	}

	var added api.VCenterView
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/vcenters", add, &added)
	if added.Name != "lab" || added.PasswordSource != "sealed" || added.FromConfig || added.Thumbprint == "" {
		t.Fatalf("added vCenter: %+v", added)
	}
	for _, path := range []string{api.Prefix + "/vcenters", api.Prefix + "/vcenters/lab"} {
		if raw := admin.raw(http.MethodGet, path); strings.Contains(raw, add.Password) {
			t.Fatalf("GET %s shows the vCenter's password: %s", path, raw)
		}
	}
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vcenters", nil, &vcs)
	if len(vcs) != 1 || vcs[0].PasswordSource != "sealed" || vcs[0].URL != add.URL || vcs[0].Username != add.Username {
		t.Fatalf("vCenters: %+v", vcs)
	}
	admin.refused(http.StatusConflict, http.MethodPost, api.Prefix+"/vcenters", add, "replace")

	var tested api.VCenterTest
	admin.ok(http.StatusOK, http.MethodPost, api.Prefix+"/vcenters/lab/test", nil, &tested)
	if tested.Name != "lab" || tested.InstanceUUID == "" {
		t.Fatalf("vCenter test: %+v", tested)
	}

	var inv vsphere.Inventory
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vcenters/lab/inventory", nil, &inv)
	var labVMs, invVMs []string
	for _, v := range l.VMs() {
		labVMs = append(labVMs, v.Name)
	}
	for _, v := range inv.VMs {
		invVMs = append(invVMs, v.Name)
	}
	slices.Sort(invVMs)
	if !slices.Equal(invVMs, labVMs) {
		t.Fatalf("inventory VMs %v, the lab has %v", invVMs, labVMs)
	}
	if !slices.ContainsFunc(inv.Folders, func(f vsphere.Folder) bool { return f.Path == "/DC0/vm/prod" && f.Kind == "vm" }) ||
		len(inv.Clusters) == 0 || len(inv.Hosts) == 0 || len(inv.Datastores) == 0 || len(inv.Networks) == 0 {
		t.Fatalf("inventory lacks folders, clusters, hosts, datastores or networks: %+v", inv)
	}

	job := jobs.Job{Name: "nightly", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "0 2 * * *", Enabled: true}
	var jv api.JobView
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", job, &jv)
	if jv.Name != job.Name || !jv.Enabled || jv.NextRun.IsZero() || jv.Running || jv.LastRun != nil {
		t.Fatalf("created job: %+v", jv)
	}

	// The first run, followed on the event stream, opened before the run
	// starts so that it sees all of it.
	events := e2eStream(t, rig.admin())
	var started api.RunStarted
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/nightly/run", nil, &started)
	if started.Job != "nightly" || started.RunID == "" || started.TaskID == "" {
		t.Fatalf("run started: %+v", started)
	}
	progress := map[string]bool{}
	vmEvents := map[string][]string{}
	var taskStates []tasks.State
	var ended *jobs.Run
	deadline := time.Now().Add(e2eWait)
	for ended == nil {
		ev := e2eNext(t, events, deadline)
		switch ev.Type {
		case api.EventJobRun:
			var d api.JobRunEvent
			e2eDecode(t, ev, &d)
			if d.RunID != started.RunID {
				continue
			}
			if d.TaskID != started.TaskID {
				t.Errorf("job-run event %s names task %q, the run's task is %s", d.Kind, d.TaskID, started.TaskID)
			}
			if d.VM != "" {
				vmEvents[d.VM] = append(vmEvents[d.VM], d.Kind)
			}
			if d.Kind == jobs.EventRunEnded {
				ended = d.Run
			}
		case api.EventVMProgress:
			var d api.VMProgressEvent
			e2eDecode(t, ev, &d)
			if d.Done < 0 || d.Done > d.Total || d.Total <= 0 {
				t.Errorf("vm-progress event %+v", d)
			}
			progress[d.VM] = true
		case tasks.EventType:
			var tk tasks.Task
			e2eDecode(t, ev, &tk)
			if tk.ID == started.TaskID {
				if tk.Kind != "job-run" || tk.Target != "nightly" {
					t.Errorf("the run's task: %+v", tk)
				}
				taskStates = append(taskStates, tk.State)
			}
		}
	}
	if ended == nil || ended.ID != started.RunID || ended.Result != jobs.ResultSuccess {
		t.Fatalf("run-ended event: %+v", ended)
	}
	for _, name := range labVMs {
		if !progress[name] {
			t.Errorf("no vm-progress event for %s", name)
		}
		if want := []string{jobs.EventQueued, jobs.EventStarted, jobs.EventFinished}; !slices.Equal(vmEvents[name], want) {
			t.Errorf("job-run events of %s: %v, want %v", name, vmEvents[name], want)
		}
	}
	if len(taskStates) == 0 || taskStates[len(taskStates)-1] != tasks.StateSucceeded {
		t.Errorf("task events of the run's task: states %v, want ending with succeeded", taskStates)
	}

	var run1 jobs.Run
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/runs/"+started.RunID, nil, &run1)
	if run1.Result != jobs.ResultSuccess || len(run1.VMs) != 3 || run1.Trigger != jobs.TriggerManual {
		t.Fatalf("run %s: %s, %d VMs: %s", run1.ID, run1.Result, len(run1.VMs), run1.Error)
	}
	for _, v := range run1.VMs {
		if v.Result != jobs.ResultSuccess || v.Point == "" || v.BytesRead <= 0 || len(v.FullReads) != 1 {
			t.Fatalf("first run, VM %s: %+v", v.Name, v)
		}
	}
	t.Logf("full run: %v; read %s", run1.Ended.Sub(run1.Started).Round(time.Millisecond), e2eBytesRead(run1))
	var task1 tasks.Task
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/tasks/"+started.TaskID, nil, &task1)
	if task1.State != tasks.StateSucceeded {
		t.Errorf("the run's task: %+v", task1)
	}

	points := e2eListPoints(t, admin, "")
	if len(points) != 3 {
		t.Fatalf("%d points after the first run, want 3", len(points))
	}
	sources := map[string]api.PointView{}
	for _, pt := range points {
		sources[pt.Source.VMName] = pt
		if pt.Job != "nightly" || pt.Parent != "" || pt.Source.Name == "" || pt.Source.VCenter != tested.InstanceUUID {
			t.Errorf("point %+v", pt)
		}
	}
	for _, name := range labVMs {
		if _, ok := sources[name]; !ok {
			t.Fatalf("no point of %s among %+v", name, points)
		}
	}
	var vms []api.VMPoints
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vms", nil, &vms)
	if len(vms) != 3 {
		t.Fatalf("%d VMs with points, want 3: %+v", len(vms), vms)
	}
	for _, v := range vms {
		if v.Points != 1 || v.Latest != sources[v.Source.VMName].ID {
			t.Errorf("VM with points %+v", v)
		}
	}
	var pv api.PointView
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/points/"+points[0].ID, nil, &pv)
	if len(pv.VMConfig) == 0 || !json.Valid(pv.VMConfig) || len(pv.Disks) != 1 ||
		pv.Disks[0].Capacity != 128<<20 || pv.Disks[0].ChangeID == "" || pv.Disks[0].DataBytes <= 0 {
		t.Fatalf("point %s: disks %+v, VM configuration of %d bytes", pv.ID, pv.Disks, len(pv.VMConfig))
	}

	// Restart: the state, the sessions and the certificate persist.
	rig.restart()
	var who api.SessionInfo
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/session", nil, &who)
	if who.User != rig.cfg.AdminUser || who.Via != "session" {
		t.Fatalf("the session from before the restart: %+v", who)
	}
	again := newE2EClient(rig)
	again.login(rig.cfg.AdminUser, adminPassword)

	// The guest writes 4 MiB into one VM's disk: the incremental reads
	// about that, and nothing of the other VMs.
	const changed = "vm02"
	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{42}).Read(data)
	if err := l.Write(changed, 0, 40<<20, data); err != nil {
		t.Fatal(err)
	}
	var started2 api.RunStarted
	// The old session's CSRF token is good after the restart too.
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/nightly/run", nil, &started2)
	run2 := again.waitRun(started2.RunID)
	if run2.Result != jobs.ResultSuccess || len(run2.VMs) != 3 {
		t.Fatalf("incremental run: %s with %d VMs: %s", run2.Result, len(run2.VMs), run2.Error)
	}
	t.Logf("incremental run: %v; read %s", run2.Ended.Sub(run2.Started).Round(time.Millisecond), e2eBytesRead(run2))
	for _, v := range run2.VMs {
		if v.Result != jobs.ResultSuccess || v.Point == "" || len(v.FullReads) != 0 {
			t.Fatalf("incremental, VM %s: %+v", v.Name, v)
		}
		switch {
		case v.Name == changed && (v.BytesRead < int64(len(data)) || v.BytesRead >= 2*int64(len(data))+1<<20):
			t.Errorf("incremental of %s, where the guest wrote %d bytes, read %d", v.Name, len(data), v.BytesRead)
		case v.Name != changed && v.BytesRead > 64<<10:
			t.Errorf("incremental of %s, which nothing wrote to, read %d bytes", v.Name, v.BytesRead)
		}
	}
	var history []jobs.Run
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/nightly/runs", nil, &history)
	if len(history) != 2 || history[0].ID != run2.ID || history[1].ID != run1.ID {
		t.Fatalf("history of %d runs: %+v", len(history), history)
	}
	points = e2eListPoints(t, admin, "")
	if len(points) != 6 {
		t.Fatalf("%d points after two runs, want 6", len(points))
	}
	for _, pt := range e2eListPoints(t, admin, sources[changed].Source.Name) {
		if pt.Source.VMName != changed {
			t.Fatalf("GET /points?vm=%s lists a point of %s", sources[changed].Source.Name, pt.Source.VMName)
		}
		if pt.ID != sources[changed].ID && pt.Parent != sources[changed].ID {
			t.Errorf("the incremental point of %s has parent %q, want %s", changed, pt.Parent, sources[changed].ID)
		}
	}

	// A full data check finds nothing wrong; so does GC find nothing to
	// break.
	report := e2eCheckStore(t, admin)
	if report.Points != 6 || report.DataPacks != report.DataPacksTotal || report.DataPacksTotal == 0 {
		t.Errorf("check report: %+v", report)
	}
	var gcTask tasks.Task
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/store/gc", api.GCRequest{}, &gcTask)
	if gcTask = admin.waitTask(gcTask.ID); gcTask.State != tasks.StateSucceeded || gcTask.Kind != "gc" {
		t.Fatalf("GC task: %+v", gcTask)
	}

	// A dry-run prune says what it would delete, and deletes nothing.
	var decisions []api.PruneDecision
	admin.ok(http.StatusOK, http.MethodPost, api.Prefix+"/store/prune", api.PruneRequest{Policy: retention.Policy{Last: 1}, Job: "nightly", DryRun: true}, &decisions)
	kept := 0
	for _, d := range decisions {
		if d.Keep {
			kept++
		}
	}
	if len(decisions) != 6 || kept != 3 {
		t.Fatalf("dry-run prune keeping the last point of each VM: %d decisions, %d kept: %+v", len(decisions), kept, decisions)
	}
	if n := len(e2eListPoints(t, admin, "")); n != 6 {
		t.Fatalf("%d points after a dry-run prune, want 6", n)
	}

	// Pin and unpin the oldest point of the changed VM, then delete it: a
	// pinned point cannot be deleted.
	victim := sources[changed].ID
	var pinned api.PointView
	admin.ok(http.StatusOK, http.MethodPost, api.Prefix+"/points/"+victim+"/pin", nil, &pinned)
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/points/"+victim, nil, &pv)
	if !pinned.Pinned || !pv.Pinned {
		t.Fatalf("pinned point: %+v", pv)
	}
	admin.refused(http.StatusConflict, http.MethodDelete, api.Prefix+"/points/"+victim, nil, "pinned")
	admin.ok(http.StatusOK, http.MethodDelete, api.Prefix+"/points/"+victim+"/pin", nil, &pinned)
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/points/"+victim, nil, &pv)
	if pinned.Pinned || pv.Pinned {
		t.Fatalf("unpinned point: %+v", pv)
	}
	admin.ok(http.StatusNoContent, http.MethodDelete, api.Prefix+"/points/"+victim, nil, nil)
	admin.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/points/"+victim, nil)
	points = e2eListPoints(t, admin, "")
	if len(points) != 5 || slices.ContainsFunc(points, func(pt api.PointView) bool { return pt.ID == victim }) {
		t.Fatalf("%d points after deleting one of 6", len(points))
	}
	// The newer point of that VM does not need its deleted parent.
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/store/gc", api.GCRequest{}, &gcTask)
	if gcTask = admin.waitTask(gcTask.ID); gcTask.State != tasks.StateSucceeded {
		t.Fatalf("GC task after a delete: %+v", gcTask)
	}
	if report := e2eCheckStore(t, admin); report.Points != 5 {
		t.Errorf("check after the delete and GC: %+v", report)
	}

	// The audit log has what was done, by whom.
	var audit []auth.AuditEntry
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/audit?limit=1000", nil, &audit)
	for _, action := range []string{"login", "add vCenter", "create job", "run job", "delete point", "check", "gc", "pin point", "unpin point"} {
		if !slices.ContainsFunc(audit, func(a auth.AuditEntry) bool {
			return a.Action == action && a.Outcome == auth.OutcomeOK && a.Actor == rig.cfg.AdminUser
		}) {
			t.Errorf("no audit entry of %q by %s", action, rig.cfg.AdminUser)
		}
	}
	if !slices.ContainsFunc(audit, func(a auth.AuditEntry) bool { return a.Action == "add vCenter" && a.Outcome == auth.OutcomeFailed }) {
		t.Errorf("the refused vCenter left no audit entry")
	}
	if raw := admin.raw(http.MethodGet, api.Prefix+"/audit?limit=1000"); strings.Contains(raw, add.Password) {
		t.Errorf("the audit log holds the vCenter's password")
	}

	// Metrics, with the session.
	metrics := admin.raw(http.MethodGet, "/metrics")
	for _, want := range []string{`bulwark_job_runs_total{job="nightly",result="success"}`, "bulwark_store_points "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if n := l.Snapshots(); n != 0 {
		t.Errorf("%d snapshots left in the lab", n)
	}
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}

// TestShutdownCancelsBackups stops the appliance, as SIGTERM does, while a
// VM's backup holds a snapshot: the snapshot is removed, the run is
// recorded cancelled, the VM gets no point, and the store stays sound.
func TestShutdownCancelsBackups(t *testing.T) {
	rig := startApplianceRig(t, rigOptions{Lab: &lab.Options{VMs: 3, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20}, LabNotConfigured: true})
	l := rig.lab
	gate := newE2EGate(t, rig)
	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/vcenters", gate.vcenter("lab"), nil)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", jobs.Job{Name: "all", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}},
		Schedule: "@daily", Enabled: true}, nil)

	// vm02's backup stops once its snapshot exists; the others go on.
	const held = "vm02"
	gate.hold(e2eMoRef(t, l, held))
	events := e2eStream(t, rig.admin())
	var started api.RunStarted
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/all/run", nil, &started)

	finished := map[string]*jobs.VMRun{}
	vmStarted := false
	deadline := time.Now().Add(e2eWait)
	for len(finished) < 2 || !vmStarted {
		ev := e2eNext(t, events, deadline)
		if ev.Type != api.EventJobRun {
			continue
		}
		var d api.JobRunEvent
		e2eDecode(t, ev, &d)
		switch {
		case d.RunID != started.RunID:
		case d.Kind == jobs.EventStarted && d.VM == held:
			vmStarted = true
		case d.Kind == jobs.EventFinished:
			if d.VM == held {
				t.Fatalf("the held VM finished: %+v", d.Result)
			}
			finished[d.VM] = d.Result
		case d.Kind == jobs.EventRunEnded:
			t.Fatalf("the run ended before the shutdown: %+v", d.Run)
		}
	}
	gate.waitHeld(t, e2eMoRef(t, l, held))
	if n := l.Snapshots(); n != 1 {
		t.Fatalf("%d snapshots in the lab while one backup is held, want 1", n)
	}
	stopped := time.Now()
	rig.stop()
	t.Logf("the appliance stopped in %v", time.Since(stopped).Round(time.Millisecond))

	// Checked before the appliance starts again: a new start sweeps up
	// leftover snapshots, which would hide one the shutdown left.
	if n := l.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left in the lab after the shutdown", n)
	}
	gate.release()
	rig.start()
	admin = newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	var run jobs.Run
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/runs/"+started.RunID, nil, &run)
	if run.Result != jobs.ResultCancelled || !strings.Contains(run.Error, "shutting down") || run.Ended.IsZero() {
		t.Fatalf("run after the shutdown: %s (%s), ended %v", run.Result, run.Error, run.Ended)
	}
	pointOf := map[string]string{}
	for _, v := range run.VMs {
		switch {
		case v.Name == held:
			if v.Result != jobs.ResultCancelled || v.Point != "" || !strings.Contains(v.Error, "shutting down") {
				t.Errorf("the VM whose backup the shutdown stopped: %+v", v)
			}
		case v.Result != jobs.ResultSuccess || v.Point == "" || finished[v.Name] == nil || finished[v.Name].Point != v.Point:
			t.Errorf("a VM that finished before the shutdown: %+v", v)
		default:
			pointOf[v.Name] = v.Point
		}
	}
	var task tasks.Task
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/tasks/"+started.TaskID, nil, &task)
	if task.State != tasks.StateCancelled {
		t.Errorf("the run's task after the shutdown: %+v", task)
	}
	points := e2eListPoints(t, admin, "")
	if len(points) != 2 {
		t.Fatalf("%d points, want those of the 2 VMs that finished", len(points))
	}
	for _, pt := range points {
		if pt.Source.VMName == held || pointOf[pt.Source.VMName] != pt.ID {
			t.Errorf("point %s of %s", pt.ID, pt.Source.VMName)
		}
	}
	e2eCheckStore(t, admin)

	// The held VM backs up fine once the appliance is back.
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/all/run", nil, &started)
	if run := admin.waitRun(started.RunID); run.Result != jobs.ResultSuccess {
		t.Fatalf("the run after the restart: %s: %s", run.Result, run.Error)
	}
	if n := l.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left in the lab", n)
	}
}

// TestJobsCRUD manages jobs over the API, with the errors an operator can
// make.
func TestJobsCRUD(t *testing.T) {
	rig := startApplianceRig(t, rigOptions{Lab: &lab.Options{VMs: 2, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20}, LabNotConfigured: true})
	l := rig.lab
	gate := newE2EGate(t, rig)
	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/vcenters", gate.vcenter("lab"), nil)

	var list []api.JobView
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs", nil, &list)
	if len(list) != 0 {
		t.Fatalf("jobs at first: %+v", list)
	}
	job := jobs.Job{Name: "crud", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "30 1 * * *",
		TimeZone: "Europe/Berlin", Retention: retention.Policy{Last: 3}, Enabled: true}
	var jv api.JobView
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", job, &jv)
	if jv.Name != "crud" || !jv.Enabled || jv.NextRun.IsZero() || jv.Schedule != job.Schedule || jv.Retention.Last != 3 || jv.Created.IsZero() {
		t.Fatalf("created job: %+v", jv)
	}
	admin.refused(http.StatusConflict, http.MethodPost, api.Prefix+"/jobs", job, "exists")

	// Errors name what is wrong.
	bad := job
	bad.Name = "bad"
	bad.Schedule = "61 * * * *"
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/jobs", bad, "schedule")
	bad.Schedule, bad.VCenter = "@daily", "nope"
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/jobs", bad, "vcenter", "nope")
	bad.VCenter, bad.Selection = "", jobs.Selection{}
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/jobs", bad, "selection")
	bad.Selection, bad.Name = job.Selection, "no/slash"
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/jobs", bad, "name")
	bad.Name, bad.TimeZone = "bad", "Mars/Olympus"
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/jobs", bad, "time zone")
	admin.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/jobs/bad", nil)

	// Update: the whole definition is replaced; the name cannot change.
	upd := job
	upd.Name = ""
	upd.Schedule = "@hourly"
	upd.Selection = jobs.Selection{VMs: []string{"vm01"}}
	upd.Retention = retention.Policy{}
	admin.ok(http.StatusOK, http.MethodPut, api.Prefix+"/jobs/crud", upd, &jv)
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/crud", nil, &jv)
	if jv.Schedule != "@hourly" || !slices.Equal(jv.Selection.VMs, []string{"vm01"}) || len(jv.Selection.Folders) != 0 ||
		!jv.Retention.Empty() || jv.Updated.Before(jv.Created) {
		t.Fatalf("updated job: %+v", jv)
	}
	upd.Schedule = "not a schedule"
	admin.refused(http.StatusBadRequest, http.MethodPut, api.Prefix+"/jobs/crud", upd, "schedule")
	upd.Schedule, upd.Name = "@hourly", "renamed"
	admin.refused(http.StatusBadRequest, http.MethodPut, api.Prefix+"/jobs/crud", upd, "renamed")
	admin.refused(http.StatusNotFound, http.MethodPut, api.Prefix+"/jobs/missing", job)
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/crud", nil, &jv)
	if jv.Schedule != "@hourly" {
		t.Fatalf("a refused update changed the job: %+v", jv)
	}

	admin.ok(http.StatusOK, http.MethodPost, api.Prefix+"/jobs/crud/disable", nil, &jv)
	if jv.Enabled || !jv.NextRun.IsZero() {
		t.Fatalf("disabled job: %+v", jv)
	}
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/crud", nil, &jv)
	if jv.Enabled {
		t.Fatalf("the job is enabled after disable: %+v", jv)
	}
	admin.ok(http.StatusOK, http.MethodPost, api.Prefix+"/jobs/crud/enable", nil, &jv)
	if !jv.Enabled || jv.NextRun.IsZero() {
		t.Fatalf("enabled job: %+v", jv)
	}

	// Cancelling, running again and deleting conflict with the run's state.
	admin.refused(http.StatusConflict, http.MethodPost, api.Prefix+"/jobs/crud/cancel", nil, "not running")
	gate.hold(e2eMoRef(t, l, "vm01"))
	var started api.RunStarted
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/crud/run", nil, &started)
	gate.waitHeld(t, e2eMoRef(t, l, "vm01"))
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/crud", nil, &jv)
	if !jv.Running || jv.LastRun == nil || jv.LastRun.ID != started.RunID || jv.LastRun.Result != jobs.ResultRunning {
		t.Fatalf("running job: %+v", jv)
	}
	admin.refused(http.StatusConflict, http.MethodPost, api.Prefix+"/jobs/crud/run", nil, "running")
	admin.refused(http.StatusConflict, http.MethodDelete, api.Prefix+"/jobs/crud", nil, "running")
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/crud/cancel", nil, nil)
	run := admin.waitRun(started.RunID)
	if run.Result != jobs.ResultCancelled || len(run.VMs) != 1 || run.VMs[0].Result != jobs.ResultCancelled {
		t.Fatalf("cancelled run: %+v", run)
	}
	if n := l.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left after the cancel", n)
	}
	admin.refused(http.StatusConflict, http.MethodPost, api.Prefix+"/jobs/crud/cancel", nil, "not running")

	admin.ok(http.StatusNoContent, http.MethodDelete, api.Prefix+"/jobs/crud", nil, nil)
	admin.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/jobs/crud", nil)
	admin.refused(http.StatusNotFound, http.MethodDelete, api.Prefix+"/jobs/crud", nil)
	admin.refused(http.StatusNotFound, http.MethodPost, api.Prefix+"/jobs/crud/run", nil)
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs", nil, &list)
	if len(list) != 0 {
		t.Fatalf("jobs after the delete: %+v", list)
	}
	// The deleted job's history is kept.
	var kept jobs.Run
	admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/runs/"+started.RunID, nil, &kept)
	if kept.Job != "crud" || kept.Result != jobs.ResultCancelled {
		t.Fatalf("the deleted job's run: %+v", kept)
	}
	// A job can be made again under the deleted one's name.
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", job, &jv)
	if jv.Schedule != job.Schedule || jv.Running {
		t.Fatalf("job made again: %+v", jv)
	}
}

// TestUsersAndTokens has an admin make an operator, who runs a job and hands
// out a file-restore token for one VM, and then removes the operator.
func TestUsersAndTokens(t *testing.T) {
	rig := newApplianceRig(t, &lab.Options{VMs: 2, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20})
	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", jobs.Job{Name: "all", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}},
		Schedule: "@daily", Enabled: true}, nil)

	const opPassword = "operator password one"
	var u auth.User
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/users", api.NewUser{Name: "olga", Password: opPassword, Role: auth.RoleOperator}, &u)
	if u.Name != "olga" || u.Role != auth.RoleOperator {
		t.Fatalf("created user: %+v", u)
	}
	admin.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/users", api.NewUser{Name: "weak", Password: "short", Role: auth.RoleOperator}, "password")
	raw := admin.raw(http.MethodGet, api.Prefix+"/users")
	if strings.Contains(raw, opPassword) || strings.Contains(raw, "argon2") {
		t.Fatalf("the user list shows passwords or their hashes: %s", raw)
	}

	op := newE2EClient(rig)
	info := op.login("olga", opPassword)
	if info.Role != auth.RoleOperator {
		t.Fatalf("operator's session: %+v", info)
	}
	var started api.RunStarted
	op.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/all/run", nil, &started)
	if run := op.waitRun(started.RunID); run.Result != jobs.ResultSuccess {
		t.Fatalf("the operator's run: %s: %s", run.Result, run.Error)
	}
	op.refused(http.StatusForbidden, http.MethodPost, api.Prefix+"/users", api.NewUser{Name: "mallory", Password: "a long enough password", Role: auth.RoleAdmin}, "admin")
	op.refused(http.StatusForbidden, http.MethodGet, api.Prefix+"/users", nil)
	op.refused(http.StatusForbidden, http.MethodPost, api.Prefix+"/vcenters", rig.labVCenter("other"), "admin")
	op.refused(http.StatusForbidden, http.MethodPost, api.Prefix+"/jobs", jobs.Job{Name: "mine", Selection: jobs.Selection{VMs: []string{"vm01"}}, Schedule: "@daily"}, "admin")
	op.refused(http.StatusForbidden, http.MethodGet, api.Prefix+"/audit", nil)

	points := e2eListPoints(t, op, "")
	if len(points) != 2 {
		t.Fatalf("%d points, want 2", len(points))
	}
	mine, other := points[0], points[1]
	var created api.CreatedToken
	op.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "flr", Role: auth.RoleFileRestore, VM: mine.Source.Name, TTL: "1h"}, &created)
	if created.Secret == "" || created.VM != mine.Source.Name || created.Expires.IsZero() ||
		created.Expires.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Fatalf("created token: %+v", created.Token)
	}
	// An operator cannot mint a token above their own role.
	op.refused(http.StatusBadRequest, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "up", Role: auth.RoleAdmin}, "role")

	flr := newE2EClient(rig).withToken(created.Secret)
	var who api.SessionInfo
	flr.ok(http.StatusOK, http.MethodGet, api.Prefix+"/session", nil, &who)
	if who.Role != auth.RoleFileRestore || who.Via != "token" || who.VM != mine.Source.Name {
		t.Fatalf("the token's principal: %+v", who)
	}
	seen := e2eListPoints(t, flr, "")
	if len(seen) != 1 || seen[0].ID != mine.ID {
		t.Fatalf("the file-restore token sees points %+v, want only %s", seen, mine.ID)
	}
	var vms []api.VMPoints
	flr.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vms", nil, &vms)
	if len(vms) != 1 || vms[0].Source.Name != mine.Source.Name {
		t.Fatalf("the file-restore token sees VMs %+v", vms)
	}
	flr.ok(http.StatusOK, http.MethodGet, api.Prefix+"/points/"+mine.ID, nil, nil)
	flr.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/points/"+other.ID, nil)
	flr.refused(http.StatusForbidden, http.MethodGet, api.Prefix+"/jobs", nil)
	flr.refused(http.StatusForbidden, http.MethodPost, api.Prefix+"/jobs/all/run", nil)
	if n := len(e2eListPoints(t, flr, other.Source.Name)); n != 0 {
		t.Fatalf("the file-restore token lists %d points of another VM", n)
	}

	// Changing one's password ends one's sessions; the old password no
	// longer works, the new one does.
	const newPassword = "operator password two"
	op.refused(http.StatusForbidden, http.MethodPut, api.Prefix+"/session/password", api.PasswordChange{Current: "not the password", New: newPassword}, "current password")
	op.ok(http.StatusNoContent, http.MethodPut, api.Prefix+"/session/password", api.PasswordChange{Current: opPassword, New: newPassword}, nil)
	newE2EClient(rig).loginRefused("olga", opPassword)
	op = newE2EClient(rig)
	op.login("olga", newPassword)
	op.ok(http.StatusOK, http.MethodGet, api.Prefix+"/session", nil, &who)
	if who.User != "olga" {
		t.Fatalf("session after the password change: %+v", who)
	}

	// Deleting the user ends their sessions and tokens.
	admin.ok(http.StatusNoContent, http.MethodDelete, api.Prefix+"/users/olga", nil, nil)
	op.refused(http.StatusUnauthorized, http.MethodGet, api.Prefix+"/session", nil)
	op.refused(http.StatusUnauthorized, http.MethodGet, api.Prefix+"/points", nil)
	flr.refused(http.StatusUnauthorized, http.MethodGet, api.Prefix+"/points", nil)
	newE2EClient(rig).loginRefused("olga", newPassword)
	admin.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/users/olga", nil)
}

// An e2eClient calls the API as a script does: over TLS pinned to the
// appliance's certificate, with a session cookie and its CSRF token or
// with a bearer token. Unlike api.Client, it tells the status of every
// response, so that tests can hold the API to its documented statuses.
type e2eClient struct {
	t     testing.TB
	base  string
	http  *http.Client
	csrf  string
	token string
}

func newE2EClient(r *applianceRig) *e2eClient {
	pin := sha256.Sum256(r.ap.Certificate().Certificate[0])
	jar, err := cookiejar.New(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // checked against the pin instead
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || sha256.Sum256(raw[0]) != pin {
				return errors.New("not the appliance's certificate")
			}
			return nil
		},
	}}
	r.t.Cleanup(tr.CloseIdleConnections)
	return &e2eClient{t: r.t, base: r.ap.URL(), http: &http.Client{Transport: tr, Jar: jar, Timeout: e2eWait}}
}

// call sends in as JSON, decodes a successful response into out (zeroed
// first, so that fields the response leaves out do not keep old values),
// or into a *string as it is, and returns the status; an error response is
// an *api.StatusError.
func (c *e2eClient) call(method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else if c.csrf != "" {
		req.Header.Set(api.CSRFHeader, c.csrf)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		se := &api.StatusError{Status: resp.StatusCode}
		if json.Unmarshal(b, &se.Body) != nil || se.Body.Error == "" {
			return resp.StatusCode, fmt.Errorf("%s %s: %d with a body that is no API error: %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, se)
	}
	if raw, ok := out.(*string); ok {
		*raw = string(b)
	} else if out != nil {
		v := reflect.ValueOf(out)
		if v.Kind() != reflect.Pointer || v.IsNil() {
			return resp.StatusCode, fmt.Errorf("%s %s: cannot decode into %T", method, path, out)
		}
		v.Elem().SetZero()
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode %q: %w", method, path, b, err)
		}
	}
	return resp.StatusCode, nil
}

// ok calls, and fails the test unless the status is want.
func (c *e2eClient) ok(want int, method, path string, in, out any) {
	c.t.Helper()
	status, err := c.call(method, path, in, out)
	if err != nil {
		c.t.Fatal(err)
	}
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d", method, path, status, want)
	}
}

// raw is the body of a successful GET.
func (c *e2eClient) raw(method, path string) string {
	c.t.Helper()
	var s string
	c.ok(http.StatusOK, method, path, nil, &s)
	return s
}

// refused calls, and fails the test unless the API refuses with status want
// and an error message that mentions each of mention, in any case.
func (c *e2eClient) refused(want int, method, path string, in any, mention ...string) api.Error {
	c.t.Helper()
	status, err := c.call(method, path, in, nil)
	var se *api.StatusError
	if !errors.As(err, &se) || status != want {
		c.t.Fatalf("%s %s: status %d (%v), want %d", method, path, status, err, want)
	}
	for _, m := range mention {
		if !strings.Contains(strings.ToLower(se.Body.Error), strings.ToLower(m)) {
			c.t.Errorf("%s %s: %d error %q does not mention %q", method, path, status, se.Body.Error, m)
		}
	}
	return se.Body
}

func (c *e2eClient) login(user, password string) api.SessionInfo {
	c.t.Helper()
	var s api.SessionInfo
	c.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/sessions", api.LoginRequest{Username: user, Password: password}, &s)
	if s.User != user || s.Via != "session" || s.CSRFToken == "" {
		c.t.Fatalf("login as %s: %+v", user, s)
	}
	c.csrf = s.CSRFToken
	return s
}

func (c *e2eClient) loginRefused(user, password string) {
	c.t.Helper()
	c.refused(http.StatusUnauthorized, http.MethodPost, api.Prefix+"/sessions", api.LoginRequest{Username: user, Password: password})
}

func (c *e2eClient) withToken(secret string) *e2eClient {
	cc := *c
	cc.token, cc.csrf = secret, ""
	return &cc
}

// waitRun polls a run until it has ended and its job is no longer running,
// and returns the run as recorded.
func (c *e2eClient) waitRun(id string) jobs.Run {
	c.t.Helper()
	var run jobs.Run
	e2eEventually(c.t, "run "+id+" ends", func() bool {
		run = jobs.Run{}
		c.ok(http.StatusOK, http.MethodGet, api.Prefix+"/runs/"+id, nil, &run)
		return run.Result != jobs.ResultRunning
	})
	// The run's end is recorded just before the runner lets go of the
	// job: the job may still count as running for a moment.
	e2eEventually(c.t, "job "+run.Job+" idle", func() bool {
		var jv api.JobView
		c.ok(http.StatusOK, http.MethodGet, api.Prefix+"/jobs/"+run.Job, nil, &jv)
		return !jv.Running
	})
	return run
}

// waitTask polls a task until it has ended.
func (c *e2eClient) waitTask(id string) tasks.Task {
	c.t.Helper()
	var tk tasks.Task
	e2eEventually(c.t, "task "+id+" ends", func() bool {
		tk = tasks.Task{}
		c.ok(http.StatusOK, http.MethodGet, api.Prefix+"/tasks/"+id, nil, &tk)
		return tk.State != tasks.StateRunning
	})
	return tk
}

// e2eEventually polls done until it reports true, failing the test if that
// takes longer than e2eWait.
func e2eEventually(t testing.TB, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, e2eWait)
		}
		<-tick.C
	}
}

func e2eListPoints(t testing.TB, c *e2eClient, vm string) []api.PointView {
	t.Helper()
	path := api.Prefix + "/points"
	if vm != "" {
		path += "?vm=" + url.QueryEscape(vm)
	}
	var out []api.PointView
	c.ok(http.StatusOK, http.MethodGet, path, nil, &out)
	return out
}

// e2eCheckStore runs a full data check as a task and fails the test unless it
// succeeds and finds no problem.
func e2eCheckStore(t testing.TB, c *e2eClient) chunkstore.CheckReport {
	t.Helper()
	var tk tasks.Task
	c.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/store/check", api.CheckRequest{ReadDataPercent: 100}, &tk)
	if tk.ID == "" || tk.Kind != "check" {
		t.Fatalf("check task: %+v", tk)
	}
	tk = c.waitTask(tk.ID)
	var report chunkstore.CheckReport
	if tk.State != tasks.StateSucceeded || json.Unmarshal(tk.Result, &report) != nil {
		t.Fatalf("check task: %+v", tk)
	}
	if len(report.Problems) != 0 || len(report.DamagedPoints) != 0 || len(report.DamagedPacks) != 0 || report.Incomplete {
		t.Fatalf("the check found problems: %+v", report)
	}
	return report
}

func e2eBytesRead(r jobs.Run) string {
	var parts []string
	for _, v := range r.VMs {
		parts = append(parts, fmt.Sprintf("%s %d B in %v", v.Name, v.BytesRead, v.Duration.Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// e2eHex keeps only the hex digits of s, in upper case, so that
// fingerprints compare whatever their separators.
func e2eHex(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case '0' <= r && r <= '9', 'A' <= r && r <= 'F':
			return r
		case 'a' <= r && r <= 'f':
			return r - 'a' + 'A'
		}
		return -1
	}, s)
}

func e2eMoRef(t testing.TB, l *lab.Lab, name string) string {
	t.Helper()
	for _, v := range l.VMs() {
		if v.Name == name {
			return v.MoRef
		}
	}
	t.Fatalf("the lab has no VM %s", name)
	return ""
}

// An e2eEvent is one event of a server-sent event stream.
type e2eEvent struct {
	ID   string
	Type string
	Data string
}

// e2eStream opens the appliance's event stream and delivers its events
// until the test ends or the stream does, when the channel is closed.
func e2eStream(t testing.TB, c *api.Client) <-chan e2eEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.Stream(ctx, api.Prefix+"/events", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("event stream of type %q", ct)
	}
	ch := make(chan e2eEvent)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	go func() {
		defer close(done)
		defer close(ch)
		r := bufio.NewReader(resp.Body)
		var ev e2eEvent
		var data []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			switch {
			case line == "":
				if ev.Type == "" && data == nil {
					continue
				}
				ev.Data = strings.Join(data, "\n")
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev, data = e2eEvent{}, nil
			case strings.HasPrefix(line, ":"): // a comment, such as a keepalive
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Type = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	return ch
}

// e2eNext returns the next event, failing the test if none comes before
// deadline or the stream ends.
func e2eNext(t testing.TB, events <-chan e2eEvent, deadline time.Time) e2eEvent {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		if ev.ID == "" {
			t.Errorf("event %s without an ID", ev.Type)
		}
		return ev
	case <-timer.C:
		t.Fatal("no event in time")
	}
	return e2eEvent{}
}

func e2eDecode(t testing.TB, ev e2eEvent, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
		t.Fatalf("event %s %s: %v: %s", ev.ID, ev.Type, err, ev.Data)
	}
}

// A e2eGate is a TLS reverse proxy in front of the lab's vCenter that can
// hold VMs' backups while their snapshots exist: it holds the
// QueryChangedDiskAreas calls of the VMs it is told to, which a backup makes
// right after taking its snapshot, until it is released or the caller gives
// up (as a cancelled backup does). Every other call passes, so that a held
// backup can still remove its snapshot.
type e2eGate struct {
	rig *applianceRig
	srv *httptest.Server

	mu      sync.Mutex
	holding map[string]bool          // VM morefs to hold
	held    map[string]chan struct{} // closed when a call of that VM is first held
	open    chan struct{}            // closed by release
	once    sync.Once
}

var e2eQueryChanged = regexp.MustCompile(`<QueryChangedDiskAreas[^>]*>\s*<_this[^>]*>([^<]+)</_this>`)

func newE2EGate(t testing.TB, rig *applianceRig) *e2eGate {
	t.Helper()
	target := rig.lab.URL()
	target.User, target.Path = nil, ""
	g := &e2eGate{rig: rig, holding: map[string]bool{}, held: map[string]chan struct{}{}, open: make(chan struct{})}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		// The lab's certificate is pinned by the appliance's side of the
		// gate, which is what this test is not about.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if m := e2eQueryChanged.FindSubmatch(body); m != nil && !g.pass(r.Context(), string(m[1])) {
				return // the caller gave up
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	g.srv.StartTLS()
	t.Cleanup(func() {
		g.release()
		rig.stop() // before the gate goes, so that the appliance logs out through it
		g.srv.Close()
		proxy.Transport.(*http.Transport).CloseIdleConnections()
	})
	return g
}

// vcenter is the request that adds the lab, through the gate, as vCenter
// name.
func (g *e2eGate) vcenter(name string) api.NewVCenter {
	v := g.rig.labVCenter(name)
	v.URL = g.srv.URL + "/sdk"
	v.Thumbprint = soap.ThumbprintSHA1(g.srv.Certificate())
	return v
}

// hold holds the backups of the VM whose moref is given.
func (g *e2eGate) hold(moref string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding[moref] = true
	if g.held[moref] == nil {
		g.held[moref] = make(chan struct{})
	}
}

// release lets every held call pass, and holds no more.
func (g *e2eGate) release() {
	g.once.Do(func() { close(g.open) })
}

// pass waits while the gate holds moref's calls, and reports whether the
// call is to go on.
func (g *e2eGate) pass(ctx context.Context, moref string) bool {
	g.mu.Lock()
	holding, held := g.holding[moref], g.held[moref]
	if holding {
		select {
		case <-held:
		default:
			close(held)
		}
	}
	g.mu.Unlock()
	if !holding {
		return true
	}
	select {
	case <-g.open:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitHeld waits until a backup of moref is held.
func (g *e2eGate) waitHeld(t testing.TB, moref string) {
	t.Helper()
	g.mu.Lock()
	held := g.held[moref]
	g.mu.Unlock()
	if held == nil {
		t.Fatalf("the gate does not hold %s", moref)
	}
	select {
	case <-held:
	case <-time.After(e2eWait):
		t.Fatalf("no backup of %s reached the gate within %v", moref, e2eWait)
	}
}
