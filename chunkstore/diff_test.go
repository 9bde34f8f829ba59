package chunkstore_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w       writerAt
	written atomic.Int64
}

func (c *countingWriter) WriteAt(p []byte, off int64) (int, error) {
	c.written.Add(int64(len(p)))
	return c.w.WriteAt(p, off)
}

// TestRestoreOverChangedDisk takes a point, changes the disk in a few
// places (data written, data zeroed, zeros written over by data), then
// finds the differences by hash and restores only them: the disk matches the
// point again, and no more was written than the changed areas widened to
// the point's chunks.
func TestRestoreOverChangedDisk(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const size = 32 << 20
	rng := rand.New(rand.NewPCG(7, 8))
	img := make([]byte, size)
	fill(rng, img[:12<<20])
	fill(rng, img[20<<20:24<<20])
	p, _ := backup(t, s, bytes.NewReader(img), size, backupArgs{})

	disk := make(writerAt, size)
	copy(disk, img)
	changes := []diskmap.Area{{Offset: 1 << 20, Length: 100}, {Offset: 5<<20 + 7, Length: 64 << 10}, {Offset: 16 << 20, Length: 4096}}
	fill(rng, disk[1<<20:1<<20+100])
	clear(disk[5<<20+7 : 5<<20+7+64<<10])
	fill(rng, disk[16<<20:16<<20+4096]) // in a zero gap of the point

	areas, err := s.DiffDisk(ctx, p.ID, 0, bytes.NewReader(disk), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenDisk(ctx, p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if i := diskmap.FindArea(areas, c.Offset); i == len(areas) || areas[i].Offset > c.Offset || areas[i].End() < c.End() {
			t.Errorf("change %+v not within the differences %+v", c, areas)
		}
	}
	bound := diskmap.Covered(asExtents(diskmap.Widen(r.Extents(), changes, size, 64<<10)))
	if got := diskmap.Covered(asExtents(areas)); got > bound {
		t.Errorf("differences cover %d bytes, more than the %d of the changes widened to chunks", got, bound)
	}

	w := &countingWriter{w: disk}
	if err := s.RestoreDisk(ctx, p.ID, 0, w, chunkstore.RestoreOptions{Areas: areas}); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "disk after restoring the differences", img, disk)
	if w.written.Load() > bound {
		t.Errorf("wrote %d bytes, more than the %d of the changes widened to chunks", w.written.Load(), bound)
	}
	if again, err := s.DiffDisk(ctx, p.ID, 0, bytes.NewReader(disk), nil); err != nil || len(again) != 0 {
		t.Errorf("after the restore, differences %v, %v; want none", again, err)
	}
	t.Logf("changed %d bytes in 3 places; wrote %d bytes (bound %d)", 100+64<<10+4096, w.written.Load(), bound)
}

func asExtents(areas []diskmap.Area) []diskmap.Extent {
	out := make([]diskmap.Extent, len(areas))
	for i, a := range areas {
		out[i] = diskmap.Extent{Offset: a.Offset, Length: a.Length}
	}
	return out
}
