// Package appliance wires the parts of Bulwark together: vCenters, the
// store and the jobs.
package appliance

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// Backups serves the job runner for one vCenter and one store: it is the
// runner's Inventory, Backuper and Retainer.
type Backups struct {
	VCenter *vsphere.Client
	Store   *chunkstore.Store
	// Transport reads the disks; nil means datastore HTTP.
	Transport vsphere.Transport
	// Progress, if set, is told how far each disk of each VM has been read.
	Progress func(vm string, disk int, done, total int64)
	Log      *slog.Logger
}

var (
	_ jobs.Inventory = (*Backups)(nil)
	_ jobs.Backuper  = (*Backups)(nil)
	_ jobs.Retainer  = (*Backups)(nil)
)

// VMs implements jobs.Inventory; Backups has one vCenter, whatever its name.
// Templates cannot be snapshotted, so they are never selected.
func (b *Backups) VMs(ctx context.Context, _ string) ([]jobs.Target, error) {
	inv, err := b.VCenter.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	clusters := map[string]string{}
	for _, c := range inv.Clusters {
		clusters[c.Name] = c.MoRef
	}
	var out []jobs.Target
	for _, vm := range inv.VMs {
		if vm.Template {
			continue
		}
		out = append(out, jobs.Target{MoRef: vm.MoRef, Name: vm.Name, UUID: vm.InstanceUUID, Folder: vm.Folder,
			Cluster: vm.Cluster, ClusterMoRef: clusters[vm.Cluster], Datastores: vm.Datastores})
	}
	return out, nil
}

// BackupVM implements jobs.Backuper.
func (b *Backups) BackupVM(ctx context.Context, req jobs.BackupRequest) (jobs.BackupResult, error) {
	opts := vsphere.BackupOptions{Job: req.Job, Transport: b.Transport}
	if b.Progress != nil {
		opts.Progress = func(disk int, done, total int64) { b.Progress(req.VM.Name, disk, done, total) }
	}
	res, err := b.VCenter.BackupVM(ctx, b.Store, types.ManagedObjectReference{Type: "VirtualMachine", Value: req.VM.MoRef}, opts)
	var out jobs.BackupResult
	if res != nil {
		out.Consistency, out.FullReads, out.Warnings, out.BytesRead = res.Consistency, res.FullReads, res.Warnings, res.BytesTransferred
		if res.Point != nil {
			out.Point = res.Point.ID.String()
			out.BytesNew, out.BytesStored = res.Point.Stats.BytesNew, res.Point.Stats.BytesStored
		}
	}
	return out, err
}

// Retain implements jobs.Retainer: the policy applies to the job's own
// points, each VM on its own.
func (b *Backups) Retain(ctx context.Context, job string, p retention.Policy) error {
	decisions, err := b.Store.Prune(ctx, p, chunkstore.PruneOptions{Job: job})
	if err != nil {
		return fmt.Errorf("retention of job %s: %w", job, err)
	}
	removed := 0
	for _, d := range decisions {
		if !d.Keep {
			removed++
		}
	}
	if b.Log != nil {
		b.Log.Info("retention applied", "job", job, "points", len(decisions), "removed", removed)
	}
	return nil
}

// RemoveOrphanSnapshots removes the snapshots that earlier backups into
// this store left behind: an appliance calls it when it starts, before
// any backup runs.
func (b *Backups) RemoveOrphanSnapshots(ctx context.Context) ([]vsphere.Orphan, error) {
	return b.VCenter.RemoveOrphanSnapshots(ctx, b.Store.ID(), nil)
}
