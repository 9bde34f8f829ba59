package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/restore"
)

// VMRestoreRequest restores a point as a new VM, or over its original.
type VMRestoreRequest struct {
	restore.NewVM
	// Transport writes new disks: "http" (default) or "hotadd".
	Transport string `json:"transport,omitempty"`
	// OverOriginal writes only what differs over the point's VM (or VM),
	// which must be powered off; admins only.
	OverOriginal bool   `json:"over_original,omitempty"`
	VM           string `json:"vm,omitempty"`
	// VCenter to restore into: by default the one the point was taken on.
	VCenter string `json:"vcenter,omitempty"`
}

// DiskRestoreRequest restores one disk of a point to a VM or a datastore.
type DiskRestoreRequest struct {
	Disk int `json:"disk"`
	// VM gets the disk as a new disk (on Datastore, or the VM's own);
	// or else DatastorePath ("[ds] folder/name.vmdk") names a disk file.
	VM            string `json:"vm,omitempty"`
	Datastore     string `json:"datastore,omitempty"`
	DatastorePath string `json:"datastore_path,omitempty"`
	Transport     string `json:"transport,omitempty"`
	VCenter       string `json:"vcenter,omitempty"`
}

// RehearsalRequest rehearses the restore of a point.
type RehearsalRequest struct {
	restore.NewVM
	Keep bool `json:"keep,omitempty"`
	// TimeoutSeconds bounds the wait for the guest's heartbeat (default
	// 600).
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
	VCenter        string `json:"vcenter,omitempty"`
}

// restoreTask starts a restore of point p as a task, on the vCenter that
// vcenter names or the point's own.
func (s *Server) restoreTask(c *call, kind string, p *chunkstore.Point, vcenter, target string,
	fn func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error)) (any, error) {
	t, err := s.d.Tasks.Start(tasks.Spec{Kind: kind, Target: target, User: c.who.User},
		func(ctx context.Context, rep *tasks.Reporter) (any, error) {
			h, err := s.d.VCenters.RestoreTarget(ctx, vcenter, p.Source.VCenter)
			if err != nil {
				return nil, err
			}
			phase := -1
			o := restore.Options{Log: s.log, Progress: func(disk int, done, total int64) {
				if disk != phase {
					phase = disk
					rep.Phase(fmt.Sprintf("disk %d", disk), total)
				}
				rep.Set(done)
			}}
			return fn(ctx, h, o)
		})
	if err != nil {
		return nil, err
	}
	s.audit(c, "", kind, p.ID.Short(), "ok", fmt.Sprintf("to %s, task %s", target, t.ID))
	return t, nil
}

func (s *Server) restoreVM(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req VMRestoreRequest
	p, err := s.vmPoint(r, c, &req)
	if err != nil {
		return nil, err
	}
	if err := checkTransport(req.Transport); err != nil {
		return nil, err
	}
	if req.OverOriginal {
		if !c.who.Allows(auth.RoleAdmin) {
			return nil, errForbidden("role %s may not restore over a VM: that needs admin", c.who.Role)
		}
		target := req.VM
		if target == "" {
			target = p.Source.VMName
		}
		return s.restoreTask(c, "restore-over-vm", p, req.VCenter, target, func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error) {
			return restore.OverOriginal(ctx, s.d.Store, p.ID, h, req.VM, o)
		})
	}
	if req.Name == "" {
		return nil, errBadRequest("name: the new VM needs one")
	}
	return s.restoreTask(c, "restore-vm", p, req.VCenter, req.Name, func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error) {
		o.Transport = req.Transport
		return restore.ToNewVM(ctx, s.d.Store, p.ID, h, req.NewVM, o)
	})
}

func (s *Server) restoreDisk(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req DiskRestoreRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	if _, err := p.Disk(req.Disk); err != nil {
		return nil, errBadRequest("disk: %v", err)
	}
	if err := checkTransport(req.Transport); err != nil {
		return nil, err
	}
	switch {
	case (req.VM == "") == (req.DatastorePath == ""):
		return nil, errBadRequest("name either vm or datastore_path")
	case req.VM != "":
		return s.restoreTask(c, "restore-disk", p, req.VCenter, req.VM, func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error) {
			o.Transport = req.Transport
			return restore.DiskToVM(ctx, s.d.Store, p.ID, req.Disk, h, req.VM, req.Datastore, o)
		})
	default:
		return s.restoreTask(c, "restore-disk", p, req.VCenter, req.DatastorePath, func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error) {
			return restore.DiskToDatastore(ctx, s.d.Store, p.ID, req.Disk, h, req.DatastorePath, o)
		})
	}
}

func (s *Server) rehearse(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req RehearsalRequest
	p, err := s.vmPoint(r, c, &req)
	if err != nil {
		return nil, err
	}
	wait := 10 * time.Minute
	switch {
	case req.TimeoutSeconds < 0 || req.TimeoutSeconds > 24*3600:
		return nil, errBadRequest("timeout_seconds %d: want 0 to 86400", req.TimeoutSeconds)
	case req.TimeoutSeconds > 0:
		wait = time.Duration(req.TimeoutSeconds) * time.Second
	}
	if req.Name == "" {
		req.Name = fmt.Sprintf("%s-rehearsal-%s", p.Source.VMName, time.Now().UTC().Format("20060102-150405"))
	}
	return s.restoreTask(c, "rehearse", p, req.VCenter, req.Name, func(ctx context.Context, h restore.Hypervisor, o restore.Options) (any, error) {
		return restore.Rehearse(ctx, s.d.Store, p.ID, h, req.NewVM, wait, req.Keep, o)
	})
}

// vmPoint decodes a request to restore a VM and finds its point, which
// must hold a VM's configuration.
func (s *Server) vmPoint(r *http.Request, c *call, req any) (*chunkstore.Point, error) {
	if err := decode(r, req); err != nil {
		return nil, err
	}
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	if len(p.VMConfig) == 0 {
		return nil, errBadRequest("point %s holds no VM configuration (an image backup): restore its disks", p.ID.Short())
	}
	return p, nil
}

func checkTransport(t string) error {
	switch t {
	case "", restore.TransportHTTP, restore.TransportHotAdd:
		return nil
	}
	return errBadRequest("transport %q: %s or %s", t, restore.TransportHTTP, restore.TransportHotAdd)
}
