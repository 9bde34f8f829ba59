package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
)

// RestoreOptions control RestoreDisk.
type RestoreOptions struct {
	// Sparse skips zero extents: the target reads as zero there already (a
	// new or truncated file). Otherwise zeros are written.
	Sparse bool
	// Progress, if set, is called with the bytes written so far and the total.
	Progress func(done, total int64)
	// Areas, if set, limits the restore to the parts of the disk that
	// differ from the point: each area is widened to the chunks it
	// touches, and zeros are written where the point has none, whatever
	// Sparse says. A restore over the original VM passes what CBT or
	// DiffDisk found.
	Areas []diskmap.Area
}

// Reads of neighbouring blobs of a pack are merged when the gap between them
// is below maxGap, up to maxRun bytes: a few large reads instead of one per
// chunk, while memory stays at one run per worker.
const (
	maxGap = 1 << 20
	maxRun = 8 << 20
)

// wanted is a chunk to restore and the disk offsets that hold it.
type wanted struct {
	loc     index.Location
	offsets []int64
}

// run is a range of one pack read at once.
type run struct {
	pack       blob.ID
	start, end int64
	chunks     []*wanted
}

// RestoreDisk writes a disk of a point to w, the whole capacity. It reads
// the chunks pack by pack, in large ranges, and decodes and writes them on
// every core; a chunk used at several offsets is read once.
func (s *Store) RestoreDisk(ctx context.Context, point blob.ID, disk int, w io.WriterAt, o RestoreOptions) error {
	r, err := s.OpenDisk(ctx, point, disk)
	if err != nil {
		return err
	}
	where := func(off int64) string { return fmt.Sprintf("point %s disk %d at offset %d", point.Short(), disk, off) }
	extents := r.extents
	var gaps []diskmap.Extent
	if o.Areas != nil {
		extents, gaps = within(r.extents, diskmap.Widen(r.extents, o.Areas, r.Size(), zeroAlign), r.Size())
	} else if !o.Sparse {
		gaps = zeroGaps(r.extents, r.Size())
	}
	runs, err := s.planRestore(extents, where)
	if err != nil {
		return err
	}
	total := diskmap.Covered(extents) + diskmap.Covered(gaps)
	var done atomic.Int64
	progress := func(n int64) {
		if o.Progress != nil {
			o.Progress(done.Add(n), total)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	for _, gap := range gaps {
		g.Go(func() error {
			if _, err := w.WriteAt(make([]byte, gap.Length), gap.Offset); err != nil {
				return fmt.Errorf("write at offset %d: %w", gap.Offset, err)
			}
			progress(gap.Length)
			return nil
		})
	}
	for _, rn := range runs {
		g.Go(func() error { return s.restoreRun(gctx, rn, w, where, progress) })
	}
	return g.Wait()
}

// planRestore looks up every chunk of a map and groups them into runs.
func (s *Store) planRestore(extents []diskmap.Extent, where func(int64) string) ([]run, error) {
	chunks := map[blob.ID]*wanted{}
	var order []*wanted // first use on the disk, so writes move forward
	for _, e := range extents {
		if c, ok := chunks[e.ID]; ok {
			c.offsets = append(c.offsets, e.Offset)
			continue
		}
		loc, found, err := s.idx.Lookup(e.ID)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%s: chunk %s is not in the index", where(e.Offset), e.ID.Short())
		}
		if int64(loc.RawLength) != e.Length {
			return nil, fmt.Errorf("%s: chunk %s has %d bytes, the map says %d", where(e.Offset), e.ID.Short(), loc.RawLength, e.Length)
		}
		c := &wanted{loc: loc, offsets: []int64{e.Offset}}
		chunks[e.ID] = c
		order = append(order, c)
	}
	byPack := map[blob.ID][]*wanted{}
	var packs []blob.ID
	for _, c := range order {
		if byPack[c.loc.Pack] == nil {
			packs = append(packs, c.loc.Pack)
		}
		byPack[c.loc.Pack] = append(byPack[c.loc.Pack], c)
	}
	var runs []run
	for _, p := range packs {
		cs := byPack[p]
		sort.Slice(cs, func(i, j int) bool { return cs[i].loc.Offset < cs[j].loc.Offset })
		var cur *run
		for _, c := range cs {
			start, end := int64(c.loc.Offset), int64(c.loc.Offset)+int64(c.loc.Length)
			if cur == nil || start-cur.end > maxGap || end-cur.start > maxRun {
				runs = append(runs, run{pack: p, start: start, end: end})
				cur = &runs[len(runs)-1]
			}
			cur.end = max(cur.end, end)
			cur.chunks = append(cur.chunks, c)
		}
	}
	return runs, nil
}

func (s *Store) restoreRun(ctx context.Context, rn run, w io.WriterAt, where func(int64) string, progress func(int64)) error {
	data, err := s.be.Load(ctx, backend.Handle{Kind: backend.Packs, Name: rn.pack.String()}, rn.start, int(rn.end-rn.start))
	moved := errors.Is(err, backend.ErrNotFound) // by a GC since the plan was made
	if err != nil && !moved {
		return fmt.Errorf("%s: %w", where(rn.chunks[0].offsets[0]), err)
	}
	for _, c := range rn.chunks {
		var plain []byte
		if moved {
			plain, err = s.loadBlob(ctx, c.loc.ID)
		} else {
			off := int64(c.loc.Offset) - rn.start
			plain, err = s.codec.Open(c.loc.Entry, data[off:off+int64(c.loc.Length)])
		}
		if err != nil {
			return fmt.Errorf("%s: pack %s: %w", where(c.offsets[0]), rn.pack.Short(), err)
		}
		for _, o := range c.offsets {
			if _, err := w.WriteAt(plain, o); err != nil {
				return fmt.Errorf("write at offset %d: %w", o, err)
			}
			progress(int64(len(plain)))
		}
	}
	return nil
}

// zeroAlign is the granularity of zero writes in a restore of areas: a
// changed area in a zero gap of the point is widened to it.
const zeroAlign = 64 << 10

// maxZero bounds one write of zeros.
const maxZero = 4 << 20

// zeroGaps returns the parts of a disk that no extent covers, cut to at
// most 4 MiB each.
func zeroGaps(extents []diskmap.Extent, size int64) []diskmap.Extent {
	return gapsIn(extents, diskmap.Area{Offset: 0, Length: size}, maxZero)
}

// gapsIn returns the parts of area that no extent covers, cut at the
// multiples of piece.
func gapsIn(extents []diskmap.Extent, area diskmap.Area, piece int64) []diskmap.Extent {
	var out []diskmap.Extent
	pos := area.Offset
	gap := func(to int64) {
		for pos < to {
			n := min(to-pos, piece-pos%piece) // cut at multiples of piece
			out = append(out, diskmap.Extent{Offset: pos, Length: n})
			pos += n
		}
	}
	for i := diskmap.Find(extents, area.Offset); i < len(extents) && extents[i].Offset < area.End(); i++ {
		gap(extents[i].Offset)
		pos = max(pos, extents[i].End())
	}
	gap(area.End())
	return out
}

// within returns the extents of a map that lie in regions, and the zero
// gaps of the map inside regions. Regions come from diskmap.Widen, so no
// extent straddles one's edge.
func within(extents []diskmap.Extent, regions []diskmap.Area, size int64) (in, gaps []diskmap.Extent) {
	for _, r := range regions {
		r.Length = min(r.End(), size) - r.Offset
		for i := diskmap.Find(extents, r.Offset); i < len(extents) && extents[i].Offset < r.End(); i++ {
			in = append(in, extents[i])
		}
		gaps = append(gaps, gapsIn(extents, r, maxZero)...)
	}
	return in, gaps
}
