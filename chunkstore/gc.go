package chunkstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// ErrReadOnly is returned for writes to a store opened read-only.
var ErrReadOnly = errors.New("the store is open read-only")

// GCOptions control GC.
type GCOptions struct {
	// RepackBelow is the share of a pack, in percent, that must be live for
	// it to be kept as it is; packs below it are rewritten without their
	// dead blobs. 0 only deletes packs with nothing live.
	RepackBelow float64
	// Progress, if set, is told the stage and how far it has come.
	Progress func(stage string, done, total int64)
}

// GCStats report what a GC did.
type GCStats struct {
	Points         int      `json:"points"`
	LiveBlobs      int64    `json:"live_blobs"`
	DeadBlobs      int64    `json:"dead_blobs"`
	PacksDeleted   int      `json:"packs_deleted"`
	PacksRepacked  int      `json:"packs_repacked"`
	PacksWritten   int      `json:"packs_written"`
	PacksKept      int      `json:"packs_spared"`            // doomed, but used by a backup that ran meanwhile
	PacksDamaged   []string `json:"packs_damaged,omitempty"` // left alone; check names them
	BytesBefore    int64    `json:"bytes_before"`
	BytesAfter     int64    `json:"bytes_after"`
	BytesReclaimed int64    `json:"bytes_reclaimed"`
	Seconds        float64  `json:"seconds"`
}

// idSet is a set of blob IDs kept by their first 8 bytes: a quarter of the
// memory, at the price that a dead blob whose prefix matches a live one's
// is kept (IDs are keyed hashes, so with 10 million blobs that happens to
// about one in 10^12 blobs).
type idSet map[uint64]struct{}

func idKey(id blob.ID) uint64       { return binary.LittleEndian.Uint64(id[:8]) }
func (s idSet) add(id blob.ID)      { s[idKey(id)] = struct{}{} }
func (s idSet) has(id blob.ID) bool { _, ok := s[idKey(id)]; return ok }

// liveSet is GC's set of live blobs, by idKey: a sorted slice, 8 bytes a
// blob, where a map costs about 35 (measured with 10 million blobs). Keys
// are appended as marking finds them and sorted and deduplicated whenever
// the unsorted tail grows as large as the sorted part.
type liveSet struct {
	keys   []uint64
	sorted int
}

func (l *liveSet) add(id blob.ID) {
	l.keys = append(l.keys, idKey(id))
	if n := len(l.keys) - l.sorted; n >= max(l.sorted, 1<<20) {
		l.compact()
	}
}

func (l *liveSet) compact() {
	slices.Sort(l.keys)
	l.keys = slices.Compact(l.keys)
	l.sorted = len(l.keys)
}

// has may be called once marking is over and compact has run.
func (l *liveSet) has(id blob.ID) bool {
	_, ok := slices.BinarySearch(l.keys, idKey(id))
	return ok
}

// packUse is what GC learns of one indexed pack.
type packUse struct {
	id   blob.ID
	size int64
	live int64 // sealed bytes of live blobs whose index entry names this pack
	// blobs the pack holds, and how many of them are live and indexed
	// here (not as a copy in another pack).
	blobs, liveBlobs int
}

// GC deletes what no point uses: packs with no live blob go, and packs whose
// live share is below o.RepackBelow are rewritten with their live blobs
// only. It runs while backups run: what they deduplicate against, their
// parents, and packs written since they began are roots.
//
// Every step leaves a store that opens and restores every point: new packs
// are durable and indexed before the packs they replace lose their index
// entries, and files are deleted last. A GC cut short leaves at most packs
// that the next one deletes.
func (s *Store) GC(ctx context.Context, o GCOptions) (GCStats, error) {
	if s.readOnly {
		return GCStats{}, ErrReadOnly
	}
	if o.RepackBelow < 0 || o.RepackBelow > 100 {
		return GCStats{}, fmt.Errorf("gc: repack threshold %g%% is not between 0 and 100", o.RepackBelow)
	}
	start := time.Now()
	progress := func(stage string, done, total int64) {
		if o.Progress != nil {
			o.Progress(stage, done, total)
		}
	}
	s.maint.Lock()
	defer s.maint.Unlock()

	// Packs numbered from firstFresh on were written by this GC or by a
	// backup that may not have committed yet: they are left alone.
	s.mu.Lock()
	firstFresh := s.idx.NextPackNumber()
	var parents []*Point
	for b := range s.backups {
		firstFresh = min(firstFresh, b.firstPack)
		if b.parent != nil {
			parents = append(parents, b.parent)
		}
	}
	s.gcHits = map[blob.ID]uint32{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.gcHits = nil
		s.mu.Unlock()
	}()

	var st GCStats
	live := &liveSet{}
	points, err := s.Points(ctx)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	st.Points = len(points)
	pages := idSet{}
	for i, p := range points {
		full, err := s.LoadPoint(ctx, p.ID)
		if err != nil {
			return st, fmt.Errorf("gc: nothing deleted: %w (run \"bulwark check\")", err)
		}
		if err := s.mark(ctx, full, live, pages); err != nil {
			return st, fmt.Errorf("gc: nothing deleted: point %s: %w (run \"bulwark check\")", p.ID.Short(), err)
		}
		progress("mark", int64(i+1), int64(len(points)))
	}
	for _, p := range parents {
		if err := s.mark(ctx, p, live, pages); err != nil {
			return st, fmt.Errorf("gc: nothing deleted: parent %s of a running backup: %w", p.ID.Short(), err)
		}
	}

	live.compact()
	packs, dead, err := s.packUse(live, firstFresh, &st)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	doomed := map[uint32]bool{}
	var repack []uint32
	for n, u := range packs {
		st.BytesBefore += u.size
		switch {
		case u.live == 0:
			doomed[n] = true
		case u.liveBlobs == u.blobs:
			// Wholly live: its header and trailer are no reason to rewrite it.
		case float64(u.live) < o.RepackBelow/100*float64(u.size):
			doomed[n] = true
			repack = append(repack, n)
		}
	}
	slices.Sort(repack)
	written, damaged, err := s.repack(ctx, repack, packs, live, progress)
	st.PacksWritten = len(written)
	for _, w := range written {
		st.BytesAfter += w
	}
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	for n, derr := range damaged {
		s.log.Error("gc: pack not repacked: damaged (run \"bulwark check\")", "pack", packs[n].id.String(), "err", derr)
		delete(doomed, n)
		repack = slices.DeleteFunc(repack, func(m uint32) bool { return m == n })
		st.PacksDamaged = append(st.PacksDamaged, packs[n].id.String())
	}

	// The entries of doomed packs that still name them are of dead blobs:
	// repacking moved the live ones.
	var deadBlobs []blob.ID
	var deadPacks []uint32
	for _, d := range dead {
		if doomed[d.pack] {
			deadBlobs = append(deadBlobs, d.id)
			deadPacks = append(deadPacks, d.pack)
		}
	}
	dead = nil

	// The last roots: blobs that backups found in the index since they
	// began, including backups that committed while this GC ran. A doomed
	// pack holding one is spared; it is dead by the next GC or not at all.
	s.sweep.Lock()
	s.mu.Lock()
	var suspects []blob.ID
	for b := range s.backups {
		b.mu.Lock()
		for id, n := range b.hits {
			if n == 0 || doomed[n] {
				suspects = append(suspects, id)
			}
		}
		b.mu.Unlock()
	}
	for id, n := range s.gcHits {
		if n == 0 || doomed[n] {
			suspects = append(suspects, id)
		}
	}
	s.mu.Unlock()
	// A used blob that repacking moved is safe; one still in a doomed
	// pack spares that pack.
	spare := map[uint32]bool{}
	for _, id := range suspects {
		loc, found, err := s.idx.Lookup(id)
		if err != nil {
			s.sweep.Unlock()
			return st, fmt.Errorf("gc: %w", err)
		}
		if found && doomed[loc.PackNumber] {
			spare[loc.PackNumber] = true
		}
	}
	var forget []blob.ID
	for i, id := range deadBlobs {
		if !spare[deadPacks[i]] {
			forget = append(forget, id)
		}
	}
	var gone []blob.ID
	for n := range doomed {
		if !spare[n] {
			gone = append(gone, packs[n].id)
		}
	}
	err = s.idx.Forget(forget, gone)
	s.sweep.Unlock()
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	st.DeadBlobs = int64(len(forget))
	st.PacksKept = len(spare)
	st.PacksRepacked = len(repack)
	for n := range spare {
		if slices.Contains(repack, n) {
			st.PacksRepacked--
		}
	}

	for i, id := range gone {
		if err := s.be.Remove(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return st, fmt.Errorf("gc: %w", err)
		}
		progress("delete", int64(i+1), int64(len(gone)))
	}
	for n, u := range packs {
		if !doomed[n] || spare[n] {
			st.BytesAfter += u.size
		}
	}
	st.PacksDeleted = len(gone) - st.PacksRepacked
	st.BytesReclaimed = st.BytesBefore - st.BytesAfter
	st.Seconds = time.Since(start).Seconds()
	s.log.Info("gc done", "points", st.Points, "live_blobs", st.LiveBlobs, "dead_blobs", st.DeadBlobs,
		"packs_deleted", st.PacksDeleted, "packs_repacked", st.PacksRepacked, "reclaimed", st.BytesReclaimed)
	return st, nil
}

// mark adds to live the map pages and chunks of p. Pages already in pages
// were marked with their chunks before: incremental points share most.
func (s *Store) mark(ctx context.Context, p *Point, live *liveSet, pages idSet) error {
	return s.newPages(ctx, p, pages, func(_ *Disk, pr PageRef, pg diskmap.Page, err error) error {
		if err != nil {
			return err
		}
		live.add(pr.ID)
		for _, e := range pg.Extents {
			live.add(e.ID)
		}
		return nil
	})
}

// newPages calls fn with each map page of p that is not in seen, decoded or
// with the error that loading it gave, and adds it to seen.
func (s *Store) newPages(ctx context.Context, p *Point, seen idSet, fn func(d *Disk, pr PageRef, pg diskmap.Page, err error) error) error {
	for i := range p.Disks {
		d := &p.Disks[i]
		for _, pr := range d.Pages {
			if seen.has(pr.ID) {
				continue
			}
			seen.add(pr.ID)
			pg, err := s.loadPage(ctx, d, pr)
			if err := fn(d, pr, pg, err); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// deadEntry is an index entry of a blob that nothing uses.
type deadEntry struct {
	id   blob.ID
	pack uint32
}

// packUse returns the indexed packs numbered below firstFresh with their
// live bytes, and the entries of the dead blobs in them, in one pass over
// the index.
func (s *Store) packUse(live *liveSet, firstFresh uint32, st *GCStats) (map[uint32]*packUse, []deadEntry, error) {
	packs := map[uint32]*packUse{}
	if err := s.idx.Packs(func(p index.PackInfo) error {
		if p.Number < firstFresh {
			packs[p.Number] = &packUse{id: p.ID, size: p.Size, blobs: p.Blobs}
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var dead []deadEntry
	err := s.idx.Blobs(func(l index.Location) error {
		u := packs[l.PackNumber]
		switch {
		case u == nil:
		case live.has(l.ID):
			u.live += int64(l.Length)
			u.liveBlobs++
			st.LiveBlobs++
		default:
			dead = append(dead, deadEntry{l.ID, l.PackNumber})
		}
		return nil
	})
	return packs, dead, err
}

// repack copies the live blobs of packs into new packs, verifying each,
// and indexes the new packs, which points the blobs' entries at them. It
// returns the sizes of the packs it wrote, and the packs it found damaged
// and left as they are.
func (s *Store) repack(ctx context.Context, numbers []uint32, packs map[uint32]*packUse, live *liveSet, progress func(string, int64, int64)) ([]int64, map[uint32]error, error) {
	var written []int64
	damaged := map[uint32]error{}
	var w *pack.Writer
	save := func() error {
		if w == nil || w.Count() == 0 {
			return nil
		}
		data, id, entries := w.Finish(s.key)
		w = nil
		if err := s.be.Save(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()}, data); err != nil {
			return fmt.Errorf("repack: %w", err)
		}
		if err := s.idx.AddPack(id, int64(len(data)), entries); err != nil {
			return fmt.Errorf("repack: %w", err)
		}
		written = append(written, int64(len(data)))
		return nil
	}
	for i, n := range numbers {
		u := packs[n]
		data, err := s.be.Load(ctx, backend.Handle{Kind: backend.Packs, Name: u.id.String()}, 0, -1)
		if err != nil {
			return written, damaged, fmt.Errorf("repack pack %s: %w", u.id.Short(), err)
		}
		entries, err := pack.Parse(s.key, data)
		if err != nil {
			damaged[n] = err
			continue
		}
		var keep []pack.Entry
		for _, e := range entries {
			if !live.has(e.ID) {
				continue
			}
			loc, found, err := s.idx.Lookup(e.ID)
			if err != nil {
				return written, damaged, err
			}
			if !found || loc.Pack != u.id {
				continue // a copy elsewhere is the one in use
			}
			if _, err := s.codec.Open(e, data[e.Offset:e.Offset+e.Length]); err != nil {
				damaged[n] = err
				break
			}
			keep = append(keep, e)
		}
		if damaged[n] != nil {
			continue
		}
		// A damaged pack is left whole, for check to name and for its
		// intact blobs to stay readable.
		for _, e := range keep {
			if w == nil {
				w = pack.NewWriter(s.cfg.Params.PackSize, nil)
			}
			w.Add(e, data[e.Offset:e.Offset+e.Length])
			if w.Size() >= s.cfg.Params.PackSize {
				if err := save(); err != nil {
					return written, damaged, err
				}
			}
		}
		progress("repack", int64(i+1), int64(len(numbers)))
	}
	return written, damaged, save()
}

func (s idSet) remove(id blob.ID)    { delete(s, idKey(id)) }
func (s idSet) hasKey(k uint64) bool { _, ok := s[k]; return ok }
func (s idSet) addKey(k uint64)      { s[k] = struct{}{} }
