package chunkstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
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
}

// NewBackup starts a point.
func (s *Store) NewBackup(ctx context.Context, o BackupOptions) (*Backup, error) {
	b := &Backup{s: s, start: time.Now(), point: Point{
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
	return b, nil
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

// piece is a part of a region within one segment: the unit of parallel work.
type piece struct{ off, n int64 }

func splitSegments(regions []diskmap.Area, seg int64) []piece {
	var out []piece
	for _, r := range regions {
		for off := r.Offset; off < r.End(); {
			end := min((off/seg+1)*seg, r.End())
			out = append(out, piece{off, end - off})
			off = end
		}
	}
	return out
}

// chunkRegions reads and chunks regions, a segment at a time on every core,
// storing chunks not yet in the store, and returns the extents in order.
func (b *Backup) chunkRegions(ctx context.Context, d DiskSpec, regions []diskmap.Area) ([]diskmap.Extent, BackupStats, error) {
	s := b.s
	p := s.cfg.Params
	pieces := splitSegments(regions, p.Segment)
	var total int64
	for _, pc := range pieces {
		total += pc.n
	}
	results := make([][]diskmap.Extent, len(pieces))
	var st BackupStats
	var stMu sync.Mutex
	var done atomic.Int64

	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int)
	pf, _ := d.Reader.(Prefetcher)
	g.Go(func() error {
		defer close(next)
		ahead, aheadBytes := 0, int64(0) // pieces announced, bytes beyond i
		for i := range pieces {
			if pf != nil {
				if ahead > i {
					aheadBytes -= pieces[i].n
				}
				var areas []diskmap.Area
				for ahead = max(ahead, i); ahead < len(pieces) && aheadBytes < prefetchWindow; ahead++ {
					areas = append(areas, d.toRead(pieces[ahead])...)
					if ahead > i {
						aheadBytes += pieces[ahead].n
					}
				}
				if len(areas) > 0 {
					pf.Prefetch(areas)
				}
			}
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	// One worker more than cores keeps both cores busy while one waits on a read.
	for range runtime.GOMAXPROCS(0) + 1 {
		g.Go(func() error {
			w := newChunkWorker(s, p)
			for i := range next {
				ext, wst, err := w.piece(gctx, d, pieces[i])
				if err != nil {
					return err
				}
				results[i] = ext
				stMu.Lock()
				st.add(wst)
				stMu.Unlock()
				if d.Progress != nil {
					d.Progress(done.Add(pieces[i].n), total)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	var n int
	for _, r := range results {
		n += len(r)
	}
	out := make([]diskmap.Extent, 0, n)
	for _, r := range results {
		out = append(out, r...)
	}
	return out, st, nil
}

// chunkWorker holds one goroutine's buffers.
type chunkWorker struct {
	s       *Store
	p       Params
	buf     []byte
	chunk   []byte
	ch      *chunker.Chunker
	scratch pack.Scratch
}

func newChunkWorker(s *Store, p Params) *chunkWorker {
	return &chunkWorker{
		s: s, p: p,
		buf:   make([]byte, p.Segment),
		chunk: make([]byte, p.ChunkMax),
		ch:    chunker.NewWithBoundaries(nil, s.cfg.Polynomial, uint(p.ChunkMin), uint(p.ChunkMax)),
	}
}

func (w *chunkWorker) piece(ctx context.Context, d DiskSpec, pc piece) ([]diskmap.Extent, BackupStats, error) {
	var st BackupStats
	buf := w.buf[:pc.n]
	areas, read, err := readAreas(ctx, d, buf, pc.off)
	st.BytesRead = read
	if err != nil {
		return nil, st, err
	}
	// Only what was read can hold data: the rest is known zero.
	var spans []span
	for _, a := range areas {
		rel := a.Offset - pc.off
		for _, sp := range dataSpans(buf[rel:rel+a.Length], a.Offset, w.p.ZeroBlock) {
			spans = append(spans, span{rel + sp.off, sp.n})
		}
	}
	var out []diskmap.Extent
	for _, sp := range spans {
		w.ch.ResetWithBoundaries(bytes.NewReader(buf[sp.off:sp.off+sp.n]), w.s.cfg.Polynomial, uint(w.p.ChunkMin), uint(w.p.ChunkMax))
		w.ch.SetAverageBits(bits.TrailingZeros(uint(w.p.ChunkAvg)))
		for {
			c, err := w.ch.Next(w.chunk)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, st, fmt.Errorf("chunk %s at offset %d: %w", d.Label, pc.off+sp.off, err)
			}
			off := pc.off + sp.off + int64(c.Start)
			id := w.s.key.ID(c.Data)
			out = append(out, diskmap.Extent{Offset: off, Length: int64(c.Length), ID: id})
			st.Chunks++
			stored, err := w.s.storeBlob(ctx, blob.Data, id, c.Data, &w.scratch)
			if err != nil {
				return nil, st, err
			}
			if stored > 0 {
				st.NewChunks++
				st.BytesNew += int64(c.Length)
				st.BytesStored += int64(stored)
			}
		}
	}
	return out, st, nil
}

// storeBlob stores a blob unless the store has it or is storing it, and
// returns the sealed bytes it added (0 when deduplicated).
func (s *Store) storeBlob(ctx context.Context, t blob.Type, id blob.ID, plain []byte, sc *pack.Scratch) (int, error) {
	isNew, err := s.claim(id)
	if err != nil || !isNew {
		return 0, err
	}
	e, sealed := s.codec.Seal(t, id, plain, sc)
	if err := s.packer.add(ctx, e, sealed); err != nil {
		return 0, err
	}
	return len(sealed), nil
}

// toRead returns the areas of a piece that may hold data.
func (d *DiskSpec) toRead(pc piece) []diskmap.Area {
	if d.Allocated == nil {
		return []diskmap.Area{{Offset: pc.off, Length: pc.n}}
	}
	return intersect(d.Allocated, pc.off, pc.n)
}

// readAreas reads into buf the disk's bytes at off that d.Allocated says
// may hold data, and returns those areas and the bytes read. The rest of
// buf is left as it was.
func readAreas(ctx context.Context, d DiskSpec, buf []byte, off int64) ([]diskmap.Area, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	want := d.toRead(piece{off, int64(len(buf))})
	var n int64
	for _, a := range want {
		dst := buf[a.Offset-off : a.End()-off]
		m, err := d.Reader.ReadAt(dst, a.Offset)
		n += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && m == len(dst)) {
			return nil, n, fmt.Errorf("read %s at offset %d: %w", d.Label, a.Offset+int64(m), err)
		}
	}
	return want, n, nil
}

// intersect returns the parts of sorted areas within [off, off+n).
func intersect(areas []diskmap.Area, off, n int64) []diskmap.Area {
	var out []diskmap.Area
	for i := diskmap.FindArea(areas, off); i < len(areas) && areas[i].Offset < off+n; i++ {
		s, e := max(areas[i].Offset, off), min(areas[i].End(), off+n)
		if e > s {
			out = append(out, diskmap.Area{Offset: s, Length: e - s})
		}
	}
	return out
}

// span is a run of bytes within a buffer.
type span struct{ off, n int64 }

// dataSpans returns the runs of buf that are not made of whole zero blocks,
// blocks being aligned to multiples of zb on the disk (buf starts at off).
func dataSpans(buf []byte, off int64, zb int) []span {
	var out []span
	var cur *span
	for pos := int64(0); pos < int64(len(buf)); {
		next := min((off+pos)/int64(zb)*int64(zb)+int64(zb)-off, int64(len(buf)))
		if isZero(buf[pos:next]) {
			cur = nil
		} else if cur != nil {
			cur.n = next - cur.off
		} else {
			out = append(out, span{pos, next - pos})
			cur = &out[len(out)-1]
		}
		pos = next
	}
	return out
}

var zeros = make([]byte, 64<<10)

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if string(b[:n]) != string(zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// storeMap stores a disk map's pages; unchanged pages deduplicate.
func (b *Backup) storeMap(ctx context.Context, extents []diskmap.Extent) ([]PageRef, BackupStats, error) {
	var st BackupStats
	var refs []PageRef
	for _, pg := range diskmap.Paginate(extents) {
		enc := diskmap.EncodePage(pg)
		id := b.s.key.ID(enc)
		n, err := b.s.storeBlob(ctx, blob.Map, id, enc, nil)
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
	if err := b.s.packer.flush(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	b.point.Time = b.start.UTC()
	b.point.Stats.Seconds = time.Since(b.start).Seconds()
	if err := b.s.writePoint(ctx, &b.point); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	p := b.point
	return &p, nil
}
