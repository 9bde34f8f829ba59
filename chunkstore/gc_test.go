package chunkstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// The tests of this file build images out of cells: a cell is cellData
// bytes drawn from a seed, then one aligned zero block. Zero blocks cut
// spans that are chunked on their own, and cells never straddle a segment,
// so a cell's chunks depend on its seed alone: images that share a seed
// share exactly its chunks, and the data a set of points keeps alive is
// exactly cellData bytes per distinct seed. Seed 0 is a cell of zeros.
const (
	cellSize = 128 << 10
	cellData = cellSize - 4<<10
)

// gcParams make small chunks and 1 MiB packs: every image here spans
// several packs.
var gcParams = chunkstore.Params{
	ChunkMin: 64 << 10, ChunkAvg: 128 << 10, ChunkMax: 256 << 10,
	Segment: 1 << 20, ZeroBlock: 4 << 10, PackSize: 1 << 20,
	ZstdLevel: chunkstore.DefaultParams().ZstdLevel,
}

// newGCStore makes a store with gcParams and opens it as its writer.
func newGCStore(t *testing.T) (*chunkstore.Store, string) {
	t.Helper()
	dir := initStore(t, gcParams)
	return openStore(t, dir), dir
}

func cellImage(seeds []uint64) []byte {
	img := make([]byte, len(seeds)*cellSize)
	for i, s := range seeds {
		if s == 0 {
			continue
		}
		var k [32]byte
		binary.LittleEndian.PutUint64(k[:], s)
		copy(k[8:], "bulwark gc test cell")
		_, _ = rand.NewChaCha8(k).Read(img[i*cellSize : i*cellSize+cellData])
	}
	return img
}

func seedRange(from, n uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = from + uint64(i)
	}
	return out
}

// changedCells lists the cells in which two images differ.
func changedCells(parent, child []uint64) []diskmap.Area {
	out := []diskmap.Area{}
	for i := range child {
		if i >= len(parent) || parent[i] != child[i] {
			out = append(out, diskmap.Area{Offset: int64(i) * cellSize, Length: cellSize})
		}
	}
	return out
}

// liveBytes is the data a set of images keeps: cellData per distinct seed.
func liveBytes(images ...[]uint64) int64 {
	seen := map[uint64]bool{}
	for _, img := range images {
		for _, s := range img {
			if s != 0 {
				seen[s] = true
			}
		}
	}
	return int64(len(seen)) * cellData
}

// putCells backs up an image of cells as a point of source; with a parent
// and its seeds, as an incremental reading only the cells that changed.
func putCells(ctx context.Context, s *chunkstore.Store, source string, seeds []uint64, parent *blob.ID, parentSeeds []uint64) (*chunkstore.Point, chunkstore.BackupStats, error) {
	b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: source}, Parent: parent})
	if err != nil {
		return nil, chunkstore.BackupStats{}, err
	}
	defer b.Close()
	return addAndCommit(ctx, b, seeds, parentSeeds)
}

func addAndCommit(ctx context.Context, b *chunkstore.Backup, seeds, parentSeeds []uint64) (*chunkstore.Point, chunkstore.BackupStats, error) {
	img := cellImage(seeds)
	spec := chunkstore.DiskSpec{Label: "cells", Reader: bytes.NewReader(img), Size: int64(len(img))}
	if parentSeeds != nil {
		spec.Changed = changedCells(parentSeeds, seeds)
	}
	st, err := b.AddDisk(ctx, spec)
	if err != nil {
		return nil, st, err
	}
	p, err := b.Commit(ctx)
	return p, st, err
}

func mustPut(t *testing.T, s *chunkstore.Store, source string, seeds []uint64, parent *chunkstore.Point, parentSeeds []uint64) *chunkstore.Point {
	t.Helper()
	var pid *blob.ID
	if parent != nil {
		pid = &parent.ID
	}
	p, _, err := putCells(context.Background(), s, source, seeds, pid, parentSeeds)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// packFiles returns the pack files in a local store and their sizes.
func packFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(n)] = fi.Size()
	}
	return out
}

func sumSizes(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// minus returns what a has and b has not.
func minus(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a {
		if _, ok := b[k]; !ok {
			out[k] = v
		}
	}
	return out
}

func storeStats(t *testing.T, s *chunkstore.Store) chunkstore.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

// checkStore runs a check that reads every pack and fails on any problem.
func checkStore(t *testing.T, s *chunkstore.Store, what string) *chunkstore.CheckReport {
	t.Helper()
	rep, err := s.Check(context.Background(), chunkstore.CheckOptions{ReadData: 100})
	if err != nil {
		t.Fatalf("%s: check: %v", what, err)
	}
	if !rep.OK() {
		b, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("%s: check found damage:\n%s", what, b)
	}
	if rep.Incomplete || rep.DataPacks != rep.DataPacksTotal || rep.DataPacksTotal != rep.Packs {
		t.Fatalf("%s: check read %d of %d packs (%d in the store), incomplete %v", what, rep.DataPacks, rep.DataPacksTotal, rep.Packs, rep.Incomplete)
	}
	return rep
}

// verifyPoints checks that the store lists exactly the points of want and
// that each restores bit-exact, through RestoreDisk and the DiskReader.
func verifyPoints(t *testing.T, s *chunkstore.Store, want map[blob.ID][]uint64, what string) {
	t.Helper()
	points, err := s.Points(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[blob.ID]bool{}
	for _, p := range points {
		got[p.ID] = true
		if _, ok := want[p.ID]; !ok {
			t.Fatalf("%s: point %s is listed but should not exist", what, p.ID.Short())
		}
	}
	for id, seeds := range want {
		if !got[id] {
			t.Fatalf("%s: point %s is not listed", what, id.Short())
		}
		img := cellImage(seeds)
		requireSame(t, what+": point "+id.Short(), img, restoreBytes(t, s, id, int64(len(img))))
	}
}

type progressLog struct {
	mu   sync.Mutex
	last map[string][2]int64
}

func (p *progressLog) update(stage string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[string][2]int64{}
	}
	p.last[stage] = [2]int64{done, total}
}

// gcQuiet runs a GC while nothing else uses the store and checks its
// statistics against the pack files it removed and wrote and against the
// index before and after.
func gcQuiet(t *testing.T, s *chunkstore.Store, dir string, below float64) chunkstore.GCStats {
	t.Helper()
	ctx := context.Background()
	before := packFiles(t, dir)
	sb := storeStats(t, s)
	var prog progressLog
	st, err := s.GC(ctx, chunkstore.GCOptions{RepackBelow: below, Progress: prog.update})
	if err != nil {
		t.Fatalf("gc %g%%: %v", below, err)
	}
	after := packFiles(t, dir)
	sa := storeStats(t, s)
	removed, added := minus(before, after), minus(after, before)
	t.Logf("gc %g%%: %+v; %d pack files removed, %d written", below, st, len(removed), len(added))
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("gc %g%%: %s (stats %+v)", below, fmt.Sprintf(format, a...), st)
	}
	if st.Points != sb.Points {
		fail("%d points marked, the store has %d", st.Points, sb.Points)
	}
	if st.BytesReclaimed != st.BytesBefore-st.BytesAfter {
		fail("reclaimed %d != before %d - after %d", st.BytesReclaimed, st.BytesBefore, st.BytesAfter)
	}
	if st.BytesBefore != sumSizes(before) || st.BytesAfter != sumSizes(after) {
		fail("bytes before/after %d/%d, the pack files hold %d/%d", st.BytesBefore, st.BytesAfter, sumSizes(before), sumSizes(after))
	}
	if st.BytesReclaimed != sumSizes(removed)-sumSizes(added) {
		fail("reclaimed %d, but %d bytes of packs were removed and %d written", st.BytesReclaimed, sumSizes(removed), sumSizes(added))
	}
	if len(removed) != st.PacksDeleted+st.PacksRepacked {
		fail("%d pack files removed, stats say %d deleted + %d repacked", len(removed), st.PacksDeleted, st.PacksRepacked)
	}
	if len(added) != st.PacksWritten {
		fail("%d pack files written, stats say %d", len(added), st.PacksWritten)
	}
	if st.PacksWritten > 0 && st.PacksRepacked == 0 {
		fail("packs written without any repacked")
	}
	if st.PacksKept != 0 || len(st.PacksDamaged) != 0 {
		fail("packs spared or damaged with no backup running and no damage")
	}
	if below == 0 && (st.PacksRepacked != 0 || st.PacksWritten != 0) {
		fail("RepackBelow 0 repacked")
	}
	blobsBefore, blobsAfter := sb.Chunks+sb.MapPages, sa.Chunks+sa.MapPages
	if blobsBefore-blobsAfter != st.DeadBlobs {
		fail("the index went from %d to %d blobs, stats say %d dead", blobsBefore, blobsAfter, st.DeadBlobs)
	}
	if st.LiveBlobs > blobsAfter || (below == 100 && st.LiveBlobs != blobsAfter) {
		fail("%d live blobs, %d left in the index", st.LiveBlobs, blobsAfter)
	}
	if sa.Packs != int64(len(after)) || sa.StoredBytes != sumSizes(after) {
		fail("index lists %d packs of %d bytes, the store has %d of %d", sa.Packs, sa.StoredBytes, len(after), sumSizes(after))
	}
	if m := prog.last["mark"]; m != [2]int64{int64(st.Points), int64(st.Points)} && st.Points > 0 {
		fail("last mark progress %v, want %d of %d", m, st.Points, st.Points)
	}
	if n := int64(len(removed)); n > 0 && prog.last["delete"] != [2]int64{n, n} {
		fail("last delete progress %v, want %d of %d", prog.last["delete"], n, n)
	}
	return st
}

// TestGCDeletesAndRepacks deletes points of overlapping images, collects
// with RepackBelow 0 and then 100, and checks after each step what went,
// that the statistics add up, that the store checks clean and that every
// point left restores bit-exact; a GC right after another finds nothing.
func TestGCDeletesAndRepacks(t *testing.T) {
	s, dir := newGCStore(t)
	ctx := context.Background()

	img0 := seedRange(1, 32) // 4 MiB
	p0 := mustPut(t, s, "vm", img0, nil, nil)
	img1 := slices.Clone(img0)
	copy(img1[8:16], seedRange(101, 8))
	p1 := mustPut(t, s, "vm", img1, p0, img0)
	img2 := slices.Clone(img1)
	copy(img2[20:28], seedRange(201, 8))
	p2 := mustPut(t, s, "vm", img2, p1, img1)
	beforeZ := packFiles(t, dir)
	imgZ := seedRange(1001, 24) // shares nothing
	pz := mustPut(t, s, "other", imgZ, nil, nil)
	packsZ := minus(packFiles(t, dir), beforeZ)
	img3 := slices.Clone(img2)
	copy(img3[0:4], seedRange(301, 4))
	img3[30] = 0
	p3 := mustPut(t, s, "vm", img3, nil, nil) // a full backup, deduplicated
	if len(packsZ) < 3 {
		t.Fatalf("the unshared point has %d packs; the test wants several", len(packsZ))
	}
	all := map[blob.ID][]uint64{p0.ID: img0, p1.ID: img1, p2.ID: img2, pz.ID: imgZ, p3.ID: img3}
	if got, want := storeStats(t, s).UniqueBytes, liveBytes(img0, img1, img2, imgZ, img3); got != want {
		t.Fatalf("unique bytes %d, want %d: cells do not dedup as the test assumes", got, want)
	}

	// Nothing deleted: nothing to collect.
	for _, below := range []float64{0, 50} {
		st := gcQuiet(t, s, dir, below)
		if st.PacksDeleted != 0 || st.PacksRepacked != 0 || st.BytesReclaimed != 0 || st.DeadBlobs != 0 {
			t.Fatalf("gc %g%% of a store with nothing deleted: %+v", below, st)
		}
	}
	verifyPoints(t, s, all, "after a gc with nothing deleted")

	// A pinned point survives prune and refuses deletion.
	if err := s.Pin(ctx, p0.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePoint(ctx, p0.ID); !errors.Is(err, chunkstore.ErrPinned) {
		t.Fatalf("delete of a pinned point: %v, want ErrPinned", err)
	}
	dec, err := s.Prune(ctx, retention.Policy{Last: 2}, chunkstore.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pruned := map[blob.ID]bool{}
	for _, d := range dec {
		if !d.Keep {
			pruned[d.Point.ID] = true
		}
	}
	if len(pruned) != 1 || !pruned[p1.ID] {
		t.Fatalf("prune keeping 2 per source with p0 pinned deleted %v, want only p1 (%s)", pruned, p1.ID.Short())
	}
	if ok, err := s.Unpin(ctx, p0.ID); err != nil || !ok {
		t.Fatalf("unpin: %v %v", ok, err)
	}
	for _, id := range []blob.ID{p0.ID, pz.ID} {
		if err := s.DeletePoint(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []blob.ID{p0.ID, p1.ID, pz.ID} {
		delete(all, id)
		if _, err := s.LoadPoint(ctx, id); err == nil {
			t.Fatalf("deleted point %s still loads", id.Short())
		}
	}

	// RepackBelow 0: the packs of the unshared point go whole, nothing is
	// rewritten; the old points' packs hold live cells and stay.
	st := gcQuiet(t, s, dir, 0)
	after := packFiles(t, dir)
	for name := range packsZ {
		if _, ok := after[name]; ok {
			t.Errorf("pack %s of the deleted unshared point survived the gc", name[:8])
		}
	}
	if st.PacksDeleted < len(packsZ) || st.BytesReclaimed < sumSizes(packsZ) {
		t.Errorf("gc 0%%: %d packs deleted, %d bytes reclaimed; the unshared point alone had %d packs of %d bytes",
			st.PacksDeleted, st.BytesReclaimed, len(packsZ), sumSizes(packsZ))
	}
	checkStore(t, s, "after gc 0%")
	verifyPoints(t, s, all, "after gc 0%")
	if st := gcQuiet(t, s, dir, 0); st.PacksDeleted != 0 || st.BytesReclaimed != 0 || st.DeadBlobs != 0 {
		t.Errorf("a second gc 0%% found more to do: %+v", st)
	}

	// Dead cells of p0 and p1 are left in packs with live ones.
	dead := storeStats(t, s).UniqueBytes - liveBytes(img2, img3)
	if dead <= 0 {
		t.Fatalf("no dead data left for repacking (%d bytes)", dead)
	}
	st = gcQuiet(t, s, dir, 100)
	if st.PacksRepacked == 0 || st.PacksWritten == 0 || st.BytesReclaimed < dead/2 {
		t.Errorf("gc 100%% with %d dead bytes in partly live packs: %+v", dead, st)
	}
	if got, want := storeStats(t, s).UniqueBytes, liveBytes(img2, img3); got != want {
		t.Errorf("after gc 100%% the index holds %d bytes of chunks, the live points use %d", got, want)
	}
	checkStore(t, s, "after gc 100%")
	verifyPoints(t, s, all, "after gc 100%")

	// The store is now exactly its live data: another GC has nothing to do
	// (100% is TestGCLeavesFullyLivePacksAlone's).
	for _, below := range []float64{0, 50, 90} {
		st := gcQuiet(t, s, dir, below)
		if st.PacksDeleted != 0 || st.PacksRepacked != 0 || st.PacksWritten != 0 || st.BytesReclaimed != 0 || st.DeadBlobs != 0 {
			t.Errorf("gc %g%% right after a gc 100%% still found work: %+v", below, st)
		}
	}
	checkStore(t, s, "after the last gc")
	verifyPoints(t, s, all, "after the last gc")
}

// TestGCLeavesFullyLivePacksAlone runs GC with RepackBelow 100 twice on a
// store whose points are all live: RepackBelow is the share of a pack that
// must be live for it to be kept as it is, and a pack whose every blob is
// live is wholly live, so there is nothing to rewrite.
func TestGCLeavesFullyLivePacksAlone(t *testing.T) {
	s, dir := newGCStore(t)
	img := seedRange(1, 24)
	p := mustPut(t, s, "vm", img, nil, nil)
	for i := range 2 {
		st := gcQuiet(t, s, dir, 100)
		if st.PacksRepacked != 0 || st.PacksWritten != 0 || st.DeadBlobs != 0 {
			t.Errorf("gc %d at 100%% of a store with nothing dead rewrote %d packs into %d: %+v", i+1, st.PacksRepacked, st.PacksWritten, st)
		}
	}
	checkStore(t, s, "after gc")
	verifyPoints(t, s, map[blob.ID][]uint64{p.ID: img}, "after gc")
}

// TestConcurrentBackupsCommit runs backups in several goroutines at once,
// each committing while the others add blobs, with no GC: every commit
// succeeds and every point restores.
func TestConcurrentBackupsCommit(t *testing.T) {
	s, _ := newGCStore(t)
	ctx := context.Background()
	const workers, each = 3, 6
	type done struct {
		p     *chunkstore.Point
		seeds []uint64
		err   error
	}
	out := make(chan done, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seeds := seedRange(uint64(w*1000+i*100+1), 12)
				p, err := commitRecovering(ctx, s, "vm"+strconv.Itoa(w), seeds)
				out <- done{p, seeds, err}
			}
		}()
	}
	waitOrFail(t, &wg, time.Minute, "concurrent backups")
	close(out)
	want := map[blob.ID][]uint64{}
	for d := range out {
		if d.err != nil {
			t.Fatalf("concurrent backup: %v", d.err)
		}
		want[d.p.ID] = d.seeds
	}
	checkStore(t, s, "after concurrent backups")
	verifyPoints(t, s, want, "after concurrent backups")
}

// commitRecovering backs up an image of cells and commits it, turning a
// panic into an error so that one test's failure does not end the others.
func commitRecovering(ctx context.Context, s *chunkstore.Store, source string, seeds []uint64) (p *chunkstore.Point, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	p, _, err = putCells(ctx, s, source, seeds, nil, nil)
	return p, err
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s still running after %v", what, d)
	}
}

// TestGCKeepsChunksSharedWithKeptPoint deletes a point whose chunks are
// mostly shared with a kept one: the shared ones stay, and only the
// deleted point's own cells go.
func TestGCKeepsChunksSharedWithKeptPoint(t *testing.T) {
	s, dir := newGCStore(t)
	ctx := context.Background()
	kept := seedRange(1, 24)
	doomed := append(seedRange(1, 16), seedRange(501, 8)...)
	pk := mustPut(t, s, "kept", kept, nil, nil)
	pd := mustPut(t, s, "doomed", doomed, nil, nil)
	if err := s.DeletePoint(ctx, pd.ID); err != nil {
		t.Fatal(err)
	}
	for _, below := range []float64{0, 100} {
		gcQuiet(t, s, dir, below)
		checkStore(t, s, "after gc")
		verifyPoints(t, s, map[blob.ID][]uint64{pk.ID: kept}, fmt.Sprintf("after gc %g%%", below))
	}
	if got, want := storeStats(t, s).UniqueBytes, liveBytes(kept); got != want {
		t.Errorf("after gc the index holds %d bytes of chunks, the kept point uses %d", got, want)
	}
	// Backing the deleted image up again stores its own cells anew and
	// finds the shared ones still there.
	p, st, err := putCells(ctx, s, "doomed", doomed, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesNew != 8*cellData {
		t.Errorf("backup of the deleted image again: %d new bytes, want the %d of its 8 own cells", st.BytesNew, 8*cellData)
	}
	checkStore(t, s, "after the new backup")
	verifyPoints(t, s, map[blob.ID][]uint64{pk.ID: kept, p.ID: doomed}, "after the new backup")
}

// TestGCCollectsClosedBackup closes a backup without committing it: the
// packs it saved are garbage that the next GC deletes.
func TestGCCollectsClosedBackup(t *testing.T) {
	s, dir := newGCStore(t)
	ctx := context.Background()
	img := seedRange(1, 16)
	p := mustPut(t, s, "vm", img, nil, nil)
	before := packFiles(t, dir)

	abandoned := seedRange(1001, 40) // 5 MiB: several full packs are saved
	b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "vm"}, Parent: &p.ID})
	if err != nil {
		t.Fatal(err)
	}
	data := cellImage(abandoned)
	if _, err := b.AddDisk(ctx, chunkstore.DiskSpec{Reader: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := b.Commit(ctx); err == nil {
		t.Fatal("commit of a closed backup succeeded")
	}
	saved := minus(packFiles(t, dir), before)
	if len(saved) < 3 {
		t.Fatalf("the abandoned backup saved %d packs; the test wants several", len(saved))
	}
	st := gcQuiet(t, s, dir, 0)
	if after := packFiles(t, dir); len(minus(after, before)) != 0 || len(minus(before, after)) != 0 {
		t.Errorf("after gc: %d packs of the closed backup left, %d of the committed point gone", len(minus(after, before)), len(minus(before, after)))
	}
	if st.PacksDeleted != len(saved) || st.BytesReclaimed != sumSizes(saved) {
		t.Errorf("gc deleted %d packs, %d bytes; the closed backup saved %d packs, %d bytes", st.PacksDeleted, st.BytesReclaimed, len(saved), sumSizes(saved))
	}
	checkStore(t, s, "after gc")
	verifyPoints(t, s, map[blob.ID][]uint64{p.ID: img}, "after gc")

	// The same data backed up again, and something else, commit whole;
	// what the closed backup left unsaved is collected by the next GCs.
	again := mustPut(t, s, "vm", abandoned, nil, nil)
	other := mustPut(t, s, "other", seedRange(2001, 4), nil, nil)
	want := map[blob.ID][]uint64{p.ID: img, again.ID: abandoned, other.ID: seedRange(2001, 4)}
	checkStore(t, s, "after backing up again")
	verifyPoints(t, s, want, "after backing up again")
	gcQuiet(t, s, dir, 100)
	if got, live := storeStats(t, s).UniqueBytes, liveBytes(img, abandoned, seedRange(2001, 4)); got != live {
		t.Errorf("after gc 100%%: %d bytes of chunks indexed, the points use %d", got, live)
	}
	checkStore(t, s, "after the second gc")
	verifyPoints(t, s, want, "after the second gc")
}

// gcPoint is a committed point of the concurrency test and its image.
type gcPoint struct {
	id     blob.ID
	source string
	seeds  []uint64
}

// TestGCConcurrentWithBackups runs GC while backups run in the same
// process, backups that deduplicate against the chunks of the points just
// deleted and incrementals whose parents are among them. Each round some
// backups start before the deletions (some with a doomed parent), the
// doomed points are deleted or pruned, and GC runs, repacking, while more
// backups of the doomed images start before, during and after it. After
// each round the store checks clean and every committed point restores
// bit-exact.
func TestGCConcurrentWithBackups(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("BULWARK_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	rounds := 24
	switch {
	case os.Getenv("BULWARK_GC_ROUNDS") != "":
		rounds, _ = strconv.Atoi(os.Getenv("BULWARK_GC_ROUNDS"))
	case testing.Short():
		rounds = 6
	case raceEnabled():
		rounds = 12 // the race detector makes a round about eight times slower
	}
	t.Logf("seed %d (BULWARK_TEST_SEED), %d rounds", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 77))
	s, dir := newGCStore(t)
	ctx := context.Background()

	const cells = 24
	fresh := uint64(1 << 40) // seeds of new cells
	sources := []string{"vm0", "vm1", "vm2"}
	mutate := func(base []uint64, n int) []uint64 {
		out := slices.Clone(base)
		for range n {
			i := rng.IntN(len(out))
			switch rng.IntN(5) {
			case 0:
				out[i] = 0
			case 1: // a cell of another image
				out[i] = uint64(1+rng.IntN(len(sources)))<<20 | uint64(rng.IntN(cells))
			default:
				fresh++
				out[i] = fresh
			}
		}
		return out
	}
	live := map[blob.ID]gcPoint{}
	var pinned blob.ID
	for i, src := range sources {
		base := seedRange(uint64(i+1)<<20, cells)
		p := mustPut(t, s, src, base, nil, nil)
		live[p.ID] = gcPoint{p.ID, src, base}
		if i == 0 {
			pinned = p.ID
		}
	}
	// One point is pinned for good: neither prune nor GC may touch it.
	if err := s.Pin(ctx, pinned); err != nil {
		t.Fatal(err)
	}

	type job struct {
		source      string
		seeds       []uint64
		parent      *gcPoint
		early       bool // registered before the deletions
		close       bool // closed without commit
		delayStart  time.Duration
		delayCommit time.Duration
	}
	type result struct {
		j   *job
		p   *chunkstore.Point
		err error
	}
	var repacked, deleted, spared int
	for round := range rounds {
		// The doomed points: deleted one by one, or every point but the
		// newest of each source pruned. The pinned point stays.
		var ids []blob.ID
		for id := range live {
			if id != pinned {
				ids = append(ids, id)
			}
		}
		slices.SortFunc(ids, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		prune := round%4 == 3
		var victims []gcPoint
		if prune {
			dec, err := s.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dec {
				if !d.Keep {
					victims = append(victims, live[d.Point.ID])
				}
			}
		} else {
			for _, id := range ids[:min(len(ids), 1+rng.IntN(3))] {
				victims = append(victims, live[id])
			}
		}
		var kept []gcPoint
		for id, p := range live {
			if !slices.ContainsFunc(victims, func(v gcPoint) bool { return v.id == id }) {
				kept = append(kept, p)
			}
		}
		slices.SortFunc(kept, func(a, b gcPoint) int { return bytes.Compare(a.id[:], b.id[:]) })

		pick := func(ps []gcPoint) gcPoint { return ps[rng.IntN(len(ps))] }
		var jobs []*job
		for range 2 + rng.IntN(2) { // early: may use a doomed parent
			base := pick(append(slices.Clone(victims), kept...))
			if len(victims) > 0 && rng.IntN(3) > 0 {
				base = pick(victims)
			}
			j := &job{source: base.source, seeds: mutate(base.seeds, rng.IntN(4)), early: true, close: rng.IntN(6) == 0}
			if rng.IntN(3) > 0 {
				j.parent = &base
			}
			j.delayStart = time.Duration(rng.IntN(4000)) * time.Microsecond
			j.delayCommit = time.Duration(rng.IntN(3000)) * time.Microsecond
			jobs = append(jobs, j)
		}

		results := make(chan result, 8)
		registered := make(chan struct{}, 8)
		var wg sync.WaitGroup
		run := func(j *job) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					results <- result{j, nil, fmt.Errorf("panic: %v", r)}
				}
			}()
			var pid *blob.ID
			var pseeds []uint64
			if j.parent != nil {
				pid, pseeds = &j.parent.id, j.parent.seeds
			}
			if !j.early {
				time.Sleep(j.delayStart)
			}
			b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: j.source}, Parent: pid})
			if j.early {
				registered <- struct{}{}
			}
			if err != nil {
				results <- result{j, nil, fmt.Errorf("new backup: %w", err)}
				return
			}
			defer b.Close()
			if j.early {
				time.Sleep(j.delayStart)
			}
			img := cellImage(j.seeds)
			spec := chunkstore.DiskSpec{Reader: bytes.NewReader(img), Size: int64(len(img))}
			if pseeds != nil {
				spec.Changed = changedCells(pseeds, j.seeds)
			}
			_, err = b.AddDisk(ctx, spec)
			time.Sleep(j.delayCommit)
			if err != nil || j.close {
				results <- result{j, nil, err}
				return
			}
			p, err := b.Commit(ctx)
			results <- result{j, p, err}
		}
		for _, j := range jobs {
			wg.Add(1)
			go run(j)
		}
		for range jobs {
			<-registered
		}
		// Delete the doomed points while the early backups run.
		gone := map[blob.ID]bool{}
		if prune {
			dec, err := s.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Points committed since the dry run change what "the last
			// one" keeps, and may be pruned themselves: the real
			// decisions rule.
			victims = victims[:0]
			for _, d := range dec {
				if !d.Keep {
					gone[d.Point.ID] = true
					if p, ok := live[d.Point.ID]; ok {
						victims = append(victims, p)
					}
				}
			}
		} else {
			for _, v := range victims {
				if err := s.DeletePoint(ctx, v.id); err != nil {
					t.Fatal(err)
				}
				gone[v.id] = true
			}
		}
		kept = kept[:0]
		for id, p := range live {
			if !gone[id] {
				kept = append(kept, p)
			}
		}
		slices.SortFunc(kept, func(a, b gcPoint) int { return bytes.Compare(a.id[:], b.id[:]) })
		for range 2 + rng.IntN(2) { // late: the doomed images again
			base := pick(kept)
			if len(victims) > 0 {
				base = pick(victims)
			}
			j := &job{source: base.source, seeds: mutate(base.seeds, rng.IntN(3))}
			if rng.IntN(2) == 0 { // an incremental of a kept point
				par := pick(kept)
				j.parent, j.source = &par, par.source
			}
			j.delayStart = time.Duration(rng.IntN(4000)) * time.Microsecond
			jobs = append(jobs, j)
			wg.Add(1)
			go run(j)
		}
		// Points that stay are read while the GC moves their chunks.
		readers := make(chan error, 2)
		readDelay := time.Duration(rng.IntN(3000)) * time.Microsecond
		restored, read := pick(kept), pick(kept)
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(readDelay)
			want := cellImage(restored.seeds)
			out := make(writerAt, len(want))
			err := s.RestoreDisk(ctx, restored.id, 0, out, chunkstore.RestoreOptions{Sparse: true})
			if err == nil && !bytes.Equal(out, want) {
				err = errors.New("bytes differ")
			}
			if err != nil {
				err = fmt.Errorf("RestoreDisk of %s during gc: %w", restored.id.Short(), err)
			}
			readers <- err
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := cellImage(read.seeds)
			r, err := s.OpenDisk(ctx, read.id, 0)
			got := make([]byte, len(want))
			for off := 0; err == nil && off < len(got); off += 96 << 10 {
				_, err = r.ReadAt(got[off:min(off+96<<10, len(got))], int64(off))
				time.Sleep(readDelay / 16)
			}
			if err == nil && !bytes.Equal(got, want) {
				err = errors.New("bytes differ")
			}
			if err != nil {
				err = fmt.Errorf("DiskReader of %s during gc: %w", read.id.Short(), err)
			}
			readers <- err
		}()
		below := []float64{100, 100, 100, 50, 0}[rng.IntN(5)]
		st, err := s.GC(ctx, chunkstore.GCOptions{RepackBelow: below})
		if err != nil {
			t.Fatalf("round %d: gc: %v", round, err)
		}
		waitOrFail(t, &wg, time.Minute, "backups")
		for range 2 {
			if err := <-readers; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		close(results)
		repacked += st.PacksRepacked
		deleted += st.PacksDeleted
		spared += st.PacksKept
		for id := range gone {
			delete(live, id)
		}
		var committed, closed int
		for r := range results {
			switch {
			case r.err != nil:
				t.Fatalf("round %d: backup (early %v, parent %v): %v", round, r.j.early, r.j.parent != nil, r.err)
			case r.p != nil:
				if !gone[r.p.ID] {
					live[r.p.ID] = gcPoint{r.p.ID, r.j.source, r.j.seeds}
				}
				committed++
			default:
				closed++
			}
		}
		t.Logf("round %d: %d doomed (prune %v), %d committed, %d closed; gc %g%%: deleted %d, repacked %d into %d, spared %d, reclaimed %d",
			round, len(victims), prune, committed, closed, below, st.PacksDeleted, st.PacksRepacked, st.PacksWritten, st.PacksKept, st.BytesReclaimed)

		want := map[blob.ID][]uint64{}
		for id, p := range live {
			want[id] = p.seeds
		}
		checkStore(t, s, fmt.Sprintf("round %d", round))
		verifyPoints(t, s, want, fmt.Sprintf("round %d", round))
	}
	if _, ok := live[pinned]; !ok {
		t.Fatal("the pinned point was deleted")
	}
	if repacked == 0 || deleted == 0 {
		t.Errorf("in %d rounds GC deleted %d and repacked %d packs: the test did not exercise it", rounds, deleted, repacked)
	}
	t.Logf("%d rounds: %d packs deleted, %d repacked, %d spared for running backups", rounds, deleted, repacked, spared)

	// With nothing running, one GC leaves only live data.
	gcQuiet(t, s, dir, 100)
	var images [][]uint64
	want := map[blob.ID][]uint64{}
	for id, p := range live {
		images = append(images, p.seeds)
		want[id] = p.seeds
	}
	if got, live := storeStats(t, s).UniqueBytes, liveBytes(images...); got != live {
		t.Errorf("after the final gc: %d bytes of chunks indexed, the points use %d", got, live)
	}
	checkStore(t, s, "final")
	verifyPoints(t, s, want, "final")
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// hookedBackend is a local backend that lets a test act around loads.
type hookedBackend struct {
	*backend.Local
	before atomic.Pointer[func(ctx context.Context, h backend.Handle, length int)]
	after  atomic.Pointer[func(ctx context.Context, h backend.Handle, length int)]
}

func (b *hookedBackend) Load(ctx context.Context, h backend.Handle, offset int64, length int) ([]byte, error) {
	if f := b.before.Load(); f != nil {
		(*f)(ctx, h, length)
	}
	data, err := b.Local.Load(ctx, h, offset, length)
	if f := b.after.Load(); f != nil {
		(*f)(ctx, h, length)
	}
	return data, err
}

func openHooked(t *testing.T, dir string) (*chunkstore.Store, *hookedBackend) {
	t.Helper()
	hb := &hookedBackend{Local: backend.NewLocal(dir)}
	s, err := chunkstore.Open(context.Background(), hb, chunkstore.Options{Password: testPassword, IndexDir: filepath.Join(dir, "index")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, hb
}

type gateKey struct{}

// TestRestoreDuringRepackingGC holds a RestoreDisk and a DiskReader
// just before they read packs, at locations they looked up, while a GC
// rewrites every one of those packs; let go, they find the chunks in their
// new packs and restore bit-exact.
func TestRestoreDuringRepackingGC(t *testing.T) {
	dir := initStore(t, gcParams)
	s, hb := openHooked(t, dir)
	ctx := context.Background()

	// Every second cell is the kept point's; the point holding all of them
	// is deleted, so every pack it wrote is partly live.
	var mixed, kept []uint64
	for i := range 40 {
		mixed = append(mixed, uint64(1000+i))
		if i%2 == 0 {
			kept = append(kept, uint64(1000+i))
		} else {
			kept = append(kept, 0)
		}
	}
	px := mustPut(t, s, "vm", mixed, nil, nil)
	pk := mustPut(t, s, "vm", kept, px, mixed)
	if err := s.DeletePoint(ctx, px.ID); err != nil {
		t.Fatal(err)
	}
	img := cellImage(kept)

	// Loads of chunks (not of the small map pages) by the two readers wait
	// at the gate; the packs they asked for are noted.
	gate := make(chan struct{})
	var mu sync.Mutex
	held := map[string][]string{}
	waiting := make(chan string, 64)
	hook := func(ctx context.Context, h backend.Handle, length int) {
		who, _ := ctx.Value(gateKey{}).(string)
		if who == "" || h.Kind != backend.Packs || length < 16<<10 {
			return
		}
		select {
		case <-gate:
			return
		default:
		}
		mu.Lock()
		held[who] = append(held[who], h.Name)
		mu.Unlock()
		waiting <- who
		<-gate
	}
	restoreCtx := context.WithValue(ctx, gateKey{}, "restore")
	readerCtx := context.WithValue(ctx, gateKey{}, "reader")
	r, err := s.OpenDisk(readerCtx, pk.ID, 0) // its map is read before the gate is set
	if err != nil {
		t.Fatal(err)
	}
	hb.before.Store(&hook)

	viaRestore := make(writerAt, len(img))
	viaReader := make([]byte, len(img))
	errs := make(chan error, 2)
	go func() {
		errs <- s.RestoreDisk(restoreCtx, pk.ID, 0, viaRestore, chunkstore.RestoreOptions{Sparse: true})
	}()
	go func() {
		for off := 0; off < len(viaReader); off += 200 << 10 {
			end := min(off+200<<10, len(viaReader))
			if _, err := r.ReadAt(viaReader[off:end], int64(off)); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	seen := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for !seen["restore"] || !seen["reader"] {
		select {
		case who := <-waiting:
			seen[who] = true
		case err := <-errs:
			t.Fatalf("a reader finished before reaching the gate: %v", err)
		case <-timeout:
			t.Fatal("the readers never reached the gate")
		}
	}

	st, err := s.GC(ctx, chunkstore.GCOptions{RepackBelow: 100})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRepacked == 0 {
		t.Fatalf("gc repacked nothing: %+v", st)
	}
	files := packFiles(t, dir)
	mu.Lock()
	for who, names := range held {
		gone := 0
		for _, n := range names {
			if _, ok := files[n]; !ok {
				gone++
			}
		}
		if gone == 0 {
			t.Errorf("no pack the %s waits to read was removed by the gc: the test proves nothing", who)
		}
	}
	mu.Unlock()
	close(gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("read across a repacking gc: %v", err)
		}
	}
	requireSame(t, "RestoreDisk across gc", img, viaRestore)
	requireSame(t, "DiskReader across gc", img, viaReader)
	hb.before.Store(nil)
	checkStore(t, s, "after gc")
	verifyPoints(t, s, map[blob.ID][]uint64{pk.ID: kept}, "after gc")
}

// TestGCParentDeletedWhileBackupStarts deletes a backup's parent, and
// starts a GC, in the moment between NewBackup loading the parent and
// registering the backup. The backup splices the parent's unchanged
// extents into its point without claiming them; whatever happens, a
// committed point must verify and restore.
func TestGCParentDeletedWhileBackupStarts(t *testing.T) {
	dir := initStore(t, gcParams)
	s, hb := openHooked(t, dir)
	ctx := context.Background()
	parentImg := seedRange(1, 32)
	parent := mustPut(t, s, "vm", parentImg, nil, nil)
	mustPut(t, s, "other", seedRange(501, 4), nil, nil)

	marked := make(chan struct{})
	release := make(chan struct{})
	gcDone := make(chan error, 1)
	var gcStats chunkstore.GCStats
	var armed atomic.Bool
	armed.Store(true)
	hook := func(_ context.Context, h backend.Handle, _ int) {
		if h.Kind != backend.Points || h.Name != parent.ID.String() || !armed.CompareAndSwap(true, false) {
			return
		}
		// NewBackup has just read the parent's manifest.
		if err := s.DeletePoint(ctx, parent.ID); err != nil {
			t.Error(err)
		}
		var once sync.Once
		go func() {
			var err error
			gcStats, err = s.GC(ctx, chunkstore.GCOptions{Progress: func(stage string, _, _ int64) {
				if stage == "mark" {
					once.Do(func() {
						close(marked)
						<-release
					})
				}
			}})
			gcDone <- err
		}()
		<-marked
	}
	hb.after.Store(&hook)

	childImg := slices.Clone(parentImg)
	childImg[3] = 9001
	b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "vm"}, Parent: &parent.ID})
	if err != nil {
		close(release)
		<-gcDone
		t.Logf("NewBackup refused the parent deleted under it: %v", err)
		return
	}
	defer b.Close()
	img := cellImage(childImg)
	_, addErr := b.AddDisk(ctx, chunkstore.DiskSpec{Reader: bytes.NewReader(img), Size: int64(len(img)), Changed: changedCells(parentImg, childImg)})
	close(release)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", gcStats)
	if addErr != nil {
		t.Logf("AddDisk failed: %v", addErr)
		return
	}
	p, err := b.Commit(ctx)
	if err != nil {
		t.Logf("commit failed: %v", err)
		return
	}
	rep, err := s.Check(ctx, chunkstore.CheckOptions{ReadData: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("the committed incremental %s is damaged: %d problems, damaged points %d; first: %+v",
			p.ID.Short(), len(rep.Problems), len(rep.DamagedPoints), rep.Problems[0])
	}
	out := make(writerAt, len(img))
	if err := s.RestoreDisk(ctx, p.ID, 0, out, chunkstore.RestoreOptions{Sparse: true}); err != nil {
		t.Fatalf("restore of the committed incremental: %v", err)
	}
	requireSame(t, "incremental of a parent deleted under it", img, out)
}

// captureHandler keeps the records logged through it.
type captureHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// find returns the attributes of the first record with msg.
func (h *captureHandler) find(msg string) (map[string]slog.Value, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message == msg {
			attrs := map[string]slog.Value{}
			r.Attrs(func(a slog.Attr) bool {
				attrs[a.Key] = a.Value
				return true
			})
			return attrs, true
		}
	}
	return nil, false
}

func openReader(t *testing.T, dir string, log *slog.Logger) *chunkstore.Store {
	t.Helper()
	r, err := chunkstore.Open(context.Background(), backend.NewLocal(dir), chunkstore.Options{Password: testPassword, ReadOnly: true, Logger: log})
	if err != nil {
		t.Fatalf("read-only open beside a writer: %v", err)
	}
	return r
}

// restoreViaReaderFirst is restoreBytes with the DiskReader first, so that
// it is the one to find packs gone.
func restoreViaReaderFirst(t *testing.T, s *chunkstore.Store, id blob.ID, want []byte, what string) {
	t.Helper()
	ctx := context.Background()
	r, err := s.OpenDisk(ctx, id, 0)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got := make([]byte, r.Size())
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	requireSame(t, what+" (DiskReader)", want, got)
	out := make(writerAt, len(want))
	if err := s.RestoreDisk(ctx, id, 0, out, chunkstore.RestoreOptions{}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	requireSame(t, what+" (RestoreDisk)", want, out)
}

// TestReadOnlyBesideWriter opens readers while the writer holds the store:
// they need no lock, restore, refuse every write, see what was committed
// before they opened, share nothing with each other, and keep restoring
// live points after the writer's GC moved their chunks.
func TestReadOnlyBesideWriter(t *testing.T) {
	w, dir := newGCStore(t)
	ctx := context.Background()
	img1 := seedRange(1, 24)
	img2 := slices.Clone(img1)
	copy(img2[4:12], seedRange(101, 8))
	img3 := append(seedRange(1, 8), seedRange(201, 16)...)
	p1 := mustPut(t, w, "vm", img1, nil, nil)
	p2 := mustPut(t, w, "vm", img2, p1, img1)
	p3 := mustPut(t, w, "other", img3, nil, nil)

	log1 := &captureHandler{}
	r1 := openReader(t, dir, slog.New(log1))
	defer r1.Close()
	if !r1.ReadOnly() || w.ReadOnly() {
		t.Fatal("ReadOnly() is wrong")
	}
	points, err := r1.Points(ctx)
	if err != nil || len(points) != 3 {
		t.Fatalf("reader lists %d points (%v), want 3", len(points), err)
	}
	requireSame(t, "reader restore", cellImage(img2), restoreBytes(t, r1, p2.ID, int64(len(img2))*cellSize))

	if _, err := r1.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "vm"}}); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("NewBackup on a reader: %v", err)
	}
	if _, err := r1.GC(ctx, chunkstore.GCOptions{}); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("GC on a reader: %v", err)
	}
	if _, err := r1.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{}); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("Prune on a reader: %v", err)
	}
	if dec, err := r1.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{DryRun: true}); err != nil || len(dec) != 3 {
		t.Errorf("dry-run Prune on a reader: %d decisions, %v", len(dec), err)
	}
	if err := r1.Pin(ctx, p1.ID); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("Pin on a reader: %v", err)
	}
	if _, err := r1.Unpin(ctx, p1.ID); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("Unpin on a reader: %v", err)
	}
	if err := r1.DeletePoint(ctx, p1.ID); !errors.Is(err, chunkstore.ErrReadOnly) {
		t.Errorf("DeletePoint on a reader: %v", err)
	}
	if pins, err := w.Pinned(ctx); err != nil || len(pins) != 0 {
		t.Errorf("a reader's refused Pin left pins %v (%v)", pins, err)
	}

	// A point committed now is seen by a reader opened afterwards; that
	// reader finds the shared read index busy and builds its own.
	img4 := slices.Clone(img3)
	copy(img4[20:24], seedRange(301, 4))
	p4 := mustPut(t, w, "other", img4, p3, img3)
	log2 := &captureHandler{}
	r2 := openReader(t, dir, slog.New(log2))
	r2Open := true
	defer func() {
		if r2Open {
			r2.Close()
		}
	}()
	attrs, ok := log2.find("read index busy: building a private one")
	if !ok {
		t.Fatal("the second reader did not build a private index")
	}
	tmpIndex := attrs["dir"].String()
	if fi, err := os.Stat(tmpIndex); err != nil || !fi.IsDir() || strings.HasPrefix(tmpIndex, dir) {
		t.Fatalf("private index %q: %v", tmpIndex, err)
	}
	points, err = r2.Points(ctx)
	if err != nil || len(points) != 4 {
		t.Fatalf("second reader lists %d points (%v), want 4", len(points), err)
	}
	requireSame(t, "second reader restore of the new point", cellImage(img4), restoreBytes(t, r2, p4.ID, int64(len(img4))*cellSize))

	// The writer deletes p1 and p3 and repacks: their dead cells share
	// packs with live ones, which move. Both readers still have the old
	// locations.
	before := packFiles(t, dir)
	for _, id := range []blob.ID{p1.ID, p3.ID} {
		if err := w.DeletePoint(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	st, err := w.GC(ctx, chunkstore.GCOptions{RepackBelow: 100})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRepacked == 0 || len(minus(before, packFiles(t, dir))) == 0 {
		t.Fatalf("the gc moved nothing: %+v", st)
	}
	checkStore(t, w, "writer after gc")
	const refreshed = "packs in the index are gone from the store"
	if _, ok := log1.find(refreshed); ok {
		t.Fatal("the first reader refreshed its index before the gc")
	}
	restoreViaReaderFirst(t, r1, p2.ID, cellImage(img2), "first reader after gc, p2")
	if _, ok := log1.find(refreshed); !ok {
		t.Error("the first reader restored without learning that packs went: it cannot have read the old locations")
	}
	restoreViaReaderFirst(t, r2, p4.ID, cellImage(img4), "second reader after gc, p4")
	requireSame(t, "second reader after gc, p2", cellImage(img2), restoreBytes(t, r2, p2.ID, int64(len(img2))*cellSize))
	requireSame(t, "first reader after gc, p2 again", cellImage(img2), restoreBytes(t, r1, p2.ID, int64(len(img2))*cellSize))

	// A reader opened after the gc sees exactly the live points.
	r3 := openReader(t, dir, nil)
	defer r3.Close()
	verifyPoints(t, r3, map[blob.ID][]uint64{p2.ID: img2, p4.ID: img4}, "reader opened after gc")

	r2Open = false
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmpIndex); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the private index %s is left after close: %v", tmpIndex, err)
	}
}

// TestStaleLockTakenOver leaves a lock file naming a writer that died
// (its content, no flock): Open takes it over and says so. A second writer
// meanwhile gets a lock error naming the holder's pid, host and start.
func TestStaleLockTakenOver(t *testing.T) {
	dir := initStore(t, gcParams)
	ctx := context.Background()
	dead := backend.LockInfo{PID: 4194301, Host: "crashed.example", Since: time.Date(2024, 2, 29, 3, 4, 5, 0, time.UTC), What: "nightly backup"}
	b, _ := json.Marshal(dead)
	lockPath := filepath.Join(dir, "lock")
	if err := os.WriteFile(lockPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	log := &captureHandler{}
	s, err := chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: testPassword, Logger: slog.New(log), Purpose: "gc test"})
	if err != nil {
		t.Fatalf("open over a stale lock: %v", err)
	}
	sOpen := true
	defer func() {
		if sOpen {
			s.Close()
		}
	}()
	attrs, ok := log.find("took over the lock of a writer that died")
	if !ok {
		t.Fatal("taking over a stale lock was not logged")
	}
	if attrs["pid"].Int64() != int64(dead.PID) || attrs["host"].String() != dead.Host || attrs["what"].String() != dead.What {
		t.Errorf("takeover logged %v, want the dead writer %+v", attrs, dead)
	}
	var holder backend.LockInfo
	if b, err := os.ReadFile(lockPath); err != nil || json.Unmarshal(b, &holder) != nil {
		t.Fatalf("lock file after takeover: %q, %v", b, err)
	}
	host, _ := os.Hostname()
	if holder.PID != os.Getpid() || holder.Host != host || holder.What != "gc test" || time.Since(holder.Since) > time.Minute {
		t.Errorf("lock file names %+v, want this process", holder)
	}

	_, err = chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: testPassword, Purpose: "second"})
	if !backend.IsLocked(err) {
		t.Fatalf("second writer: %v, want a lock error", err)
	}
	msg := err.Error()
	for _, want := range []string{"pid " + strconv.Itoa(os.Getpid()), host, holder.Since.Format(time.RFC3339), "gc test"} {
		if !strings.Contains(msg, want) {
			t.Errorf("lock error %q does not name %q", msg, want)
		}
	}
	var le *backend.LockedError
	if !errors.As(err, &le) || le.Holder.PID != os.Getpid() || le.Holder.Host != host || !le.Holder.Since.Equal(holder.Since) {
		t.Errorf("lock error holder %+v, want %+v", le, holder)
	}

	// The writer that took over works, and lets go cleanly: the next
	// writer finds no stale lock.
	p := mustPut(t, s, "vm", seedRange(1, 8), nil, nil)
	if _, err := s.GC(ctx, chunkstore.GCOptions{RepackBelow: 100}); err != nil {
		t.Fatal(err)
	}
	sOpen = false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log2 := &captureHandler{}
	s2, err := chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: testPassword, Logger: slog.New(log2)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, ok := log2.find("took over the lock of a writer that died"); ok {
		t.Error("a lock released by Close was taken for a dead writer's")
	}
	verifyPoints(t, s2, map[blob.ID][]uint64{p.ID: seedRange(1, 8)}, "after reopening")
}
