// Package restore brings points back: whole VMs to new VMs or over their
// originals, and single disks, through the small interfaces below that
// appliance/vsphere implements with govmomi. Its subpackages read the
// partitions, volumes and filesystems inside a point for file-level
// restores.
package restore

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// Hypervisor is where VMs are restored to: a vCenter.
type Hypervisor interface {
	// CreateVM makes a VM from a point's recorded configuration, with new
	// empty thin disks of the capacities given, in disk order.
	CreateVM(ctx context.Context, config json.RawMessage, capacities []int64, spec NewVM) (VM, error)
	// FindVM finds an existing VM by name, moref or instance UUID.
	FindVM(ctx context.Context, ref string) (VM, error)
	// CreateDisk creates an empty thin disk file at a datastore path
	// ("[datastore] folder/name.vmdk"), attached to no VM.
	CreateDisk(ctx context.Context, path string, capacity int64) (DiskFile, error)
}

// DiskFile is a disk on a datastore, attached to no VM.
type DiskFile interface {
	Path() string
	// Upload writes the whole disk from r, in order.
	Upload(ctx context.Context, r io.Reader, size int64, progress func(int64)) error
}

// NewVM says where a restored VM goes and how it starts. Empty fields take
// the target's defaults, as vSphere's own placement would.
type NewVM struct {
	Name string `json:"name"`
	// Folder, Host, Pool and Datastore are inventory paths or morefs.
	// Host may name a cluster, whose resource pool and a host of which
	// are then used.
	Folder    string `json:"folder,omitempty"`
	Host      string `json:"host,omitempty"`
	Pool      string `json:"pool,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	// Networks maps the names of the networks in the point to networks of
	// the target; a network not mapped keeps its name.
	Networks map[string]string `json:"networks,omitempty"`
	PowerOn  bool              `json:"power_on,omitempty"`
	// DisconnectNICs starts the VM with its NICs disconnected: a rehearsal
	// beside the original, with no address conflict.
	DisconnectNICs bool `json:"disconnect_nics,omitempty"`
}

// VM is a VM being restored to.
type VM interface {
	Name() string
	Ref() string
	// Disks gives the capacity of each disk, in the order points number
	// them.
	Disks() []int64
	PoweredOff(ctx context.Context) (bool, error)
	// Annotate sets the VM's notes: a new VM says it is being restored
	// until the restore is done.
	Annotate(ctx context.Context, note string) error
	// AddDisk adds a new empty thin disk on a datastore (the VM's own when
	// empty) and returns its index among the VM's disks.
	AddDisk(ctx context.Context, capacity int64, datastore string) (int, error)
	// ChangedAreas asks CBT which areas of a disk changed since changeID.
	// An error means CBT cannot say (reset, disabled, unknown ID).
	ChangedAreas(ctx context.Context, disk int, changeID string) ([]diskmap.Area, error)
	// Upload writes a whole disk from r, in order: the datastore HTTP
	// transport, for new disks.
	Upload(ctx context.Context, disk int, r io.Reader, size int64, progress func(int64)) error
	// OpenDisk opens a disk for random reads and writes: hot-add.
	OpenDisk(ctx context.Context, disk int) (Disk, error)
	// SetChangeTracking turns CBT off or on. Turned on again, it starts
	// afresh: every earlier change ID becomes unknown, and the next backup
	// reads the disks whole.
	SetChangeTracking(ctx context.Context, on bool) error
	PowerOn(ctx context.Context) error
	// WaitGuest waits for the guest's Tools heartbeat.
	WaitGuest(ctx context.Context) error
	PowerOff(ctx context.Context) error
	// Destroy deletes the VM and its disks.
	Destroy(ctx context.Context) error
}

// Disk is a VM's disk opened for writing.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
}

// ErrPoweredOn refuses a restore over a VM that is running.
var ErrPoweredOn = errors.New("the VM is powered on: power it off first")
