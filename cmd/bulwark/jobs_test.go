package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// jobsVCPasswordEnv holds the lab's vCenter password, for the CLI and for
// the child processes, which inherit it.
const jobsVCPasswordEnv = "BULWARK_TEST_JOBS_VC_PASSWORD"

// jobsRig is a lab, an empty store and an empty state directory.
type jobsRig struct {
	lab          *lab.Lab
	url          string
	store, state string
}

func newJobsRig(t *testing.T) *jobsRig {
	t.Helper()
	ctx := context.Background()
	t.Setenv("BULWARK_PASSWORD", crashPassword)
	l, err := lab.Start(ctx, lab.Options{VMs: 4, Disks: 1, DiskSize: 64 << 20, FileBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	t.Setenv(jobsVCPasswordEnv, l.Password())
	u := l.URL()
	u.User = nil
	dir := t.TempDir()
	r := &jobsRig{lab: l, url: u.String(), store: filepath.Join(dir, "store"), state: filepath.Join(dir, "state")}
	if err := chunkstore.Init(ctx, backend.NewLocal(r.store), chunkstore.InitOptions{Password: []byte(crashPassword),
		KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// addVCenter adds the lab as vCenter "lab", pinned.
func (r *jobsRig) addVCenter(t *testing.T) {
	t.Helper()
	cli(t, "vcenter", "add", "lab", "--state", r.state, "--url", r.url, "--username", r.lab.Username(),
		"--password-env", jobsVCPasswordEnv, "--thumbprint", r.lab.Thumbprint())
}

func (r *jobsRig) history(t *testing.T, job string) []jobs.Run {
	t.Helper()
	var runs []jobs.Run
	if err := json.Unmarshal([]byte(cli(t, "job", "history", job, "--state", r.state, "--json")), &runs); err != nil {
		t.Fatal(err)
	}
	return runs
}

func (r *jobsRig) points(t *testing.T) []crashPointRow {
	t.Helper()
	var rows []crashPointRow
	if err := json.Unmarshal([]byte(cli(t, "points", "--store", r.store, "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func mustContain(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q does not say %q", what, got, w)
		}
	}
}

// TestJobCommands adds the lab as a vCenter, creates a job over a folder
// less one VM, runs it twice, and reads what it did back from the store and
// the history.
func TestJobCommands(t *testing.T) {
	r := newJobsRig(t)
	state := r.state

	// Trust must be explicit: without a thumbprint nothing is stored, and
	// the error shows the fingerprint to pin.
	msg := cliErr(t, "vcenter", "add", "lab", "--state", state, "--url", r.url, "--username", r.lab.Username(),
		"--password-env", jobsVCPasswordEnv)
	mustContain(t, "vcenter add without a thumbprint", msg, "not pinned", r.lab.Thumbprint(), "--thumbprint")
	// A wrong pin is refused by the connection test.
	msg = cliErr(t, "vcenter", "add", "lab", "--state", state, "--url", r.url, "--username", r.lab.Username(),
		"--password-env", jobsVCPasswordEnv, "--thumbprint", strings.Repeat("00:", 19)+"00")
	mustContain(t, "vcenter add with a wrong thumbprint", msg, "does not match the pinned thumbprint")
	msg = cliErr(t, "vcenter", "add", "lab", "--state", state, "--url", r.url, "--username", r.lab.Username(),
		"--password-env", "BULWARK_TEST_UNSET_VARIABLE", "--thumbprint", r.lab.Thumbprint())
	mustContain(t, "vcenter add without the password", msg, "$BULWARK_TEST_UNSET_VARIABLE", "not set")
	if out := cli(t, "vcenter", "list", "--state", state, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("failed adds stored vCenters: %s", out)
	}
	msg = cliErr(t, "job", "create", "nightly", "--state", state, "--folder", "/DC0/vm", "--schedule", "@daily")
	mustContain(t, "job create without a vCenter", msg, "no vCenter", "bulwark vcenter add")

	r.addVCenter(t)
	var vcs []jobs.VCenter
	if err := json.Unmarshal([]byte(cli(t, "vcenter", "list", "--state", state, "--json")), &vcs); err != nil {
		t.Fatal(err)
	}
	if len(vcs) != 1 || vcs[0].Name != "lab" || vcs[0].Thumbprint != r.lab.Thumbprint() || vcs[0].PasswordEnv != jobsVCPasswordEnv {
		t.Fatalf("vcenter list: %+v", vcs)
	}
	msg = cliErr(t, "vcenter", "add", "lab", "--state", state, "--url", r.url, "--username", r.lab.Username(),
		"--password-env", jobsVCPasswordEnv, "--thumbprint", r.lab.Thumbprint())
	mustContain(t, "vcenter add of an existing name", msg, "vCenter lab exists", "--replace")

	// Bad input gets errors that say what is wrong.
	create := []string{"job", "create", "nightly", "--state", state, "--vcenter", "lab", "--folder", "/DC0/vm"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--schedule", "61 * * * *"}, `invalid schedule "61 * * * *"`},
		{[]string{"--schedule", "@daily", "--time-zone", "Mars/Olympus"}, `unknown time zone "Mars/Olympus"`},
		{[]string{"--schedule", "@daily", "--vcenter", "nowhere"}, `unknown vCenter "nowhere"`},
		{[]string{"--schedule", "@daily", "--window-start", "22:00"}, "--window-start and --window-duration go together"},
		{[]string{"--schedule", "@daily", "--window-start", "25:00", "--window-duration", "8h"}, "invalid window start"},
		{[]string{"--schedule", "@daily", "--keep-within", "soon"}, "--keep-within"},
		{nil, `"schedule" not set`},
	} {
		mustContain(t, strings.Join(c.args, " "), cliErr(t, append(slices.Clone(create), c.args...)...), c.want)
	}
	msg = cliErr(t, "job", "create", "a/b", "--state", state, "--folder", "/DC0/vm", "--schedule", "@daily")
	mustContain(t, "job name with a slash", msg, `invalid job name "a/b": '/' is not allowed`)
	mustContain(t, "job without a selection", cliErr(t, "job", "create", "empty", "--state", state, "--schedule", "@daily"),
		"empty selection")

	cli(t, append(create, "--exclude", "vm04", "--schedule", "0 22 * * *", "--keep-last", "5")...)
	mustContain(t, "job create twice", cliErr(t, append(create, "--schedule", "@daily")...), "job nightly exists")
	var show struct {
		Job     jobs.Job    `json:"job"`
		Next    []time.Time `json:"next"`
		LastRun *jobs.Run   `json:"last_run"`
	}
	if err := json.Unmarshal([]byte(cli(t, "job", "show", "nightly", "--state", state, "--json")), &show); err != nil {
		t.Fatal(err)
	}
	if show.Job.VCenter != "lab" || !show.Job.Enabled || show.Job.Retention.Last != 5 || show.LastRun != nil || len(show.Next) != 3 {
		t.Fatalf("job show: %+v", show)
	}
	for i, n := range show.Next {
		if n.UTC().Hour() != 22 || n.Minute() != 0 || i > 0 && n.Sub(show.Next[i-1]) != 24*time.Hour {
			t.Errorf("next runs %v: want 22:00 UTC on consecutive days", show.Next)
		}
	}
	mustContain(t, "job show", cli(t, "job", "show", "nightly", "--state", state), "/DC0/vm", "vm04", "last 5", "never")
	mustContain(t, "vcenter remove while a job uses it", cliErr(t, "vcenter", "remove", "lab", "--state", state),
		"in use by jobs nightly")
	mustContain(t, "job cancel with no run", cliErr(t, "job", "cancel", "nightly", "--state", state), "job nightly has no run going")

	runJob := func() jobs.Run {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"job", "run", "nightly", "--state", state, "--store", r.store, "--json"},
			strings.NewReader(""), &out, &errOut)
		if code != 0 {
			t.Fatalf("job run: exit %d\n%s", code, errOut.String())
		}
		var res jobs.Run
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("job run: %v\n%s", err, out.String())
		}
		mustContain(t, "job run progress", errOut.String(), "vm01: backup started", "vm03: success")
		return res
	}
	first := runJob()
	var names []string
	for _, v := range first.VMs {
		names = append(names, v.Name)
		if v.Result != jobs.ResultSuccess || v.Point == "" || v.BytesRead == 0 || len(v.FullReads) != 1 {
			t.Errorf("first run, VM %s: %+v", v.Name, v)
		}
	}
	if first.Result != jobs.ResultSuccess || first.Trigger != jobs.TriggerManual || !slices.Equal(names, []string{"vm01", "vm02", "vm03"}) {
		t.Fatalf("first run: %s of %v: %s", first.Result, names, first.Error)
	}
	var made, stored []string
	for _, v := range first.VMs {
		made = append(made, v.Point)
	}
	for _, p := range r.points(t) {
		stored = append(stored, p.ID)
	}
	slices.Sort(made)
	slices.Sort(stored)
	if !slices.Equal(made, stored) {
		t.Fatalf("the store holds points %v after a run that made %v", stored, made)
	}

	// The guest changes a little; the next run reads only that.
	if err := r.lab.Write("vm02", 0, 40<<20, bytes.Repeat([]byte("changed!"), 8<<10)); err != nil {
		t.Fatal(err)
	}
	second := runJob()
	if second.Result != jobs.ResultSuccess || len(second.VMs) != 3 {
		t.Fatalf("second run: %+v", second)
	}
	for i, v := range second.VMs {
		if v.Result != jobs.ResultSuccess || len(v.FullReads) != 0 || v.BytesRead >= first.VMs[i].BytesRead {
			t.Errorf("second run, VM %s: read %d bytes (full reads %v), the first run read %d", v.Name, v.BytesRead, v.FullReads, first.VMs[i].BytesRead)
		}
	}
	if len(r.points(t)) != 6 {
		t.Errorf("%d points after two runs of 3 VMs", len(r.points(t)))
	}

	runs := r.history(t, "nightly")
	if len(runs) != 2 || runs[0].ID != second.ID || runs[1].ID != first.ID || runs[1].VMs[0].Point != first.VMs[0].Point {
		t.Fatalf("history: %+v", runs)
	}
	text := cli(t, "job", "history", "nightly", "--state", state, "--limit", "1")
	mustContain(t, "job history", text, "success, run "+second.ID, "vm01", "vm03")
	if strings.Contains(text, "run "+first.ID+" ") {
		t.Errorf("job history --limit 1 shows the older run:\n%s", text)
	}
	mustContain(t, "job list", cli(t, "job", "list", "--state", state), "nightly", "lab", "0 22 * * *", "success")

	cli(t, "job", "disable", "nightly", "--state", state)
	mustContain(t, "disabled job list", cli(t, "job", "list", "--state", state), "disabled")
	cli(t, "job", "enable", "nightly", "--state", state)
	cli(t, "job", "delete", "nightly", "--state", state)
	mustContain(t, "show of a deleted job", cliErr(t, "job", "show", "nightly", "--state", state), "not found")
	if runs := r.history(t, "nightly"); len(runs) != 2 {
		t.Errorf("history after the job was deleted: %d runs", len(runs))
	}
	cli(t, "vcenter", "remove", "lab", "--state", state)
}

// TestJobCancel starts "bulwark job run" as a child process and cancels it
// with "bulwark job cancel" while a snapshot exists: the child removes its
// snapshots, makes no point for the VMs it had not finished, records the
// run as cancelled and exits non-zero.
func TestJobCancel(t *testing.T) {
	r := newJobsRig(t)
	state := r.state
	r.addVCenter(t)
	cli(t, "job", "create", "all", "--state", state, "--folder", "/DC0/vm", "--schedule", "@daily")

	// One VM at a time, so that the run is still going when the cancel
	// arrives whichever VM it catches.
	child := crashCommand("job", "run", "all", "--state", state, "--store", r.store, "--concurrency", "1")
	var stdout, stderr bytes.Buffer
	child.Stdout, child.Stderr = &stdout, &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	deadline := time.After(20 * time.Second)
	for r.lab.Snapshots() == 0 {
		select {
		case err := <-done:
			t.Fatalf("the run ended (%v) before a snapshot was seen\n%s", err, stderr.String())
		case <-deadline:
			_ = child.Process.Kill()
			t.Fatal("no snapshot within 20s")
		case <-time.After(time.Millisecond):
		}
	}
	// The run holds the state: other commands say so, and who.
	mustContain(t, "history during a run", cliErr(t, "job", "history", "all", "--state", state),
		"in use by another process", `"bulwark job run" of all`)
	out := cli(t, "job", "cancel", "all", "--state", state)
	mustContain(t, "job cancel", out, "run of job all cancelled")

	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = child.Process.Kill()
		t.Fatal("the child did not exit within 20s of the cancel")
	}
	if err == nil {
		t.Fatalf("the cancelled run exited 0\n%s", stderr.String())
	}
	if ws := child.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Fatalf("the child died of %v instead of ending the run itself", ws.Signal())
	}
	mustContain(t, "cancelled run's error", stderr.String(), "was cancelled")
	if n := r.lab.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots left after the cancel", n)
	}
	if _, err := os.Stat(pidPath(state, "all")); !os.IsNotExist(err) {
		t.Errorf("pid file after the run: %v", err)
	}

	runs := r.history(t, "all")
	if len(runs) != 1 {
		t.Fatalf("history: %+v", runs)
	}
	cancelled := runs[0]
	if cancelled.Result != jobs.ResultCancelled || !strings.Contains(cancelled.Error, "interrupted") {
		t.Fatalf("run recorded as %s: %s", cancelled.Result, cancelled.Error)
	}
	done2, stopped := 0, 0
	for _, v := range cancelled.VMs {
		switch {
		case v.Done():
			done2++
		case v.Result == jobs.ResultCancelled && v.Point == "":
			stopped++
		default:
			t.Errorf("VM %s of the cancelled run: %+v", v.Name, v)
		}
	}
	if stopped == 0 || len(r.points(t)) != done2 {
		t.Fatalf("%d VMs cancelled, %d backed up, %d points", stopped, done2, len(r.points(t)))
	}
	mustContain(t, "job cancel after the run", cliErr(t, "job", "cancel", "all", "--state", state), "has no run going")
}
