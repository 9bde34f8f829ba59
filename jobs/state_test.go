package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func openState(t *testing.T, dir string) *State {
	t.Helper()
	s, err := OpenState(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStateJobs(t *testing.T) {
	s := openState(t, t.TempDir())
	defer s.Close()

	if _, err := s.Job("nightly"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "job nightly") {
		t.Errorf("missing job: %v", err)
	}
	bad := testJob("nightly")
	bad.TimeZone = "Nowhere/Else"
	if err := s.PutJob(bad); err == nil || !strings.Contains(err.Error(), "unknown time zone") {
		t.Errorf("invalid job stored: %v", err)
	}

	for _, name := range []string{"weekly", "nightly"} {
		if err := s.PutJob(testJob(name)); err != nil {
			t.Fatal(err)
		}
	}
	first, err := s.Job("nightly")
	if err != nil {
		t.Fatal(err)
	}
	if first.Created.IsZero() || !first.Updated.Equal(first.Created) {
		t.Errorf("new job stamped %v, %v", first.Created, first.Updated)
	}
	changed := testJob("nightly")
	changed.Schedule = "@hourly"
	if err := s.PutJob(changed); err != nil {
		t.Fatal(err)
	}
	got, err := s.Job("nightly")
	if err != nil {
		t.Fatal(err)
	}
	if got.Schedule != "@hourly" || !got.Created.Equal(first.Created) || got.Updated.Before(first.Updated) {
		t.Errorf("updated job %+v: want the new schedule and the old creation time", got)
	}

	jobs, err := s.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Name != "nightly" || jobs[1].Name != "weekly" {
		t.Errorf("Jobs = %+v, want nightly and weekly", jobs)
	}

	if err := s.DeleteJob("weekly"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob("weekly"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if jobs, _ := s.Jobs(); len(jobs) != 1 {
		t.Errorf("after delete: %+v", jobs)
	}
}

func TestStateHistorySurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir)
	var ids []string
	for i := range 3 {
		r := Run{Job: "nightly", Trigger: TriggerSchedule, Started: t0.Add(time.Duration(i) * time.Hour), Result: ResultSuccess,
			VMs: []VMRun{{MoRef: "vm-1", Name: "web", Result: ResultSuccess, BytesRead: int64(i), Duration: time.Minute}}}
		id, err := s.AddRun(r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// A job whose name is a prefix of the other's keeps its own history.
	if _, err := s.AddRun(Run{Job: "night", Result: ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRun(Run{ID: ids[0], Job: "other"}); err == nil || !strings.Contains(err.Error(), "belongs to job nightly") {
		t.Errorf("run moved to another job: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openState(t, dir)
	defer s.Close()
	runs, err := s.Runs("nightly", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].ID != ids[2] || runs[2].ID != ids[0] {
		t.Fatalf("Runs = %+v, want %v newest first", runs, ids)
	}
	if runs[0].VMs[0].BytesRead != 2 || runs[0].VMs[0].Duration != time.Minute || !runs[0].Started.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("newest run read back as %+v", runs[0])
	}
	if runs, _ := s.Runs("nightly", 2); len(runs) != 2 || runs[0].ID != ids[2] {
		t.Errorf("Runs with limit 2 = %+v", runs)
	}
	r, err := s.Run(ids[1])
	if err != nil || r.Job != "nightly" || r.VMs[0].BytesRead != 1 {
		t.Errorf("Run(%s) = %+v, %v", ids[1], r, err)
	}
	for _, id := range []string{"999", "0", "01", "x"} {
		if _, err := s.Run(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Run(%q): %v", id, err)
		}
	}
	id, err := s.AddRun(Run{Job: "nightly", Result: ResultSuccess})
	if err != nil {
		t.Fatal(err)
	}
	if runs, _ := s.Runs("nightly", 1); len(runs) != 1 || runs[0].ID != id || id == ids[2] {
		t.Errorf("run added after reopening has ID %s; newest is %+v", id, runs)
	}
}

func TestStateMarksInterruptedRunsFailed(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir)
	id, err := s.AddRun(Run{Job: "nightly", Trigger: TriggerSchedule, Started: t0, Result: ResultRunning, VMs: []VMRun{
		{MoRef: "vm-1", Name: "a", Result: ResultSuccess, Point: "p1"},
		{MoRef: "vm-2", Name: "b", Result: ResultPending},
	}})
	if err != nil {
		t.Fatal(err)
	}
	finished, err := s.AddRun(Run{Job: "nightly", Result: ResultRunning})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRun(Run{ID: finished, Job: "nightly", Result: ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	s.Close() // as if the appliance had died

	for range 2 { // recovery is done once, and reopening again changes nothing
		s = openState(t, dir)
		r, err := s.Run(id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != ResultFailed || r.Error != "interrupted: the appliance stopped during the run" {
			t.Errorf("interrupted run: %q, %q", r.Result, r.Error)
		}
		if r.VMs[0].Result != ResultSuccess || r.VMs[0].Point != "p1" {
			t.Errorf("VM backed up before the crash: %+v", r.VMs[0])
		}
		if r.VMs[1].Result != ResultFailed || !strings.Contains(r.VMs[1].Error, "interrupted") {
			t.Errorf("VM unfinished at the crash: %+v", r.VMs[1])
		}
		if r, err := s.Run(finished); err != nil || r.Result != ResultSuccess {
			t.Errorf("finished run: %+v, %v", r, err)
		}
		s.Close()
	}
}

func TestStateLocked(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir)
	defer s.Close()
	_, err := OpenState(dir, nil)
	if !errors.Is(err, ErrStateLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second open: %v; want ErrStateLocked naming %s", err, dir)
	}
}
