package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

var (
	// ErrAlreadyRunning is returned, wrapped, when a job is asked to run
	// while a run of it is under way.
	ErrAlreadyRunning = errors.New("already running")

	// ErrCancelled is the cause of the cancellation of a run that
	// Runner.Cancel stopped.
	ErrCancelled = errors.New("cancelled by the operator")
)

// Defaults of RunnerConfig.
const (
	DefaultConcurrency           = 8
	DefaultSnapshotsPerDatastore = 2
)

// RunnerConfig is what a Runner works with. Inventory, Backuper, Retainer
// and State are required.
type RunnerConfig struct {
	Inventory Inventory
	Backuper  Backuper
	Retainer  Retainer
	State     *State

	// Clock defaults to SystemClock.
	Clock Clock

	// Concurrency is the most VM backups that run at once, over all jobs;
	// 0 means DefaultConcurrency.
	Concurrency int

	// SnapshotsPerDatastore is the most VM backups that run at once on
	// each datastore, over all jobs; 0 means DefaultSnapshotsPerDatastore.
	SnapshotsPerDatastore int

	// Progress, if set, is told as each VM of a run is queued, started and
	// finished. It is called from many goroutines and must not block.
	Progress func(Event)

	// Log defaults to discarding.
	Log *slog.Logger
}

// An Event reports the progress of a run.
type Event struct {
	Job   string
	RunID string
	Kind  string // one of the Event kinds below

	// Run is the run as recorded, for EventRunStarted and EventRunEnded.
	Run *Run

	// VM is the VM that EventQueued, EventStarted and EventFinished are
	// about.
	VM Target

	// Result is the VM's record in the run, for EventFinished. VMs that
	// are deferred or cancelled before they start finish without having
	// started.
	Result *VMRun
}

// Kinds of Event. A run starts, its VMs are queued, started and finished,
// and the run ends. When EventRunEnded is reported the job no longer
// counts as running.
const (
	EventRunStarted = "run-started"
	EventQueued     = "queued"
	EventStarted    = "started"
	EventFinished   = "finished"
	EventRunEnded   = "run-ended"
)

// A Runner runs jobs: it backs up the VMs that a job selects, within the
// limits of the appliance, records the run in the history and applies the
// job's retention policy. Its limits are shared by all the jobs it runs.
type Runner struct {
	inventory Inventory
	backuper  Backuper
	retainer  Retainer
	state     *State
	clock     Clock
	progress  func(Event)
	log       *slog.Logger
	limits    *limiter

	mu     sync.Mutex
	active map[string]*Execution // by job name
	runs   sync.WaitGroup        // every run started, until it ends
}

// NewRunner returns a Runner with the given configuration.
func NewRunner(c RunnerConfig) (*Runner, error) {
	switch {
	case c.Inventory == nil, c.Backuper == nil, c.Retainer == nil, c.State == nil:
		return nil, errors.New("new runner: Inventory, Backuper, Retainer and State are required")
	case c.Concurrency < 0:
		return nil, fmt.Errorf("new runner: concurrency %d is negative", c.Concurrency)
	case c.SnapshotsPerDatastore < 0:
		return nil, fmt.Errorf("new runner: snapshots per datastore %d is negative", c.SnapshotsPerDatastore)
	}
	r := &Runner{
		inventory: c.Inventory,
		backuper:  c.Backuper,
		retainer:  c.Retainer,
		state:     c.State,
		clock:     c.Clock,
		progress:  c.Progress,
		log:       c.Log,
		limits: newLimiter(
			cmp0(c.Concurrency, DefaultConcurrency),
			cmp0(c.SnapshotsPerDatastore, DefaultSnapshotsPerDatastore)),
		active: make(map[string]*Execution),
	}
	if r.clock == nil {
		r.clock = SystemClock{}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.progress == nil {
		r.progress = func(Event) {}
	}
	return r, nil
}

// cmp0 returns v, or def if v is zero.
func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// An Execution is a run under way.
type Execution struct {
	job    string
	id     string // set under Runner.mu before Start returns
	cancel context.CancelCauseFunc
	done   chan struct{}

	// Set before done is closed.
	run Run
	err error
}

// ID returns the ID of the run in the history.
func (e *Execution) ID() string { return e.id }

// Job returns the name of the job.
func (e *Execution) Job() string { return e.job }

// Done is closed when the run has ended and its end is recorded.
func (e *Execution) Done() <-chan struct{} { return e.done }

// Wait waits for the run to end and returns it as recorded, or ctx's error
// if ctx ends first, which leaves the run running. The error is that of
// recording the run; a run that failed is told by its Result.
func (e *Execution) Wait(ctx context.Context) (Run, error) {
	select {
	case <-e.done:
		return e.run, e.err
	case <-ctx.Done():
		return Run{}, ctx.Err()
	}
}

// Start starts a run of job, enabled or not, and returns once the run is
// recorded as running. The run goes on in the background until it ends,
// until ctx ends or until Cancel stops it: ctx bounds the whole run, not
// only the call. A zero scheduled means now. Start fails if the job is
// invalid or already running on r.
func (r *Runner) Start(ctx context.Context, job Job, trigger string, scheduled time.Time) (*Execution, error) {
	if err := job.Validate(); err != nil {
		return nil, err
	}
	if trigger != TriggerSchedule && trigger != TriggerManual {
		return nil, fmt.Errorf("run job %s: unknown trigger %q", job.Name, trigger)
	}
	loc, err := job.Location()
	if err != nil {
		return nil, fmt.Errorf("run job %s: %w", job.Name, err)
	}
	now := r.clock.Now()
	if scheduled.IsZero() {
		scheduled = now
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	e := &Execution{job: job.Name, cancel: cancel, done: make(chan struct{})}

	r.mu.Lock()
	if old := r.active[job.Name]; old != nil {
		r.mu.Unlock()
		cancel(nil)
		return nil, fmt.Errorf("job %s: %w (run %s)", job.Name, ErrAlreadyRunning, old.id)
	}
	r.active[job.Name] = e
	r.mu.Unlock()

	// Recorded before any work, so that a crash leaves a trace.
	run := Run{Job: job.Name, Trigger: trigger, Scheduled: scheduled, Started: now, Result: ResultRunning}
	id, err := r.state.AddRun(run)
	if err != nil {
		r.finish(e)
		cancel(nil)
		return nil, fmt.Errorf("run job %s: %w", job.Name, err)
	}
	run.ID = id
	r.mu.Lock()
	e.id = id
	r.mu.Unlock()

	r.log.Info("run started", "job", job.Name, "run", id, "trigger", trigger, "scheduled", scheduled)
	started := run
	r.progress(Event{Job: job.Name, RunID: id, Kind: EventRunStarted, Run: &started})
	r.runs.Add(1)
	go func() {
		defer r.runs.Done()
		defer close(e.done)
		e.run, e.err = r.execute(runCtx, job, run, loc)
		cancel(nil)
		r.finish(e)
		ended := e.run
		r.progress(Event{Job: job.Name, RunID: id, Kind: EventRunEnded, Run: &ended})
	}()
	return e, nil
}

// RunJob runs job and returns the run as recorded. The error is about
// starting or recording the run; how the run went is in its Result.
func (r *Runner) RunJob(ctx context.Context, job Job, trigger string, scheduled time.Time) (Run, error) {
	e, err := r.Start(ctx, job, trigger, scheduled)
	if err != nil {
		return Run{}, err
	}
	<-e.done
	return e.run, e.err
}

// Cancel cancels the run of job under way, and reports whether there was
// one. VMs whose backup has not started are not started, and those whose
// backup is running have it cancelled.
func (r *Runner) Cancel(job string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.active[job]
	if e == nil {
		return false
	}
	e.cancel(ErrCancelled)
	return true
}

// Wait waits until every run started on r has ended and been recorded. An
// appliance that stops cancels the runs' contexts, then waits, then closes
// the store and the state.
func (r *Runner) Wait() { r.runs.Wait() }

// Running returns the names of the jobs that have a run under way, sorted.
func (r *Runner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.active))
	for name := range r.active {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (r *Runner) finish(e *Execution) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[e.job] == e {
		delete(r.active, e.job)
	}
}
