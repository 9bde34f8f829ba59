package chunkstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// reconcile brings the index up to date with the backend: packs saved by a
// writer that died before indexing them are indexed from their trailers,
// packs that are gone are forgotten, and the catalogue is made to list
// exactly the manifests there are.
//
// Manifests are listed before packs: a writer may be at work (this store
// being read-only), and a manifest is written after every pack it needs, so
// each point listed has its packs in the later listing.
func (s *Store) reconcile(ctx context.Context) error {
	var names []string
	if err := s.be.List(ctx, backend.Points, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	}); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if err := s.reconcilePacks(ctx); err != nil {
		return err
	}
	return s.reconcilePoints(ctx, names)
}

// reconcilePacks indexes the packs that the index lacks and forgets those
// that are gone.
func (s *Store) reconcilePacks(ctx context.Context) error {
	indexed := map[blob.ID]bool{}
	if err := s.idx.Packs(func(p index.PackInfo) error {
		indexed[p.ID] = true
		return nil
	}); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	type found struct {
		id   blob.ID
		size int64
	}
	var unindexed []found
	err := s.be.List(ctx, backend.Packs, func(name string, size int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			s.log.Warn("stray file among packs", "name", name)
			return nil
		}
		if indexed[id] {
			delete(indexed, id)
		} else {
			unindexed = append(unindexed, found{id, size})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, f := range unindexed {
		entries, err := s.readTrailer(ctx, f.id, f.size)
		if err != nil {
			// Damage is for check to report; a pack that cannot be read
			// serves no blob, and open must not fail because of it.
			s.log.Error("pack not indexed: unreadable", "pack", f.id.String(), "err", err)
			continue
		}
		if err := s.idx.AddFoundPack(f.id, f.size, entries); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		s.log.Info("indexed pack found on open", "pack", f.id.Short(), "blobs", len(entries))
	}
	if len(indexed) > 0 {
		// A writer's GC deletes packs under its readers: only a writer's
		// own index losing packs is news.
		level := slog.LevelWarn
		if s.readOnly {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "packs in the index are gone from the store", "packs", len(indexed))
		if err := s.idx.ForgetPacks(indexed); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	return nil
}

func (s *Store) reconcilePoints(ctx context.Context, names []string) error {
	catalogued := map[blob.ID]bool{}
	if err := s.idx.Points(func(id blob.ID, _ []byte) error {
		catalogued[id] = true
		return nil
	}); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var missing []blob.ID
	for _, name := range names {
		id, err := blob.ParseID(name)
		if err != nil {
			s.log.Warn("stray file among points", "name", name)
			continue
		}
		if catalogued[id] {
			delete(catalogued, id)
		} else {
			missing = append(missing, id)
		}
	}
	for _, id := range missing {
		p, err := s.LoadPoint(ctx, id)
		if err != nil {
			s.log.Error("point not catalogued: unreadable", "point", id.String(), "err", err)
			continue
		}
		if err := s.catalogue(p); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	for id := range catalogued {
		if err := s.idx.DeletePoint(id); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	return nil
}

// readTrailer reads and decodes a pack's trailer.
func (s *Store) readTrailer(ctx context.Context, id blob.ID, size int64) ([]pack.Entry, error) {
	h := backend.Handle{Kind: backend.Packs, Name: id.String()}
	if size < int64(pack.HeaderSize+pack.FooterSize) {
		return nil, fmt.Errorf("pack %s: %d bytes is too short to be a pack", id.Short(), size)
	}
	footer, err := s.be.Load(ctx, h, size-int64(pack.FooterSize), pack.FooterSize)
	if err != nil {
		return nil, err
	}
	n, err := pack.ParseFooter(footer, size)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	sealed, err := s.be.Load(ctx, h, size-int64(pack.FooterSize)-int64(n), n)
	if err != nil {
		return nil, err
	}
	entries, err := pack.OpenTrailer(s.key, sealed, size)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	return entries, nil
}
