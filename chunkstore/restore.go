package chunkstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// RestoreOptions control RestoreDisk.
type RestoreOptions struct {
	// Sparse skips zero extents: the target reads as zero there already (a
	// new or truncated file). Otherwise zeros are written.
	Sparse bool
	// Progress, if set, is called with the bytes written so far and the total.
	Progress func(done, total int64)
}

// RestoreDisk writes a disk of a point to w, the whole capacity, loading
// and writing chunks on every core.
func (s *Store) RestoreDisk(ctx context.Context, point blob.ID, disk int, w io.WriterAt, o RestoreOptions) error {
	r, err := s.OpenDisk(ctx, point, disk)
	if err != nil {
		return err
	}
	size := r.Size()
	work := r.extents
	if !o.Sparse {
		work = withGaps(r.extents, size)
	}
	total := diskmap.Covered(work)
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	for _, e := range work {
		g.Go(func() error {
			var data []byte
			if e.ID.IsZero() {
				data = make([]byte, e.Length)
			} else {
				var err error
				// Restores read each chunk about once: bypass the cache.
				if data, err = s.loadBlob(gctx, e.ID); err != nil {
					return fmt.Errorf("point %s disk %d at offset %d: %w", point.Short(), disk, e.Offset, err)
				}
				if int64(len(data)) != e.Length {
					return fmt.Errorf("point %s disk %d at offset %d: chunk %s has %d bytes, map says %d", point.Short(), disk, e.Offset, e.ID.Short(), len(data), e.Length)
				}
			}
			if _, err := w.WriteAt(data, e.Offset); err != nil {
				return fmt.Errorf("write at offset %d: %w", e.Offset, err)
			}
			if o.Progress != nil {
				o.Progress(done.Add(e.Length), total)
			}
			return nil
		})
	}
	return g.Wait()
}

// withGaps returns extents with the zero gaps between them filled by extents
// with a zero ID, cut to at most 4 MiB each.
func withGaps(extents []diskmap.Extent, size int64) []diskmap.Extent {
	const maxZero = 4 << 20
	var out []diskmap.Extent
	pos := int64(0)
	gap := func(to int64) {
		for pos < to {
			n := min(to-pos, maxZero)
			out = append(out, diskmap.Extent{Offset: pos, Length: n})
			pos += n
		}
	}
	for _, e := range extents {
		gap(e.Offset)
		out = append(out, e)
		pos = e.End()
	}
	gap(size)
	return out
}
