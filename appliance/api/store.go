package api

import (
	"context"
	"net/http"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// maintenance is the exclusive key of store tasks: one check, GC or prune
// at a time, as the store itself allows.
const maintenance = "store-maintenance"

// CheckRequest asks for an integrity check.
type CheckRequest struct {
	// ReadDataPercent is the share of packs to read whole and verify; 0
	// checks structure only.
	ReadDataPercent float64 `json:"read_data_percent"`
	// Resume continues the last data check that stopped before its end.
	Resume bool `json:"resume,omitempty"`
}

// GCRequest asks for a garbage collection.
type GCRequest struct {
	// RepackBelowPercent rewrites packs less live than this; 0 deletes
	// only wholly dead packs.
	RepackBelowPercent float64 `json:"repack_below_percent"`
}

// PruneRequest applies a retention policy.
type PruneRequest struct {
	Policy retention.Policy `json:"policy"`
	// Job limits the prune to that job's points.
	Job    string `json:"job,omitempty"`
	DryRun bool   `json:"dry_run"`
}

// PruneDecision is what a prune did, or would do, with one point.
type PruneDecision struct {
	Point   string            `json:"point"`
	Time    time.Time         `json:"time"`
	Source  chunkstore.Source `json:"source"`
	Keep    bool              `json:"keep"`
	Reasons []string          `json:"reasons,omitempty"`
}

func (s *Server) storeStats(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.d.Store.Stats(r.Context())
}

// storeTask starts fn as a store maintenance task.
func (s *Server) storeTask(c *call, kind string, fn func(ctx context.Context, progress func(stage string, done, total int64)) (any, error)) (any, error) {
	t, err := s.d.Tasks.Start(tasks.Spec{Kind: kind, Target: "store", User: c.who.User, Exclusive: maintenance},
		func(ctx context.Context, rep *tasks.Reporter) (any, error) {
			phase := ""
			return fn(ctx, func(stage string, done, total int64) {
				if stage != phase {
					phase = stage
					rep.Phase(stage, total)
				}
				rep.Set(done)
			})
		})
	if err != nil {
		return nil, err
	}
	s.audit(c, "", kind, "store", "ok", "task "+t.ID)
	return t, nil
}

func (s *Server) storeCheck(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req CheckRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.ReadDataPercent < 0 || req.ReadDataPercent > 100 {
		return nil, errBadRequest("read_data_percent %v: want 0 to 100", req.ReadDataPercent)
	}
	return s.storeTask(c, "check", func(ctx context.Context, progress func(string, int64, int64)) (any, error) {
		return s.d.Store.Check(ctx, chunkstore.CheckOptions{ReadData: req.ReadDataPercent, Resume: req.Resume, Progress: progress})
	})
}

func (s *Server) storeGC(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req GCRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.RepackBelowPercent < 0 || req.RepackBelowPercent > 100 {
		return nil, errBadRequest("repack_below_percent %v: want 0 to 100", req.RepackBelowPercent)
	}
	return s.storeTask(c, "gc", func(ctx context.Context, progress func(string, int64, int64)) (any, error) {
		return s.d.Store.GC(ctx, chunkstore.GCOptions{RepackBelow: req.RepackBelowPercent, Progress: progress})
	})
}

func (s *Server) storePrune(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req PruneRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if err := req.Policy.Validate(); err != nil {
		return nil, errBadRequest("policy: %v", err)
	}
	if !req.DryRun && !c.who.Allows(auth.RoleAdmin) {
		return nil, errForbidden("role %s may only preview a prune (dry_run): deleting points needs admin", c.who.Role)
	}
	decisions, err := s.d.Store.Prune(r.Context(), req.Policy, chunkstore.PruneOptions{DryRun: req.DryRun, Job: req.Job})
	out := make([]PruneDecision, len(decisions))
	removed := 0
	for i, d := range decisions {
		out[i] = PruneDecision{Point: d.Point.ID.String(), Time: d.Point.Time, Source: d.Point.Source, Keep: d.Keep, Reasons: d.Reasons}
		if !d.Keep {
			removed++
		}
	}
	if !req.DryRun {
		outcome, detail := "ok", req.Policy.String()
		if err != nil {
			outcome, detail = "failed", err.Error()
		}
		s.audit(c, "", "prune", "store", outcome, detail)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
