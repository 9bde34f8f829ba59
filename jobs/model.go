package jobs

import (
	"fmt"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// A Job is a set of VMs that are backed up together, on one schedule, within
// one backup window, and whose points are kept by one retention policy.
type Job struct {
	// Name identifies the job; see Validate for what it may contain.
	Name      string    `json:"name"`
	Selection Selection `json:"selection"`

	// VCenter names the vCenter, as stored in the State, whose VMs the job
	// selects; empty means the only vCenter, if exactly one is stored.
	VCenter string `json:"vcenter,omitempty"`

	// Schedule is a standard five-field cron expression ("30 2 * * *") or a
	// descriptor such as "@daily", read in TimeZone.
	Schedule string `json:"schedule"`

	// TimeZone is an IANA zone name such as "Europe/Berlin"; empty means
	// UTC. It applies to Schedule, Window and, unless the policy names its
	// own location, to the buckets of Retention.
	TimeZone string `json:"time_zone,omitempty"`

	Window Window `json:"window"`

	// Retention is applied to the job's points after each run that made
	// one. The empty policy keeps every point.
	Retention retention.Policy `json:"retention"`

	Enabled bool      `json:"enabled"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
}

// A Selection says which VMs a job backs up. A VM is selected if any of VMs,
// Folders or Clusters matches it, unless Exclude does.
type Selection struct {
	// VMs lists VMs by name, managed object reference ("vm-42") or
	// instance UUID.
	VMs []string `json:"vms,omitempty"`

	// Folders lists inventory folder paths such as "/DC0/vm/prod"; a folder
	// selects every VM anywhere below it.
	Folders []string `json:"folders,omitempty"`

	// Clusters lists clusters by name or managed object reference.
	Clusters []string `json:"clusters,omitempty"`

	// Exclude lists VMs, as in VMs, that are never selected.
	Exclude []string `json:"exclude,omitempty"`
}

// A Window limits when a job's backups may start. It opens daily at Start,
// in the job's time zone, and stays open for Duration of elapsed time, so a
// window of 8h is eight real hours also on the nights the clocks change.
// The zero Window is always open.
//
// A run is governed by the window that contains its scheduled time. Backups
// that have started when that window closes run to their end; those that
// have not are not started and are recorded as deferred.
type Window struct {
	Start    string        // "HH:MM", 00:00 to 23:59
	Duration time.Duration // up to 24h; zero means no window
}

// A Target is one VM of the inventory, as the selection sees it.
type Target struct {
	MoRef string `json:"moref"`
	Name  string `json:"name"`
	UUID  string `json:"uuid,omitempty"` // instance UUID

	// Folder is the inventory path of the VM's folder, as "/DC0/vm/prod".
	Folder string `json:"folder,omitempty"`

	// Cluster and ClusterMoRef name the cluster the VM runs in, if any.
	Cluster      string `json:"cluster,omitempty"`
	ClusterMoRef string `json:"cluster_moref,omitempty"`

	// Datastores holds the datastores of the VM's disks and configuration,
	// by name or reference as long as every VM uses the same spelling: a
	// snapshot locks the metadata of each of them.
	Datastores []string `json:"datastores,omitempty"`
}

const maxNameLen = 64

// Validate reports whether j can be stored and run. The errors name the job
// and the part of it at fault.
func (j Job) Validate() error {
	if err := CheckName("job", j.Name); err != nil {
		return err
	}
	if err := j.validate(); err != nil {
		return fmt.Errorf("job %s: %w", j.Name, err)
	}
	return nil
}

func (j Job) validate() error {
	if err := j.Selection.validate(); err != nil {
		return err
	}
	if _, err := parseSchedule(j.Schedule); err != nil {
		return err
	}
	if _, err := loadLocation(j.TimeZone); err != nil {
		return err
	}
	if err := j.Window.validate(); err != nil {
		return err
	}
	// The empty policy is valid for a job, where it means "keep all", but
	// not for retention.Policy.Validate, where it would mean "keep none".
	if !j.Retention.Empty() {
		if err := j.Retention.Validate(); err != nil {
			return fmt.Errorf("retention: %w", err)
		}
	}
	return nil
}

// CheckName checks the name of a job, or of another kind of thing whose
// name is part of a state key or a URL, such as a vCenter: kind names it in
// the error.
func CheckName(kind, name string) error {
	bad := func(why string) error {
		return fmt.Errorf("invalid %s name %q: %s", kind, name, why)
	}
	switch {
	case name == "":
		return fmt.Errorf("invalid %s name: empty", kind)
	case len(name) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d characters", maxNameLen))
	case name == "." || name == "..":
		return bad("not a name")
	}
	for _, c := range name {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return bad(fmt.Sprintf("%q is not allowed (use letters, digits, '.', '_' and '-')", c))
		}
	}
	return nil
}

// Location returns the time zone of j's schedule and window.
func (j Job) Location() (*time.Location, error) {
	return loadLocation(j.TimeZone)
}

// Next returns the first time after t at which j's schedule fires, or the
// zero time if it never does. It does not look at Enabled.
func (j Job) Next(t time.Time) (time.Time, error) {
	s, err := parseSchedule(j.Schedule)
	if err != nil {
		return time.Time{}, fmt.Errorf("job %s: %w", j.Name, err)
	}
	loc, err := loadLocation(j.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("job %s: %w", j.Name, err)
	}
	return s.Next(t.In(loc)), nil
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}
