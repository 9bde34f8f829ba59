package chunkstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// smallStore makes a store with small chunks and packs, for tests that
// want many of both.
func smallStore(tb testing.TB) *Store {
	tb.Helper()
	dir := tb.TempDir()
	ctx := context.Background()
	p := Params{ChunkMin: 64 << 10, ChunkAvg: 128 << 10, ChunkMax: 256 << 10, Segment: 1 << 20, ZeroBlock: 4 << 10, PackSize: 1 << 20, ZstdLevel: DefaultParams().ZstdLevel}
	pw := []byte("pw")
	if err := Init(ctx, backend.NewLocal(dir), InitOptions{Password: pw, Params: p, KDF: crypto.KDFParams{Time: 1, Memory: 8 << 10, Threads: 1}}); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(ctx, backend.NewLocal(dir), Options{Password: pw})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// commitDisk backs up one disk of data as a point of source.
func commitDisk(tb testing.TB, s *Store, source string, data []byte, parent *blob.ID, changed []diskmap.Area) *Point {
	tb.Helper()
	return commitImage(tb, s, source, bytes.NewReader(data), int64(len(data)), nil, parent, changed)
}

func commitImage(tb testing.TB, s *Store, source string, r io.ReaderAt, size int64, allocated []diskmap.Area, parent *blob.ID, changed []diskmap.Area) *Point {
	tb.Helper()
	ctx := context.Background()
	b, err := s.NewBackup(ctx, BackupOptions{Source: Source{Name: source}, Parent: parent})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	if _, err := b.AddDisk(ctx, DiskSpec{Reader: r, Size: size, Changed: changed, Allocated: allocated}); err != nil {
		tb.Fatal(err)
	}
	p, err := b.Commit(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// sparseImage is a large disk with data in a few regions, zero elsewhere.
type sparseImage struct {
	size    int64
	regions map[int64][]byte // by offset
}

func (m *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for at, data := range m.regions {
		lo, hi := max(off, at), min(off+int64(len(p)), at+int64(len(data)))
		if lo < hi {
			copy(p[lo-off:hi-off], data[lo-at:hi-at])
		}
	}
	if off+int64(len(p)) > m.size {
		return int(max(m.size-off, 0)), io.EOF
	}
	return len(p), nil
}

func (m *sparseImage) allocated() []diskmap.Area {
	var out []diskmap.Area
	for at, data := range m.regions {
		out = append(out, diskmap.Area{Offset: at, Length: int64(len(data))})
	}
	slices.SortFunc(out, func(a, b diskmap.Area) int { return cmp.Compare(a.Offset, b.Offset) })
	return out
}

// TestStatsFreesAndDedup checks Stats against a brute-force count: for
// each blob, the set of points that use it.
func TestStatsFreesAndDedup(t *testing.T) {
	ctx := context.Background()
	s := smallStore(t)
	rng := rand.New(rand.NewPCG(1, 2))
	// Three map pages a disk, data in the first 2 MiB of each; a round
	// changes one page, so the others are shared with the parent.
	const regionSize = 2 << 20
	images := map[string]*sparseImage{}
	for _, name := range []string{"a", "b"} {
		img := &sparseImage{size: 3 * diskmap.PageSpan, regions: map[int64][]byte{}}
		for pg := range int64(3) {
			data := make([]byte, regionSize)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			img.regions[pg*diskmap.PageSpan] = data
		}
		images[name] = img
	}
	copy(images["b"].regions[diskmap.PageSpan][regionSize/2:], images["a"].regions[0][:regionSize/2]) // b holds some of a
	for round := 0; round < 5; round++ {
		for _, name := range []string{"a", "b"} {
			img := images[name]
			pg := int64(rng.IntN(3)) * diskmap.PageSpan
			off := rng.IntN(regionSize - 256<<10)
			data := img.regions[pg]
			for i := off; i < off+256<<10; i++ {
				data[i] = byte(rng.Uint32())
			}
			var parent *blob.ID
			var changed []diskmap.Area
			if round > 0 {
				id, err := s.ResolvePoint(ctx, "latest", name)
				if err != nil {
					t.Fatal(err)
				}
				parent, changed = &id, []diskmap.Area{{Offset: pg + int64(off), Length: 256 << 10}}
			}
			commitImage(t, s, name, img, img.size, img.allocated(), parent, changed)
		}
	}

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	points, err := s.Points(ctx)
	if err != nil {
		t.Fatal(err)
	}
	users := map[blob.ID]map[int]bool{}
	srcChunks := map[string]map[blob.ID]int64{}
	srcData := map[string]int64{}
	use := func(id blob.ID, i int) {
		if users[id] == nil {
			users[id] = map[int]bool{}
		}
		users[id][i] = true
	}
	for i, p := range points {
		full, err := s.LoadPoint(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if srcChunks[p.Source.Name] == nil {
			srcChunks[p.Source.Name] = map[blob.ID]int64{}
		}
		for di := range full.Disks {
			d := &full.Disks[di]
			srcData[p.Source.Name] += d.DataBytes
			for _, pr := range d.Pages {
				use(pr.ID, i)
			}
			extents, err := s.loadMap(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range extents {
				use(e.ID, i)
				srcChunks[p.Source.Name][e.ID] = e.Length
			}
		}
	}
	frees := make([]int64, len(points))
	for id, us := range users {
		if len(us) != 1 {
			continue
		}
		loc, found, err := s.idx.Lookup(id)
		if err != nil || !found {
			t.Fatalf("blob %s: found %v, %v", id.Short(), found, err)
		}
		for i := range us {
			frees[i] += int64(loc.Length)
		}
	}
	if len(st.PointsSpace) != len(points) {
		t.Fatalf("%d points in stats, %d in the store", len(st.PointsSpace), len(points))
	}
	var some bool
	for i, ps := range st.PointsSpace {
		if ps.ID != points[i].ID.String() || ps.FreesBytes != frees[i] {
			t.Errorf("point %d %s: stats say it frees %d bytes, counting gives %d", i, ps.ID[:8], ps.FreesBytes, frees[i])
		}
		some = some || frees[i] > 0
	}
	if !some {
		t.Fatal("no point frees anything: the test proves nothing")
	}
	for _, src := range st.Sources {
		var unique int64
		for _, n := range srcChunks[src.Name] {
			unique += n
		}
		if src.UniqueBytes != unique || src.DataBytes != srcData[src.Name] {
			t.Errorf("source %s: stats say %d unique of %d data bytes, counting gives %d of %d", src.Name, src.UniqueBytes, src.DataBytes, unique, srcData[src.Name])
		}
		if src.Points != 5 || src.DedupRatio <= 1 {
			t.Errorf("source %s: %d points, dedup %.2f", src.Name, src.Points, src.DedupRatio)
		}
	}

	// Deleting a point and collecting everything gives back what it freed.
	victim := points[2]
	before, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Computed != st.Computed {
		t.Error("stats were worked out again with nothing changed")
	}
	if err := s.DeletePoint(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	after, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.PointsSpace) != len(points)-1 {
		t.Fatalf("stats kept from before the deletion: %d points", len(after.PointsSpace))
	}
	if after.BlobBytes != before.BlobBytes {
		t.Fatalf("blob bytes changed without GC")
	}
	if _, err := s.GC(ctx, GCOptions{RepackBelow: 100}); err != nil {
		t.Fatal(err)
	}
	collected, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := after.BlobBytes-collected.BlobBytes, frees[2]; got != want {
		t.Errorf("GC after deleting point %s dropped %d blob bytes; stats said it frees %d", victim.ID.Short(), got, want)
	}
}

// BenchmarkStatsThousandsOfPoints measures Stats on a store of 2,000 small
// points of 20 sources: once worked out (cold) and as kept (warm).
func BenchmarkStatsThousandsOfPoints(b *testing.B) {
	ctx := context.Background()
	s := smallStore(b)
	rng := rand.New(rand.NewPCG(3, 4))
	const sources, perSource, size = 20, 100, 2 << 20
	for src := range sources {
		img := make([]byte, size)
		for i := range img {
			img[i] = byte(rng.Uint32())
		}
		var parent *blob.ID
		for range perSource {
			off := rng.IntN(size - 64<<10)
			for i := off; i < off+64<<10; i++ {
				img[i] = byte(rng.Uint32())
			}
			var changed []diskmap.Area
			if parent != nil {
				changed = []diskmap.Area{{Offset: int64(off), Length: 64 << 10}}
			}
			p := commitDisk(b, s, fmt.Sprintf("vm%02d", src), img, parent, changed)
			parent = &p.ID
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if err := s.idx.SetMeta(statsKey, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Stats(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			st, err := s.Stats(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(st.PointsSpace) != sources*perSource {
				b.Fatalf("%d points", len(st.PointsSpace))
			}
		}
	})
}
