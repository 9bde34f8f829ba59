package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

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
			w := newChunkWorker(b, p)
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
	b       *Backup
	p       Params
	buf     []byte
	chunk   []byte
	ch      *chunker.Chunker
	scratch pack.Scratch
}

func newChunkWorker(b *Backup, p Params) *chunkWorker {
	return &chunkWorker{
		s: b.s, b: b, p: p,
		buf:   make([]byte, p.Segment),
		chunk: make([]byte, p.ChunkMax),
		ch:    chunker.NewWithBoundaries(nil, b.s.cfg.Polynomial, uint(p.ChunkMin), uint(p.ChunkMax)),
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
			stored, err := w.b.storeBlob(ctx, blob.Data, id, c.Data, &w.scratch)
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
func (b *Backup) storeBlob(ctx context.Context, t blob.Type, id blob.ID, plain []byte, sc *pack.Scratch) (int, error) {
	s := b.s
	isNew, err := b.claim(id)
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
