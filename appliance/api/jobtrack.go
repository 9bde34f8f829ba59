package api

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/events"
	"github.com/bulwarkbackup/bulwark/appliance/metrics"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// Types of the events that job runs publish.
const (
	EventJobRun     = "job-run"     // JobRunEvent: a run started or ended, a VM was queued, started or finished
	EventVMProgress = "vm-progress" // VMProgressEvent: how far a VM's disk has been read
)

// JobRunEvent is the data of an EventJobRun event.
type JobRunEvent struct {
	Job    string      `json:"job"`
	RunID  string      `json:"run_id"`
	TaskID string      `json:"task_id,omitempty"`
	Kind   string      `json:"kind"` // run-started, queued, started, finished, run-ended
	VM     string      `json:"vm,omitempty"`
	Result *jobs.VMRun `json:"result,omitempty"` // for finished
	Run    *jobs.Run   `json:"run,omitempty"`    // for run-started and run-ended
}

// VMProgressEvent is the data of an EventVMProgress event.
type VMProgressEvent struct {
	VM    string `json:"vm"`
	Disk  int    `json:"disk"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// progressEvery is how often a disk's reading is published at most.
const progressEvery = 500 * time.Millisecond

// A JobTracker follows the job runner's runs, whether the scheduler or the
// API started them: it makes each run a task, publishes its progress as
// events and counts it in the metrics. Its Event method is the runner's
// Progress, and its VMProgress the fleet's.
type JobTracker struct {
	tasks   *tasks.Manager
	hub     *events.Hub
	metrics *metrics.Metrics
	log     *slog.Logger

	// Cancel cancels a job's run; it is set once the runner exists.
	Cancel func(job string) bool

	mu       sync.Mutex
	runs     map[string]*trackedRun // by run ID
	progress map[progressKey]time.Time
}

type trackedRun struct {
	taskID        string
	rep           *tasks.Reporter
	finish        func(result any, err error, cancelled bool)
	queued, ended int64 // VMs
}

type progressKey struct {
	vm   string
	disk int
}

// NewJobTracker returns a tracker that reports to t, hub and m.
func NewJobTracker(t *tasks.Manager, hub *events.Hub, m *metrics.Metrics, log *slog.Logger) *JobTracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &JobTracker{tasks: t, hub: hub, metrics: m, log: log,
		runs: map[string]*trackedRun{}, progress: map[progressKey]time.Time{}}
}

// TaskOf returns the ID of the task that follows run runID, or "".
func (t *JobTracker) TaskOf(runID string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.runs[runID]; tr != nil {
		return tr.taskID
	}
	return ""
}

// Event takes a job runner's event.
func (t *JobTracker) Event(e jobs.Event) {
	ev := JobRunEvent{Job: e.Job, RunID: e.RunID, Kind: e.Kind, VM: e.VM.Name, Result: e.Result, Run: e.Run}
	t.mu.Lock()
	tr := t.runs[e.RunID]
	switch e.Kind {
	case jobs.EventRunStarted:
		job := e.Job
		task, rep, finish, err := t.tasks.Track(tasks.Spec{Kind: "job-run", Target: job}, func() {
			if t.Cancel != nil {
				t.Cancel(job)
			}
		})
		if err != nil {
			t.log.Warn("cannot follow a job run as a task", "job", job, "run", e.RunID, "err", err)
			break
		}
		rep.Phase("backup", 0)
		tr = &trackedRun{taskID: task.ID, rep: rep, finish: finish}
		t.runs[e.RunID] = tr
	case jobs.EventQueued:
		if tr != nil {
			tr.queued++
			tr.rep.Phase("backup", tr.queued)
			tr.rep.Set(tr.ended)
		}
	case jobs.EventFinished:
		v := e.Result
		t.metrics.VMBackups.WithLabelValues(v.Result).Inc()
		t.metrics.BackupBytes.WithLabelValues("read").Add(float64(v.BytesRead))
		t.metrics.BackupBytes.WithLabelValues("new").Add(float64(v.BytesNew))
		t.metrics.BackupBytes.WithLabelValues("stored").Add(float64(v.BytesStored))
		if tr != nil {
			tr.ended++
			tr.rep.Set(tr.ended)
		}
	case jobs.EventRunEnded:
		t.metrics.JobRuns.WithLabelValues(e.Job, e.Run.Result).Inc()
		if tr != nil {
			delete(t.runs, e.RunID)
			var err error
			if e.Run.Result != jobs.ResultSuccess && e.Run.Result != jobs.ResultWarning {
				err = errors.New(e.Run.Result + ": " + e.Run.Error)
			}
			tr.finish(e.Run, err, e.Run.Result == jobs.ResultCancelled)
		}
	}
	if tr != nil {
		ev.TaskID = tr.taskID
	}
	t.mu.Unlock()
	t.hub.Publish(EventJobRun, ev)
}

// VMProgress takes how far a VM's disk has been read, and publishes it at
// most every progressEvery per disk, and always when the disk is done.
func (t *JobTracker) VMProgress(vm string, disk int, done, total int64) {
	k := progressKey{vm, disk}
	now := time.Now()
	t.mu.Lock()
	last, seen := t.progress[k]
	publish := !seen || now.Sub(last) >= progressEvery || done >= total
	if publish {
		t.progress[k] = now
	}
	if done >= total {
		delete(t.progress, k)
	}
	t.mu.Unlock()
	if publish {
		t.hub.Publish(EventVMProgress, VMProgressEvent{VM: vm, Disk: disk, Done: done, Total: total})
	}
}
