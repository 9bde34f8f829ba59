package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

func TestRunJobRecordsEachVM(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(4), RunnerConfig{})
	g.bak.fail = map[string]error{"vm02": errBoom}
	g.bak.results = map[string]BackupResult{
		"vm03": {Point: "p3", FullReads: []string{"disk 0: change ID reset"}},
		"vm04": {Point: "p4", Warnings: []string{"snapshot removal retried"}},
	}
	run, err := g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != ResultPartial || run.Error != "1 of 4 VMs failed" {
		t.Errorf("run %q, %q; want partial, 1 of 4 VMs failed", run.Result, run.Error)
	}
	if run.Trigger != TriggerManual || !run.Scheduled.Equal(t0) || !run.Started.Equal(t0) || !run.Ended.Equal(t0) {
		t.Errorf("run %+v: want manual, scheduled, started and ended at %v", run, t0)
	}
	want := []VMRun{
		{MoRef: "vm-100", Name: "vm01", Result: ResultSuccess, Point: "point-vm01", Consistency: "quiesced", BytesRead: 100, BytesNew: 10, BytesStored: 5},
		{MoRef: "vm-101", Name: "vm02", Result: ResultFailed, Error: "boom"},
		{MoRef: "vm-102", Name: "vm03", Result: ResultSuccess, Point: "p3", FullReads: []string{"disk 0: change ID reset"}},
		{MoRef: "vm-103", Name: "vm04", Result: ResultWarning, Point: "p4", Warnings: []string{"snapshot removal retried"}},
	}
	if got, want := mustJSON(t, run.VMs), mustJSON(t, want); got != want {
		t.Errorf("VMs\n got %s\nwant %s", got, want)
	}
	stored, err := g.state.Run(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, stored), mustJSON(t, run); got != want {
		t.Errorf("stored run\n got %s\nwant %s", got, want)
	}
}

func TestRunJobReportsProgress(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(1), RunnerConfig{})
	run, err := g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) == 0 || kinds[len(kinds)-1] != EventRunEnded {
		e := g.waitEvent(t, ctx, "any", func(Event) bool { return true })
		if e.Job != "nightly" || e.RunID != run.ID {
			t.Errorf("event %+v: want job nightly, run %s", e, run.ID)
		}
		switch e.Kind {
		case EventQueued, EventStarted:
			if e.VM.Name != "vm01" {
				t.Errorf("%s event for %q", e.Kind, e.VM.Name)
			}
		case EventFinished:
			if e.Result == nil || e.Result.Result != ResultSuccess {
				t.Errorf("finished event with %+v", e.Result)
			}
		case EventRunEnded:
			if e.Run == nil || e.Run.Result != ResultSuccess {
				t.Errorf("run-ended event with %+v", e.Run)
			}
		}
		kinds = append(kinds, e.Kind)
	}
	want := []string{EventRunStarted, EventQueued, EventStarted, EventFinished, EventRunEnded}
	if !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
}

func TestRunJobLimits(t *testing.T) {
	ctx := testContext(t)
	// 20 VMs over three datastores, every fourth on two of them.
	stores := []string{"ds-a", "ds-b", "ds-c"}
	vms := make([]Target, 20)
	for i := range vms {
		ds := []string{stores[i%3]}
		if i%4 == 3 {
			ds = append(ds, stores[(i+1)%3])
		}
		vms[i] = Target{MoRef: fmt.Sprintf("vm-%d", i), Name: fmt.Sprintf("vm%02d", i), Folder: "/DC0/vm", Datastores: ds}
	}
	g := newRig(t, vms, RunnerConfig{Concurrency: 8, SnapshotsPerDatastore: 2})
	g.bak.gate = make(chan struct{})

	done := make(chan Run, 1)
	go func() {
		run, err := g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
		if err != nil {
			t.Error(err)
		}
		done <- run
	}()
	// Hold the backups until several run at once and a datastore is full,
	// which proves the limits leave room for parallelism, then let all go.
	for {
		g.bak.waitStarted(t, ctx, 1)
		g.bak.mu.Lock()
		parallel := g.bak.maxRunning > 2 && slices.Contains(mapValues(g.bak.maxPerStore), 2)
		g.bak.mu.Unlock()
		if parallel {
			break
		}
	}
	close(g.bak.gate)
	var run Run
	select {
	case run = <-done:
	case <-ctx.Done():
		t.Fatal("run did not end: deadlock?")
	}

	if g.bak.maxRunning > 8 {
		t.Errorf("%d backups ran at once, limit 8", g.bak.maxRunning)
	}
	for ds, n := range g.bak.maxPerStore {
		if n > 2 {
			t.Errorf("%d backups ran at once on %s, limit 2", n, ds)
		}
	}
	if run.Result != ResultSuccess || len(run.VMs) != 20 {
		t.Fatalf("run %s with %d VMs, want success with 20", run.Result, len(run.VMs))
	}
	for _, v := range run.VMs {
		if v.Result != ResultSuccess {
			t.Errorf("%s: %s %s", v.Name, v.Result, v.Error)
		}
	}
	if g.bak.callCount() != 20 {
		t.Errorf("%d backups, want 20", g.bak.callCount())
	}
}

func mapValues(m map[string]int) []int {
	var v []int
	for _, n := range m {
		v = append(v, n)
	}
	return v
}

func TestConcurrencyIsSharedByJobs(t *testing.T) {
	ctx := testContext(t)
	vms := vmsOn(6)
	for i := range vms {
		vms[i].Folder = fmt.Sprintf("/DC0/vm/%d", i%2)
	}
	g := newRig(t, vms, RunnerConfig{Concurrency: 2})
	g.bak.gate = make(chan struct{})
	a, b := testJob("a"), testJob("b")
	a.Selection.Folders, b.Selection.Folders = []string{"/DC0/vm/0"}, []string{"/DC0/vm/1"}
	for _, j := range []Job{a, b} {
		if _, err := g.runner.Start(ctx, j, TriggerManual, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// Once all six VMs are queued, the limiter has granted all it will
	// until a backup ends, and none can end while the gate is shut.
	for range 6 {
		g.waitEvent(t, ctx, "six VMs queued", func(e Event) bool { return e.Kind == EventQueued })
	}
	g.runner.limits.mu.Lock()
	running, queued := g.runner.limits.running, len(g.runner.limits.queue)
	g.runner.limits.mu.Unlock()
	if running != 2 || queued != 4 {
		t.Errorf("two jobs of three VMs with concurrency 2: %d running, %d queued; want 2 and 4", running, queued)
	}
	g.bak.waitStarted(t, ctx, 2)
	close(g.bak.gate)
	for range 2 {
		g.waitEvent(t, ctx, "both runs ended", func(e Event) bool { return e.Kind == EventRunEnded })
	}
	if g.bak.maxRunning != 2 || g.bak.callCount() != 6 {
		t.Errorf("%d backups, at most %d at once; want 6, at most 2", g.bak.callCount(), g.bak.maxRunning)
	}
}

func TestWindowClosesMidRun(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(5), RunnerConfig{Concurrency: 2})
	g.bak.gate = make(chan struct{})
	job := testJob("nightly")
	job.Window = Window{Start: "22:00", Duration: time.Hour}

	done := make(chan Run, 1)
	go func() {
		run, err := g.runner.RunJob(ctx, job, TriggerSchedule, t0)
		if err != nil {
			t.Error(err)
		}
		done <- run
	}()
	if got := g.bak.waitStarted(t, ctx, 2); !slices.Equal(sorted(got), []string{"vm01", "vm02"}) {
		t.Errorf("first backups %v, want vm01 and vm02", got)
	}
	g.clock.Set(t0.Add(time.Hour)) // the window closes
	// The backups under way go on to the end.
	close(g.bak.gate)
	run := <-done

	var results []string
	for _, v := range run.VMs {
		results = append(results, v.Name+":"+v.Result)
		if v.Result == ResultDeferred && !strings.Contains(v.Error, "backup window (22:00 for 1h0m0s) closed at 2026-03-02 23:00 UTC") {
			t.Errorf("%s deferred with %q", v.Name, v.Error)
		}
	}
	want := []string{"vm01:success", "vm02:success", "vm03:deferred", "vm04:deferred", "vm05:deferred"}
	if !slices.Equal(results, want) {
		t.Errorf("VMs %v, want %v", results, want)
	}
	if run.Result != ResultPartial || run.Error != "3 of 5 VMs deferred (backup window closed)" {
		t.Errorf("run %q, %q", run.Result, run.Error)
	}
	if n := g.bak.callCount(); n != 2 {
		t.Errorf("%d backups started, want 2", n)
	}
}

func TestWindowOutsideSchedule(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(2), RunnerConfig{})
	job := testJob("nightly")
	job.Window = Window{Start: "01:00", Duration: time.Hour} // t0 is 22:00

	run, err := g.runner.RunJob(ctx, job, TriggerSchedule, t0)
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != ResultFailed || g.bak.callCount() != 0 {
		t.Errorf("scheduled outside its window: run %s with %d backups; want failed with none", run.Result, g.bak.callCount())
	}
	if len(run.VMs) != 2 || run.VMs[0].Result != ResultDeferred || !strings.Contains(run.VMs[0].Error, "outside the backup window") {
		t.Errorf("VMs %+v: want deferred, outside the backup window", run.VMs)
	}

	// Asked for by hand, a run outside the window ignores it.
	run, err = g.runner.RunJob(ctx, job, TriggerManual, t0)
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != ResultSuccess || g.bak.callCount() != 2 {
		t.Errorf("manual run outside the window: %s with %d backups; want success with 2", run.Result, g.bak.callCount())
	}
}

func TestCancel(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(4), RunnerConfig{Concurrency: 2})
	g.bak.gate = make(chan struct{}) // never opened: backups end when cancelled
	job := testJob("nightly")

	done := make(chan Run, 1)
	go func() {
		run, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{})
		if err != nil {
			t.Error(err)
		}
		done <- run
	}()
	g.bak.waitStarted(t, ctx, 2)
	if got := g.runner.Running(); !slices.Equal(got, []string{"nightly"}) {
		t.Errorf("Running = %v", got)
	}
	if !g.runner.Cancel("nightly") {
		t.Fatal("Cancel found no run")
	}
	run := <-done

	if run.Result != ResultCancelled || run.Error != ErrCancelled.Error() {
		t.Errorf("run %q, %q; want cancelled by the operator", run.Result, run.Error)
	}
	for _, v := range run.VMs {
		if v.Result != ResultCancelled || v.Error != ErrCancelled.Error() {
			t.Errorf("%s: %q, %q; want cancelled", v.Name, v.Result, v.Error)
		}
	}
	if got := sorted(g.bak.cancelled); !slices.Equal(got, []string{"vm01", "vm02"}) {
		t.Errorf("backups that saw the cancellation: %v, want vm01 and vm02", got)
	}
	if n := g.bak.callCount(); n != 2 {
		t.Errorf("%d backups started, want 2", n)
	}
	if calls := g.ret.called(); len(calls) != 0 {
		t.Errorf("retention applied after a cancelled run: %v", calls)
	}
	if stored, err := g.state.Run(run.ID); err != nil || stored.Result != ResultCancelled {
		t.Errorf("stored run %+v, %v", stored, err)
	}
	if len(g.runner.Running()) != 0 || g.runner.Cancel("nightly") {
		t.Error("the run still counts as running")
	}
}

func TestOneRunPerJob(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(1), RunnerConfig{})
	g.bak.gate = make(chan struct{})
	job := testJob("nightly")
	e, err := g.runner.Start(ctx, job, TriggerManual, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	g.bak.waitStarted(t, ctx, 1)

	// A crash now would leave the run recorded as running.
	runs, err := g.state.Runs("nightly", 0)
	if err != nil || len(runs) != 1 || runs[0].Result != ResultRunning || runs[0].ID != e.ID() {
		t.Fatalf("history while running: %+v, %v", runs, err)
	}

	_, err = g.runner.RunJob(ctx, job, TriggerManual, time.Time{})
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "job nightly: already running (run "+e.ID()+")") {
		t.Errorf("second run: %v", err)
	}
	// Another job is not held up.
	other := testJob("other")
	other.Selection = Selection{VMs: []string{"nothing"}}
	if _, err := g.runner.RunJob(ctx, other, TriggerManual, time.Time{}); err != nil {
		t.Errorf("other job: %v", err)
	}

	close(g.bak.gate)
	run, err := e.Wait(ctx)
	if err != nil || run.Result != ResultSuccess {
		t.Fatalf("first run: %+v, %v", run, err)
	}
	if _, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{}); err != nil {
		t.Errorf("run after the first ended: %v", err)
	}
}

func TestRetention(t *testing.T) {
	ctx := testContext(t)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("after a run that made points, in the job's zone", func(t *testing.T) {
		g := newRig(t, vmsOn(2), RunnerConfig{})
		g.bak.fail = map[string]error{"vm01": errBoom}
		job := testJob("nightly")
		job.TimeZone = "Europe/Berlin"
		job.Retention = retention.Policy{Daily: 7, Weekly: 4}
		if _, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{}); err != nil {
			t.Fatal(err)
		}
		calls := g.ret.called()
		if len(calls) != 1 || calls[0].job != "nightly" || calls[0].policy.Daily != 7 || calls[0].policy.Weekly != 4 ||
			calls[0].policy.Location.String() != berlin.String() {
			t.Errorf("Retain calls %+v, want one for nightly, daily 7, weekly 4, in Europe/Berlin", calls)
		}
	})

	t.Run("a policy's own location stands", func(t *testing.T) {
		g := newRig(t, vmsOn(1), RunnerConfig{})
		job := testJob("nightly")
		job.Retention = retention.Policy{Last: 1, Location: berlin}
		if _, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if calls := g.ret.called(); len(calls) != 1 || calls[0].policy.Location != berlin {
			t.Errorf("Retain calls %+v", calls)
		}
	})

	t.Run("not with an empty policy", func(t *testing.T) {
		g := newRig(t, vmsOn(1), RunnerConfig{})
		job := testJob("nightly")
		job.Retention = retention.Policy{}
		run, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{})
		if err != nil || run.Result != ResultSuccess {
			t.Fatalf("run %+v, %v", run, err)
		}
		if calls := g.ret.called(); len(calls) != 0 {
			t.Errorf("Retain called: %+v", calls)
		}
	})

	t.Run("not when no point was made", func(t *testing.T) {
		g := newRig(t, vmsOn(1), RunnerConfig{})
		g.bak.fail = map[string]error{"vm01": errBoom}
		run, err := g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
		if err != nil || run.Result != ResultFailed {
			t.Fatalf("run %+v, %v", run, err)
		}
		if calls := g.ret.called(); len(calls) != 0 {
			t.Errorf("Retain called: %+v", calls)
		}
	})

	t.Run("a failure is a warning and keeps the history", func(t *testing.T) {
		g := newRig(t, vmsOn(1), RunnerConfig{})
		g.ret.err = errBoom
		run, err := g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if run.Result != ResultWarning || run.Error != "retention: boom" || run.VMs[0].Result != ResultSuccess {
			t.Errorf("run %+v: want warning, retention: boom, VM success", run)
		}
		if stored, err := g.state.Run(run.ID); err != nil || stored.Result != ResultWarning {
			t.Errorf("stored %+v, %v", stored, err)
		}
	})
}

func TestRunFailsWithoutVMs(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(1), RunnerConfig{})
	job := testJob("nightly")
	job.Selection = Selection{VMs: []string{"gone"}}
	run, err := g.runner.RunJob(ctx, job, TriggerManual, time.Time{})
	if err != nil || run.Result != ResultFailed || run.Error != "the selection matches no VM" {
		t.Errorf("run %+v, %v", run, err)
	}

	g.inv.err = errBoom
	run, err = g.runner.RunJob(ctx, testJob("nightly"), TriggerManual, time.Time{})
	if err != nil || run.Result != ResultFailed || run.Error != "list VMs: boom" {
		t.Errorf("run %+v, %v", run, err)
	}
	if runs, err := g.state.Runs("nightly", 0); err != nil || len(runs) != 2 || runs[0].Error != "list VMs: boom" {
		t.Errorf("history %+v, %v", runs, err)
	}
}

func TestStartRejects(t *testing.T) {
	ctx := testContext(t)
	g := newRig(t, vmsOn(1), RunnerConfig{})
	bad := testJob("nightly")
	bad.Schedule = "nope"
	if _, err := g.runner.Start(ctx, bad, TriggerManual, time.Time{}); err == nil || !strings.Contains(err.Error(), `invalid schedule "nope"`) {
		t.Errorf("invalid job: %v", err)
	}
	if _, err := g.runner.Start(ctx, testJob("nightly"), "cron", time.Time{}); err == nil || !strings.Contains(err.Error(), `unknown trigger "cron"`) {
		t.Errorf("bad trigger: %v", err)
	}
	if _, err := NewRunner(RunnerConfig{}); err == nil {
		t.Error("NewRunner without its parts: no error")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
