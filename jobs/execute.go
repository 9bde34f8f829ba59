package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// errWindowClosed gives up a VM's place in the queue when the backup window
// closes before the VM could start.
var errWindowClosed = errors.New("backup window closed")

// execute does the work of a run that Start recorded as running, and
// records its end.
func (r *Runner) execute(ctx context.Context, job Job, run Run, loc *time.Location) (Run, error) {
	rec := &recorder{run: run, state: r.state, r: r}
	rec.vms(ctx, job, loc)

	run = rec.run
	switch {
	case ctx.Err() != nil:
		// However far the VMs got, the operator (or shutdown) asked the
		// run to stop, so it also skips retention.
		run.Result, run.Error = ResultCancelled, context.Cause(ctx).Error()
	case run.Error != "":
		run.Result = ResultFailed
	default:
		run.Result, run.Error = summarize(run.VMs)
		if err := r.retain(ctx, job, loc, run.VMs); err != nil {
			if run.Result == ResultSuccess {
				run.Result = ResultWarning
			}
			run.Error = joinNonEmpty("; ", run.Error, err.Error())
		}
	}
	run.Ended = r.clock.Now()
	// The end is recorded and the job released at once, so that whoever
	// reads the run as ended can start the job again.
	r.mu.Lock()
	_, err := r.state.AddRun(run)
	if r.active[job.Name] != nil && r.active[job.Name].id == run.ID {
		delete(r.active, job.Name)
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Error("cannot record the end of a run", "job", job.Name, "run", run.ID, "err", err)
		return run, err
	}
	r.log.Info("run ended", "job", job.Name, "run", run.ID, "result", run.Result, "error", run.Error,
		"duration", run.Ended.Sub(run.Started))
	return run, nil
}

// retain applies the job's retention policy if the run made a point.
func (r *Runner) retain(ctx context.Context, job Job, loc *time.Location, vms []VMRun) error {
	if job.Retention.Empty() || !slices.ContainsFunc(vms, VMRun.Done) {
		return nil
	}
	p := job.Retention
	if p.Location == nil {
		p.Location = loc // the operator's days are the job's days
	}
	if err := r.retainer.Retain(ctx, job.Name, p); err != nil {
		r.log.Warn("retention failed", "job", job.Name, "policy", p.String(), "err", err)
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}

// A recorder keeps the record of a run while its VMs are backed up, and
// writes it to the state after each VM so that a crash loses as little of
// it as possible.
type recorder struct {
	r     *Runner
	state *State

	mu  sync.Mutex // guards run, and orders the writes of it
	run Run
}

// A window is the backup window of a run, from the point of view of a VM
// about to start.
type window struct {
	limited bool          // whether a window applies
	closes  time.Time     // when it closes, if limited
	closed  chan struct{} // closed when it closes, if limited
	why     string        // recorded for VMs deferred because of it
}

// vms backs up the VMs of the run, and leaves an error in rec.run.Error if
// it could not find them.
func (rec *recorder) vms(ctx context.Context, job Job, loc *time.Location) {
	r := rec.r
	vc, err := r.state.JobVCenter(job)
	if err != nil {
		rec.run.Error = err.Error()
		return
	}
	all, err := r.inventory.VMs(ctx, vc.Name)
	if err != nil {
		rec.run.Error = fmt.Sprintf("list VMs: %v", err)
		return
	}
	targets := job.Selection.Resolve(all)
	if len(targets) == 0 {
		rec.run.Error = "the selection matches no VM"
		return
	}
	rec.run.VMs = make([]VMRun, len(targets))
	for i, t := range targets {
		rec.run.VMs[i] = VMRun{MoRef: t.MoRef, Name: t.Name, Result: ResultPending}
	}
	rec.save()

	w := rec.window(job, loc)
	finished := make(chan struct{})
	defer close(finished)
	if w.limited {
		// Wakes the VMs still waiting for their turn when the window
		// closes, so that they are deferred then, not when a slot frees.
		w.closed = make(chan struct{})
		go func() {
			select {
			case <-r.clock.After(w.closes.Sub(r.clock.Now())):
				close(w.closed)
			case <-finished:
			}
		}()
	}

	runID := rec.run.ID
	var wg sync.WaitGroup
	for i, t := range targets {
		// Queued here, in order, so that VMs start in the order of the
		// selection; the tasks only wait for their turn.
		ticket := r.limits.enqueue(t.Datastores)
		r.progress(Event{Job: job.Name, RunID: runID, VM: t, Kind: EventQueued})
		wg.Go(func() {
			v := rec.backup(ctx, BackupRequest{Job: job.Name, VCenter: vc.Name, VM: t}, runID, ticket, w)
			rec.set(i, v)
			r.progress(Event{Job: job.Name, RunID: runID, VM: t, Kind: EventFinished, Result: &v})
		})
	}
	wg.Wait()
}

// window returns the backup window that governs the run.
func (rec *recorder) window(job Job, loc *time.Location) window {
	sched := rec.run.Scheduled
	closes, ok := job.Window.closes(sched, loc)
	switch {
	case ok && closes.IsZero():
		return window{}
	case ok:
		w := window{limited: true, closes: closes}
		w.why = fmt.Sprintf("the backup window (%s) closed at %s before the backup could start",
			job.Window, closes.In(loc).Format("2006-01-02 15:04 MST"))
		return w
	case rec.run.Trigger == TriggerManual:
		// Asking for a run outside the window is asking to ignore it.
		return window{}
	default:
		// A schedule that fires outside the window gets no time to run.
		return window{limited: true, closes: sched,
			why: fmt.Sprintf("scheduled at %s, outside the backup window (%s)",
				sched.In(loc).Format("2006-01-02 15:04 MST"), job.Window)}
	}
}

// backup backs up one VM once its ticket comes up.
func (rec *recorder) backup(ctx context.Context, req BackupRequest, runID string, ticket *ticket, w window) VMRun {
	r := rec.r
	job, t := req.Job, req.VM
	v := VMRun{MoRef: t.MoRef, Name: t.Name}
	if err := ticket.wait(ctx, w.closed, errWindowClosed); err != nil {
		if errors.Is(err, errWindowClosed) {
			v.Result, v.Error = ResultDeferred, w.why
		} else {
			v.Result, v.Error = ResultCancelled, err.Error()
		}
		return v
	}
	defer ticket.release()
	// Waiting may have taken long: check again what may have changed.
	if ctx.Err() != nil {
		v.Result, v.Error = ResultCancelled, context.Cause(ctx).Error()
		return v
	}
	if w.limited && !r.clock.Now().Before(w.closes) {
		v.Result, v.Error = ResultDeferred, w.why
		return v
	}

	r.progress(Event{Job: job, RunID: runID, VM: t, Kind: EventStarted})
	start := r.clock.Now()
	res, err := r.backuper.BackupVM(ctx, req)
	v.Duration = r.clock.Now().Sub(start)
	switch {
	case err != nil && ctx.Err() != nil:
		v.Result, v.Error = ResultCancelled, context.Cause(ctx).Error()
	case err != nil:
		v.Result, v.Error = ResultFailed, err.Error()
		r.log.Warn("VM backup failed", "job", job, "vm", t.Name, "moref", t.MoRef, "err", err)
	default:
		v.Result = ResultSuccess
		if len(res.Warnings) > 0 {
			v.Result = ResultWarning
		}
		v.Point, v.Consistency = res.Point, res.Consistency
		v.BytesRead, v.BytesNew, v.BytesStored = res.BytesRead, res.BytesNew, res.BytesStored
		v.FullReads, v.Warnings = res.FullReads, res.Warnings
		r.log.Info("VM backed up", "job", job, "vm", t.Name, "moref", t.MoRef, "point", res.Point,
			"result", v.Result, "duration", v.Duration)
	}
	return v
}

// set records the outcome of VM i.
func (rec *recorder) set(i int, v VMRun) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.run.VMs[i] = v
	rec.saveLocked()
}

func (rec *recorder) save() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.saveLocked()
}

// saveLocked writes the run as it stands. A failure is logged, not
// returned: the run goes on, and its end is written again.
func (rec *recorder) saveLocked() {
	if _, err := rec.state.AddRun(rec.run); err != nil {
		rec.r.log.Warn("cannot record the progress of a run", "job", rec.run.Job, "run", rec.run.ID, "err", err)
	}
}

func joinNonEmpty(sep string, parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), sep)
}
