package chunkstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// BackupOptions describe a new point.
type BackupOptions struct {
	Source      Source
	Parent      *blob.ID // the point this one is an incremental of
	Job         string
	Consistency string
	VMConfig    json.RawMessage
}

// Backup builds one restore point, a disk at a time. Nothing it writes is
// part of the store's history until Commit succeeds.
type Backup struct {
	s      *Store
	parent *Point
	point  Point
	start  time.Time
	// firstPack is the index's next pack number when the backup began:
	// every blob it stores lands in a pack numbered at least that.
	firstPack uint32

	mu   sync.Mutex
	hits map[blob.ID]uint32 // blobs found in the index, and their pack numbers
	done bool
}

// NewBackup starts a point. The caller must Commit or Close it: until then
// it keeps its parent and the blobs it deduplicated against alive.
func (s *Store) NewBackup(ctx context.Context, o BackupOptions) (*Backup, error) {
	if s.readOnly {
		return nil, ErrReadOnly
	}
	b := &Backup{s: s, start: time.Now(), hits: map[blob.ID]uint32{}, point: Point{
		Version: pointVersion, Source: o.Source, Job: o.Job, Parent: o.Parent,
		Consistency: o.Consistency, VMConfig: o.VMConfig,
	}}
	if o.Parent != nil {
		p, err := s.LoadPoint(ctx, *o.Parent)
		if err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
		b.parent = p
	}
	// Registered under the same lock GC starts under, so that a GC either
	// sees this backup or began before its first pack number was taken.
	s.mu.Lock()
	b.firstPack = s.idx.NextPackNumber()
	s.backups[b] = struct{}{}
	s.mu.Unlock()
	// A GC marks the parents of the backups it sees, and deleting a point
	// waits for any GC. A parent deleted before this backup was seen is
	// caught here; one deleted later is marked by every later GC.
	if b.parent != nil {
		if _, err := s.be.Stat(ctx, backend.Handle{Kind: backend.Points, Name: b.parent.ID.String()}); err != nil {
			b.Close()
			return nil, fmt.Errorf("parent %s: deleted as the backup began: %w", b.parent.ID.Short(), err)
		}
	}
	return b, nil
}

// used records that the backup refers to an indexed blob, in the pack of
// the given number, or 0 for a blob another backup was storing: its pack
// is looked up when a GC needs to know.
func (b *Backup) used(id blob.ID, packNumber uint32) {
	b.mu.Lock()
	b.hits[id] = packNumber
	b.mu.Unlock()
}

// Close ends a backup that is not to be committed; its blobs become
// garbage. Closing a committed backup does nothing.
func (b *Backup) Close() { b.end(false) }

// end unregisters the backup. A committed one hands its roots to a GC
// running now: that GC listed points before this one existed.
func (b *Backup) end(committed bool) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	delete(s.backups, b)
	if committed && s.gcHits != nil {
		b.mu.Lock()
		for id, n := range b.hits {
			s.gcHits[id] = n
		}
		b.mu.Unlock()
	}
}

// Prefetcher is implemented by disk readers that can start reading areas
// before they are asked for them: a file's pages into the page cache, say,
// or ranged requests in flight. Backups announce what they will read a
// bounded window ahead, so that scattered small areas are read with a deep
// queue rather than one at a time.
type Prefetcher interface {
	Prefetch(areas []diskmap.Area)
}

// prefetchWindow is how far ahead of the chunkers reads are announced.
const prefetchWindow = 64 << 20

// DiskSpec is one disk to back up.
type DiskSpec struct {
	Index  int
	Label  string // names the disk in messages, e.g. the image's path
	Reader io.ReaderAt
	Size   int64
	// Changed are the areas that may differ from the parent's disk: only
	// they are read. Nil reads the whole disk.
	Changed []diskmap.Area
	// Allocated, when not nil, are the only areas that may hold data; the
	// rest is known to be zero and is not read (a sparse file's holes, or
	// CBT's answer to "*").
	Allocated []diskmap.Area
	ChangeID  string
	// FullRead forces a full read and says why (a CBT fault, say).
	FullRead string
	// Progress, if set, is called with the bytes of the disk dealt with so
	// far and the total to deal with.
	Progress func(done, total int64)
}

// AddDisk backs up one disk. With a parent disk of the same size and a list
// of changed areas, only those areas, widened to the parent's chunk
// boundaries, are read and re-chunked; the parent's other extents are kept.
func (b *Backup) AddDisk(ctx context.Context, d DiskSpec) (BackupStats, error) {
	start := time.Now()
	s := b.s
	disk := Disk{Index: d.Index, Label: d.Label, Capacity: d.Size, ChangeID: d.ChangeID, FullRead: d.FullRead}
	if d.Size < 0 {
		return BackupStats{}, fmt.Errorf("disk %d: negative size", d.Index)
	}
	if _, err := b.point.Disk(d.Index); err == nil {
		return BackupStats{}, fmt.Errorf("disk %d is already in this point", d.Index)
	}
	var parent []diskmap.Extent
	if disk.FullRead == "" {
		disk.FullRead = b.fullReason(d)
	}
	if disk.FullRead == "" {
		pd, _ := b.parent.Disk(d.Index)
		var err error
		if parent, err = s.loadMap(ctx, pd); err != nil {
			return BackupStats{}, fmt.Errorf("parent %s: %w", b.parent.ID.Short(), err)
		}
	}
	regions := []diskmap.Area{{Offset: 0, Length: d.Size}}
	if disk.FullRead == "" && d.Changed != nil {
		regions = diskmap.Widen(parent, d.Changed, d.Size, int64(s.cfg.Params.ZeroBlock))
	} else if disk.FullRead == "" {
		disk.FullRead = "no list of changed areas: read whole, deduplicated against the parent"
	}
	if len(regions) == 1 && regions[0].Length == 0 {
		regions = nil
	}

	fresh, st, err := b.chunkRegions(ctx, d, regions)
	if err != nil {
		return st, err
	}
	extents, err := diskmap.Splice(parent, regions, fresh)
	if err != nil {
		return st, fmt.Errorf("disk %d: %w", d.Index, err)
	}
	pages, pst, err := b.storeMap(ctx, extents)
	st.add(pst)
	if err != nil {
		return st, fmt.Errorf("disk %d map: %w", d.Index, err)
	}
	disk.Pages, disk.Extents, disk.DataBytes = pages, len(extents), diskmap.Covered(extents)
	st.Seconds = time.Since(start).Seconds()
	b.point.Disks = append(b.point.Disks, disk)
	b.point.Stats.add(st)
	s.log.Info("disk backed up", "disk", d.Index, "label", d.Label, "regions", len(regions),
		"read", st.BytesRead, "new", st.BytesNew, "stored", st.BytesStored, "full_read", disk.FullRead)
	return st, nil
}

func (b *Backup) fullReason(d DiskSpec) string {
	if b.parent == nil {
		return "first backup"
	}
	pd, err := b.parent.Disk(d.Index)
	if err != nil {
		return "disk is new since the parent"
	}
	if pd.Capacity != d.Size {
		return fmt.Sprintf("disk resized from %d to %d bytes", pd.Capacity, d.Size)
	}
	return ""
}

// storeMap stores a disk map's pages; unchanged pages deduplicate.
func (b *Backup) storeMap(ctx context.Context, extents []diskmap.Extent) ([]PageRef, BackupStats, error) {
	var st BackupStats
	var refs []PageRef
	for _, pg := range diskmap.Paginate(extents) {
		enc := diskmap.EncodePage(pg)
		id := b.s.key.ID(enc)
		n, err := b.storeBlob(ctx, blob.Map, id, enc, nil)
		if err != nil {
			return nil, st, err
		}
		st.BytesStored += int64(n)
		refs = append(refs, PageRef{Index: pg.Index, ID: id})
	}
	return refs, st, nil
}

// Commit makes the point durable and returns it: first every pack it needs,
// then its manifest.
func (b *Backup) Commit(ctx context.Context) (*Point, error) {
	if b.done {
		return nil, errors.New("commit: the backup was already committed or closed")
	}
	if err := b.s.packer.flush(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	b.point.Time = b.start.UTC()
	b.point.Stats.Seconds = time.Since(b.start).Seconds()
	if err := b.s.writePoint(ctx, &b.point); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	b.end(true)
	p := b.point
	return &p, nil
}
