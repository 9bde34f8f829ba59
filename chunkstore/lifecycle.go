package chunkstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// ErrPinned is returned for an attempt to delete a pinned point.
var ErrPinned = errors.New("the point is pinned")

func pinHandle(id blob.ID) backend.Handle {
	return backend.Handle{Kind: backend.Pins, Name: id.String()}
}

// Pin marks a point as never to be pruned. Pins live in the backend, beside
// the manifests, so that they survive the loss of the index.
func (s *Store) Pin(ctx context.Context, id blob.ID) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if _, err := s.LoadPoint(ctx, id); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err := s.be.Save(ctx, pinHandle(id), nil); err != nil {
		return fmt.Errorf("pin point %s: %w", id.Short(), err)
	}
	return nil
}

// Unpin lets a point be pruned again. It reports whether it was pinned.
func (s *Store) Unpin(ctx context.Context, id blob.ID) (bool, error) {
	if s.readOnly {
		return false, ErrReadOnly
	}
	err := s.be.Remove(ctx, pinHandle(id))
	if errors.Is(err, backend.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unpin point %s: %w", id.Short(), err)
	}
	return true, nil
}

// Pinned returns the pinned points.
func (s *Store) Pinned(ctx context.Context) (map[blob.ID]bool, error) {
	pins := map[blob.ID]bool{}
	err := s.be.List(ctx, backend.Pins, func(name string, _ int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			s.log.Warn("stray file among pins", "name", name)
			return nil
		}
		pins[id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	return pins, nil
}

// DeletePoint removes a point's manifest; its data goes at the next GC.
// Pinned points are refused.
func (s *Store) DeletePoint(ctx context.Context, id blob.ID) error {
	if s.readOnly {
		return ErrReadOnly
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	pins, err := s.Pinned(ctx)
	if err != nil {
		return err
	}
	if pins[id] {
		return fmt.Errorf("delete point %s: %w (unpin it first)", id.Short(), ErrPinned)
	}
	return s.deletePoint(ctx, id)
}

// deletePoint removes the manifest first: the catalogue is rebuilt from the
// manifests, so a crash between the two leaves the point deleted.
func (s *Store) deletePoint(ctx context.Context, id blob.ID) error {
	err := s.be.Remove(ctx, backend.Handle{Kind: backend.Points, Name: id.String()})
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete point %s: %w", id.Short(), err)
	}
	if err := s.idx.DeletePoint(id); err != nil {
		return fmt.Errorf("delete point %s: %w", id.Short(), err)
	}
	s.log.Info("point deleted", "point", id.String())
	return nil
}

// PruneDecision is what a prune did, or would do, with one point.
type PruneDecision struct {
	Point   *Point
	Keep    bool
	Reasons []string // the rules that keep it
}

// PruneOptions narrow a prune.
type PruneOptions struct {
	// DryRun decides without deleting.
	DryRun bool
	// Job, if set, limits the prune to the points that job made: a job's
	// retention policy is about its own points only.
	Job string
}

// Prune applies a retention policy to the points of every source and
// deletes those that no rule keeps. Their data is freed by the next GC.
// Decisions come oldest point first.
func (s *Store) Prune(ctx context.Context, p retention.Policy, o PruneOptions) ([]PruneDecision, error) {
	dryRun := o.DryRun
	if s.readOnly && !dryRun {
		return nil, ErrReadOnly
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	all, err := s.Points(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	points := all[:0:0]
	for _, pt := range all {
		if o.Job == "" || pt.Job == o.Job {
			points = append(points, pt)
		}
	}
	pins, err := s.Pinned(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	items := make([]retention.Item, len(points))
	for i, pt := range points {
		items[i] = retention.Item{ID: pt.ID.String(), Group: pt.Source.Name, Time: pt.Time, Pinned: pins[pt.ID]}
	}
	decisions, err := p.Apply(items)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	out := make([]PruneDecision, len(points))
	for i, d := range decisions {
		out[i] = PruneDecision{Point: points[i], Keep: d.Keep, Reasons: d.Reasons}
	}
	if dryRun {
		return out, nil
	}
	for _, d := range out {
		if d.Keep {
			continue
		}
		if err := s.deletePoint(ctx, d.Point.ID); err != nil {
			return out, fmt.Errorf("prune: %w", err)
		}
	}
	return out, nil
}
