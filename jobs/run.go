package jobs

import (
	"fmt"
	"strings"
	"time"
)

// Triggers say what started a run.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// Results of runs and of the VMs in them. A run is ResultRunning only while
// it runs; a VM is ResultPending until its backup ends or is given up.
const (
	ResultSuccess   = "success"
	ResultWarning   = "warning"
	ResultFailed    = "failed"
	ResultCancelled = "cancelled"
	ResultPartial   = "partial"  // runs only: some VMs were not backed up
	ResultDeferred  = "deferred" // VMs only: the backup window closed first
	ResultRunning   = "running"  // runs only
	ResultPending   = ""         // VMs only
)

// interruptedError is recorded for runs, and their VMs, that were still
// running when the appliance stopped.
const interruptedError = "interrupted: the appliance stopped during the run"

// A Run is one execution of a job, as kept in the history.
type Run struct {
	ID      string `json:"id"`
	Job     string `json:"job"`
	Trigger string `json:"trigger"`

	// Scheduled is the time the run was due; its backup window is the one
	// that contains it. For manual runs it is when they were asked for.
	Scheduled time.Time `json:"scheduled"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended,omitzero"` // zero if the run was interrupted

	Result string  `json:"result"`
	VMs    []VMRun `json:"vms,omitempty"`

	// Error explains a result other than success, for the run as a whole.
	Error string `json:"error,omitempty"`
}

// A VMRun is the backup of one VM in a run.
type VMRun struct {
	MoRef  string `json:"moref"`
	Name   string `json:"name"`
	Result string `json:"result"`

	Point       string        `json:"point,omitempty"`
	Consistency string        `json:"consistency,omitempty"`
	BytesRead   int64         `json:"bytes_read"`
	BytesNew    int64         `json:"bytes_new"`
	BytesStored int64         `json:"bytes_stored"`
	Duration    time.Duration `json:"duration_ns"`
	FullReads   []string      `json:"full_reads,omitempty"`
	Warnings    []string      `json:"warnings,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// Done reports whether the VM was backed up, with or without warnings.
func (v VMRun) Done() bool { return v.Result == ResultSuccess || v.Result == ResultWarning }

// summarize returns the result of a run that was not cancelled from those
// of its VMs, and for a result other than success or warning a line that
// says why.
func summarize(vms []VMRun) (result, why string) {
	var warned, failed, deferred, other int
	for _, v := range vms {
		switch v.Result {
		case ResultSuccess:
		case ResultWarning:
			warned++
		case ResultFailed:
			failed++
		case ResultDeferred:
			deferred++
		default:
			other++
		}
	}
	missed := failed + deferred + other
	switch {
	case len(vms) == 0:
		return ResultFailed, "no VM selected"
	case missed == 0 && warned > 0:
		return ResultWarning, ""
	case missed == 0:
		return ResultSuccess, ""
	}
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{failed, "failed"}, {deferred, "deferred (backup window closed)"}, {other, "not backed up"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d VMs %s", c.n, len(vms), c.what))
		}
	}
	why = strings.Join(parts, ", ")
	if missed == len(vms) {
		return ResultFailed, why
	}
	return ResultPartial, why
}
