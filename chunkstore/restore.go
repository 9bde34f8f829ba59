package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
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
	// One worker more than cores keeps both cores busy while one waits on
	// a write. Each opens chunks into buffers it keeps.
	workers := runtime.GOMAXPROCS(0) + 1

	// A pipeline: loaders keep reads of packs in flight while the workers
	// open and write what was loaded, so that the cores do not wait on
	// the backend. At most loaders+workers+1 runs are held at once.
	g, gctx := errgroup.WithContext(ctx)
	todo := make(chan int)
	loaded := make(chan loadedRun, 1)
	g.Go(func() error {
		defer close(todo)
		for i := range runs {
			select {
			case todo <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var loading sync.WaitGroup
	for range loaders {
		loading.Go(func() {
			for i := range todo {
				lr := s.loadRun(gctx, runs[i], where)
				select {
				case loaded <- lr:
				case <-gctx.Done():
					return
				}
			}
		})
	}
	go func() { loading.Wait(); close(loaded) }()
	for range workers {
		g.Go(func() error {
			rw := &runWriter{s: s, w: w, where: where, progress: progress}
			for lr := range loaded {
				if err := rw.write(gctx, lr); err != nil {
					return err
				}
			}
			return gctx.Err()
		})
	}
	if len(gaps) > 0 {
		g.Go(func() error { return writeZeros(gctx, w, gaps, progress) })
	}
	err = g.Wait()
	loading.Wait() // no loader outlives the restore
	return err
}

// loaders is how many reads of packs a restore keeps in flight: loading
// a run takes a fraction of the time its chunks take to open, so two
// keep the workers fed from a local disk with a cold cache (three gained
// nothing measurable and held 20 MiB more).
const loaders = 2

// writeZeros writes the gaps, in order, from one buffer of zeros: a
// WriterAt never modifies what it is given.
func writeZeros(ctx context.Context, w io.WriterAt, gaps []diskmap.Extent, progress func(int64)) error {
	var zero []byte
	for _, gap := range gaps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if int64(len(zero)) < gap.Length {
			zero = make([]byte, gap.Length) // at most maxZero
		}
		if _, err := w.WriteAt(zero[:gap.Length], gap.Offset); err != nil {
			return fmt.Errorf("write at offset %d: %w", gap.Offset, err)
		}
		progress(gap.Length)
	}
	return nil
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

// loadedRun is a run and its bytes, or why they could not be read.
type loadedRun struct {
	run
	data []byte
	err  error
	// moved says the pack is gone, deleted by a GC since the plan was
	// made: its chunks are then looked up again one by one.
	moved bool
}

func (s *Store) loadRun(ctx context.Context, rn run, where func(int64) string) loadedRun {
	data, err := s.be.Load(ctx, backend.Handle{Kind: backend.Packs, Name: rn.pack.String()}, rn.start, int(rn.end-rn.start))
	lr := loadedRun{run: rn, data: data}
	switch {
	case errors.Is(err, backend.ErrNotFound):
		lr.moved = true
	case err != nil:
		lr.err = fmt.Errorf("%s: %w", where(rn.chunks[0].offsets[0]), err)
	case len(data) != int(rn.end-rn.start):
		lr.err = fmt.Errorf("%s: pack %s: read %d bytes at offset %d, want %d", where(rn.chunks[0].offsets[0]),
			rn.pack.Short(), len(data), rn.start, rn.end-rn.start)
	}
	return lr
}

// runWriter opens the chunks of loaded runs and writes them. Each worker
// has its own, and with it buffers that serve every chunk it opens.
type runWriter struct {
	s        *Store
	w        io.WriterAt
	where    func(int64) string
	progress func(int64)
	scratch  pack.OpenScratch
}

func (rw *runWriter) write(ctx context.Context, lr loadedRun) error {
	if lr.err != nil {
		return lr.err
	}
	for _, c := range lr.chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		var plain []byte
		var err error
		if lr.moved {
			plain, err = rw.s.loadBlob(ctx, c.loc.ID)
		} else {
			off := int64(c.loc.Offset) - lr.start
			plain, err = rw.s.codec.OpenTo(c.loc.Entry, lr.data[off:off+int64(c.loc.Length)], &rw.scratch)
		}
		if err != nil {
			return fmt.Errorf("%s: pack %s: %w", rw.where(c.offsets[0]), lr.pack.Short(), err)
		}
		for _, o := range c.offsets {
			if _, err := rw.w.WriteAt(plain, o); err != nil {
				return fmt.Errorf("write at offset %d: %w", o, err)
			}
			rw.progress(int64(len(plain)))
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
