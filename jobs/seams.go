package jobs

import (
	"context"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// An Inventory lists the VMs that jobs can select, by vCenter: a job selects
// among the VMs of its own vCenter.
type Inventory interface {
	VMs(ctx context.Context, vcenter string) ([]Target, error)
}

// A BackupRequest asks for one VM to be backed up for a job.
type BackupRequest struct {
	Job     string
	VCenter string // the name of the vCenter the VM is in
	VM      Target
}

// A BackupResult describes the point that a backup made.
type BackupResult struct {
	Point       string // the new restore point's ID
	Consistency string // such as "quiesced" or "crash-consistent"

	BytesRead, BytesNew, BytesStored int64

	// FullReads gives, per disk that had to be read in full, the reason,
	// such as a reset change ID. They are normal, not warnings.
	FullReads []string

	// Warnings are problems that did not prevent the point, such as a
	// snapshot that could not be removed.
	Warnings []string
}

// A Backuper backs up one VM. When ctx is cancelled it stops, removes its
// snapshot and makes no point.
type Backuper interface {
	BackupVM(ctx context.Context, req BackupRequest) (BackupResult, error)
}

// A Retainer applies a job's retention policy to that job's points.
type Retainer interface {
	Retain(ctx context.Context, job string, p retention.Policy) error
}

// A Clock tells the time and waits. The runner and the scheduler take all
// their time from one, so that tests can move time by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real time.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
