package chunkstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// DiffDisk compares a disk as it is now, read from current, with a disk of
// a point, chunk by chunk by keyed hash, and returns the areas that differ:
// what a restore over it must write when change tracking cannot say. It
// reads all of current and nothing of the store but the point's map.
// Progress, if set, is called with the bytes compared so far and the total.
func (s *Store) DiffDisk(ctx context.Context, point blob.ID, disk int, current io.ReaderAt, progress func(done, total int64)) ([]diskmap.Area, error) {
	r, err := s.OpenDisk(ctx, point, disk)
	if err != nil {
		return nil, err
	}
	size := r.Size()
	// The point's extents, and its zero gaps in pieces as small as a
	// restore widens a change in a gap to.
	gaps := gapsIn(r.extents, diskmap.Area{Offset: 0, Length: size}, zeroAlign)
	parts := append(append([]diskmap.Extent(nil), r.extents...), gaps...)
	differs := make([]bool, len(parts))
	var (
		mu   sync.Mutex
		done int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, e := range parts {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			buf := make([]byte, e.Length)
			if _, err := current.ReadAt(buf, e.Offset); err != nil && err != io.EOF {
				return fmt.Errorf("read the disk at offset %d: %w", e.Offset, err)
			}
			if e.ID.IsZero() {
				differs[i] = !isZero(buf)
			} else {
				differs[i] = s.key.ID(buf) != e.ID
			}
			mu.Lock()
			done += e.Length
			if progress != nil {
				progress(done, size)
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("compare point %s disk %d: %w", point.Short(), disk, err)
	}
	var out []diskmap.Area
	for i, e := range parts {
		if differs[i] {
			out = append(out, diskmap.Area{Offset: e.Offset, Length: e.Length})
		}
	}
	return diskmap.Normalize(out, size), nil
}
