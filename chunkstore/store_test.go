package chunkstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

var testPassword = []byte("correct horse battery staple")

// cheapKDF keeps tests fast; the real cost is crypto.DefaultKDF.
var cheapKDF = crypto.KDFParams{Time: 1, Memory: 8 << 10, Threads: 1}

func newStore(t *testing.T) (*chunkstore.Store, string) {
	t.Helper()
	dir := initStore(t, chunkstore.Params{})
	return openStore(t, dir), dir
}

// initStore makes a store with parameters p (zero: the defaults) in a new
// directory and returns it.
func initStore(t *testing.T, p chunkstore.Params) string {
	t.Helper()
	dir := t.TempDir()
	if err := chunkstore.Init(context.Background(), backend.NewLocal(dir), chunkstore.InitOptions{Password: testPassword, KDF: cheapKDF, Params: p}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openStore(t *testing.T, dir string) *chunkstore.Store {
	t.Helper()
	s, err := chunkstore.Open(context.Background(), backend.NewLocal(dir), chunkstore.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// countingReader records every range read from the disk.
type countingReader struct {
	r     io.ReaderAt
	mu    sync.Mutex
	reads []diskmap.Area
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.mu.Lock()
	c.reads = append(c.reads, diskmap.Area{Offset: off, Length: int64(n)})
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) total() int64 {
	var n int64
	for _, a := range c.reads {
		n += a.Length
	}
	return n
}

type backupArgs struct {
	parent    *blob.ID
	changed   []diskmap.Area
	allocated []diskmap.Area
}

func backup(t *testing.T, s *chunkstore.Store, img io.ReaderAt, size int64, a backupArgs) (*chunkstore.Point, chunkstore.BackupStats) {
	t.Helper()
	ctx := context.Background()
	b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "test"}, Parent: a.parent})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.AddDisk(ctx, chunkstore.DiskSpec{Label: "img", Reader: img, Size: size, Changed: a.changed, Allocated: a.allocated})
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p, st
}

// restoreBytes restores a point's disk into memory through RestoreDisk and
// checks that the DiskReader reads the same bytes.
func restoreBytes(t *testing.T, s *chunkstore.Store, id blob.ID, size int64) []byte {
	t.Helper()
	ctx := context.Background()
	out := make(writerAt, size)
	if err := s.RestoreDisk(ctx, id, 0, out, chunkstore.RestoreOptions{Sparse: true}); err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenDisk(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	viaReader, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaReader, out) {
		t.Fatalf("point %s: DiskReader and RestoreDisk disagree", id.Short())
	}
	return out
}

type writerAt []byte

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(w)) {
		return 0, errors.New("write beyond the end")
	}
	return copy(w[off:], p), nil
}

func requireSame(t *testing.T, what string, want, got []byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: restored %d bytes, want %d", what, len(got), len(want))
	}
	if !bytes.Equal(want, got) {
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("%s: first difference at offset %d", what, i)
			}
		}
	}
}

func TestRoundTripShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	sparse := make([]byte, 40<<20)
	copy(sparse[5<<20:], random(3<<20))
	copy(sparse[(16<<20)-1000:], random(3000)) // across a segment edge
	copy(sparse[len(sparse)-10:], random(10))  // at the very end
	text := bytes.Repeat([]byte("all work and no play makes a dull backup\n"), 200_000)
	cases := []struct {
		name string
		img  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{7}},
		{"one zero byte", []byte{0}},
		{"all zero", make([]byte, 20<<20)},
		{"odd size random", random(3*1000*1000 + 7)},
		{"sparse", sparse},
		{"compressible", text},
	}
	s, _ := newStore(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, st := backup(t, s, bytes.NewReader(c.img), int64(len(c.img)), backupArgs{})
			requireSame(t, c.name, c.img, restoreBytes(t, s, p.ID, int64(len(c.img))))
			d, _ := p.Disk(0)
			var nonzero int64
			for _, b := range c.img {
				if b != 0 {
					nonzero++
				}
			}
			if nonzero == 0 && (st.Chunks != 0 || d.DataBytes != 0) {
				t.Errorf("all-zero image was chunked: %d chunks, %d data bytes", st.Chunks, d.DataBytes)
			}
		})
	}
	// The sparse image's zero runs cost nothing: far less is stored than its size.
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Points != len(cases) {
		t.Errorf("stats: %d points, want %d", st.Points, len(cases))
	}
}

func TestAllocatedAreasAreTheOnlyReads(t *testing.T) {
	s, _ := newStore(t)
	img := make([]byte, 32<<20)
	for i := 4 << 20; i < 6<<20; i++ {
		img[i] = byte(i * 7)
	}
	alloc := []diskmap.Area{{Offset: 4 << 20, Length: 2 << 20}}
	cr := &countingReader{r: bytes.NewReader(img)}
	p, _ := backup(t, s, cr, int64(len(img)), backupArgs{allocated: alloc})
	if got := cr.total(); got != 2<<20 {
		t.Errorf("read %d bytes, want only the 2 MiB allocated", got)
	}
	requireSame(t, "allocated", img, restoreBytes(t, s, p.ID, int64(len(img))))
}

// TestIncrementalProperty writes at random places, backs up with exactly the
// changed list, and checks each point bit-exact and each incremental's reads
// against the bound: the changed areas, grown to the parent's chunks they
// touch or else to whole zero blocks, and nothing else.
func TestIncrementalProperty(t *testing.T) {
	seed := uint64(42)
	if v := os.Getenv("BULWARK_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	s, _ := newStore(t)
	zb := int64(s.Params().ZeroBlock)
	const size = 96<<20 + 12345
	img := make([]byte, size)
	for i := 0; i < 8; i++ { // some data to start with, the rest zero
		off := rng.Int64N(size - 4<<20)
		fill(rng, img[off:off+rng.Int64N(4<<20)])
	}
	p, _ := backup(t, s, bytes.NewReader(img), size, backupArgs{})
	type saved struct {
		id  blob.ID
		sum [32]byte
	}
	points := []saved{{p.ID, sha256.Sum256(img)}}
	for round := 0; round < 12; round++ {
		r, err := s.OpenDisk(context.Background(), p.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		parent := r.Extents()
		var changed []diskmap.Area
		for w := rng.IntN(20); w >= 0; w-- {
			var n int64
			switch rng.IntN(3) {
			case 0:
				n = 1 + rng.Int64N(16)
			case 1:
				n = 1 + rng.Int64N(64<<10)
			default:
				n = 1 + rng.Int64N(3<<20)
			}
			off := rng.Int64N(size - n)
			if rng.IntN(4) == 0 {
				clear(img[off : off+n]) // zeroing is a change too
			} else {
				fill(rng, img[off:off+n])
			}
			changed = append(changed, diskmap.Area{Offset: off, Length: n})
		}
		cr := &countingReader{r: bytes.NewReader(img)}
		parentID := p.ID
		var st chunkstore.BackupStats
		p, st = backup(t, s, cr, size, backupArgs{parent: &parentID, changed: changed})
		if d, _ := p.Disk(0); d.FullRead != "" {
			t.Fatalf("round %d: incremental became a full read: %s", round, d.FullRead)
		}
		bound := readBound(parent, changed, size, zb)
		for _, rd := range cr.reads {
			if !within(bound, rd) {
				t.Fatalf("round %d: read %d+%d lies outside the widened changed areas", round, rd.Offset, rd.Length)
			}
		}
		if st.BytesRead != cr.total() {
			t.Errorf("round %d: stats say %d bytes read, reader saw %d", round, st.BytesRead, cr.total())
		}
		var changedBytes int64
		for _, a := range diskmap.Normalize(changed, size) {
			changedBytes += a.Length
		}
		if st.BytesRead < changedBytes {
			t.Errorf("round %d: read %d bytes, fewer than the %d changed", round, st.BytesRead, changedBytes)
		}
		t.Logf("round %d: %d areas, %d bytes changed, %d read (bound %d), %d new",
			round, len(changed), changedBytes, st.BytesRead, total(bound), st.BytesNew)
		points = append(points, saved{p.ID, sha256.Sum256(img)})
	}
	for i, pt := range points {
		if got := sha256.Sum256(restoreBytes(t, s, pt.id, size)); got != pt.sum {
			t.Fatalf("point %d (%s) does not restore bit-exact", i, pt.id.Short())
		}
	}
}

// readBound is computed apart from diskmap.Widen, from its definition: every
// parent extent a changed area touches, and the areas themselves grown to
// whole zero blocks.
func readBound(parent []diskmap.Extent, changed []diskmap.Area, size, zb int64) []diskmap.Area {
	var out []diskmap.Area
	for _, a := range changed {
		start := a.Offset / zb * zb
		end := min((a.End()+zb-1)/zb*zb, size)
		out = append(out, diskmap.Area{Offset: start, Length: end - start})
		for _, e := range parent {
			if e.Offset < a.End() && a.Offset < e.End() {
				out = append(out, diskmap.Area{Offset: e.Offset, Length: e.Length})
			}
		}
	}
	return diskmap.Normalize(out, size)
}

func within(areas []diskmap.Area, r diskmap.Area) bool {
	for _, a := range areas {
		if r.Offset >= a.Offset && r.End() <= a.End() {
			return true
		}
	}
	return r.Length == 0
}

func total(areas []diskmap.Area) int64 {
	var n int64
	for _, a := range areas {
		n += a.Length
	}
	return n
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func TestDedupAgainstParentWithoutChangedList(t *testing.T) {
	s, _ := newStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	img := make([]byte, 24<<20)
	fill(rng, img)
	p1, _ := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{})
	fill(rng, img[10<<20:10<<20+100])
	p2, st := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{parent: &p1.ID})
	if st.BytesRead != int64(len(img)) {
		t.Errorf("read %d bytes, want the whole image", st.BytesRead)
	}
	// One changed chunk, at most two if the change moved a boundary.
	if st.NewChunks > 2 || st.BytesNew > 2*int64(s.Params().ChunkMax) {
		t.Errorf("%d new chunks, %d new bytes for a 100-byte change", st.NewChunks, st.BytesNew)
	}
	requireSame(t, "p2", img, restoreBytes(t, s, p2.ID, int64(len(img))))
}

func TestSmallIncrementalStoresLittleMetadata(t *testing.T) {
	s, _ := newStore(t)
	rng := rand.New(rand.NewPCG(5, 6))
	const size = 1 << 30 // four map pages' worth of spans
	img := make([]byte, size)
	for off := 0; off < size; off += 64 << 20 {
		fill(rng, img[off:off+8<<20])
	}
	p1, _ := backup(t, s, bytes.NewReader(img), size, backupArgs{})
	fill(rng, img[700<<20:700<<20+4096])
	p2, st := backup(t, s, bytes.NewReader(img), size, backupArgs{parent: &p1.ID, changed: []diskmap.Area{{Offset: 700 << 20, Length: 4096}}})
	d1, _ := p1.Disk(0)
	d2, _ := p2.Disk(0)
	differ := 0
	for i := range d2.Pages {
		if d1.Pages[i] != d2.Pages[i] {
			differ++
		}
	}
	if len(d1.Pages) < 4 || differ != 1 {
		t.Errorf("%d map pages, %d changed; want one changed page of at least 4", len(d2.Pages), differ)
	}
	// A 4 KiB change stores at most its chunk and one page.
	if limit := int64(s.Params().ChunkMax) + 64<<10; st.BytesStored > limit {
		t.Errorf("small incremental stored %d bytes, more than %d", st.BytesStored, limit)
	}
}

func TestWrongPassword(t *testing.T) {
	_, dir := newStore(t)
	// The store is open (and locked) by newStore; close it by opening a fresh copy.
	copyDir := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_ = os.Remove(filepath.Join(copyDir, "lock"))
	_, err := chunkstore.Open(context.Background(), backend.NewLocal(copyDir), chunkstore.Options{Password: []byte("wrong")})
	if !errors.Is(err, crypto.ErrWrongPassword) {
		t.Fatalf("open with a wrong password: %v, want ErrWrongPassword", err)
	}
}

func TestSecondOpenNamesHolder(t *testing.T) {
	_, dir := newStore(t)
	_, err := chunkstore.Open(context.Background(), backend.NewLocal(dir), chunkstore.Options{Password: testPassword})
	if !backend.IsLocked(err) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second open: %v, want a lock error naming pid %d", err, os.Getpid())
	}
}

func TestCorruptBlobIsNamed(t *testing.T) {
	s, dir := newStore(t)
	rng := rand.New(rand.NewPCG(7, 8))
	img := make([]byte, 8<<20)
	fill(rng, img)
	p, _ := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	_, _ = f.ReadAt(b[:], 100)
	b[0] ^= 0x40
	_, _ = f.WriteAt(b[:], 100)
	f.Close()
	s = openStore(t, dir)
	err = s.RestoreDisk(context.Background(), p.ID, 0, make(writerAt, len(img)), chunkstore.RestoreOptions{Sparse: true})
	if err == nil {
		t.Fatal("restore of a damaged pack succeeded")
	}
	pack := filepath.Base(packs[0])[:8]
	if !strings.Contains(err.Error(), pack) || !strings.Contains(err.Error(), p.ID.Short()) {
		t.Errorf("error %q does not name pack %s and point %s", err, pack, p.ID.Short())
	}
}

func TestIndexRebuiltFromPacksOnOpen(t *testing.T) {
	s, dir := newStore(t)
	rng := rand.New(rand.NewPCG(9, 10))
	img := make([]byte, 12<<20)
	fill(rng, img)
	p, _ := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	points, err := s.Points(context.Background())
	if err != nil || len(points) != 1 || points[0].ID != p.ID {
		t.Fatalf("points after losing the index: %v, %v", points, err)
	}
	requireSame(t, "after index loss", img, restoreBytes(t, s, p.ID, int64(len(img))))
}

// prefetchReader records what a backup announces it will read.
type prefetchReader struct {
	countingReader
	pmu        sync.Mutex
	prefetched []diskmap.Area
}

func (p *prefetchReader) Prefetch(areas []diskmap.Area) {
	p.pmu.Lock()
	p.prefetched = append(p.prefetched, areas...)
	p.pmu.Unlock()
}

func TestBackupPrefetchesWhatItReads(t *testing.T) {
	s, _ := newStore(t)
	rng := rand.New(rand.NewPCG(13, 14))
	const size = 200 << 20 // more than the prefetch window
	img := make([]byte, size)
	fill(rng, img[:size/2])
	p1, _ := backup(t, s, bytes.NewReader(img), size, backupArgs{})
	r, err := s.OpenDisk(context.Background(), p1.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var changed []diskmap.Area
	for i := 0; i < 300; i++ {
		off := rng.Int64N(size - 8192)
		fill(rng, img[off:off+100])
		changed = append(changed, diskmap.Area{Offset: off, Length: 100})
	}
	pr := &prefetchReader{countingReader: countingReader{r: bytes.NewReader(img)}}
	p2, _ := backup(t, s, pr, size, backupArgs{parent: &p1.ID, changed: changed})
	announced := diskmap.Normalize(pr.prefetched, size)
	for _, rd := range pr.reads {
		if !within(announced, rd) {
			t.Fatalf("read %d+%d was not announced", rd.Offset, rd.Length)
		}
	}
	if bound := readBound(r.Extents(), changed, size, int64(s.Params().ZeroBlock)); total(announced) > total(bound) {
		t.Errorf("announced %d bytes, more than the %d it may read", total(announced), total(bound))
	}
	requireSame(t, "prefetched incremental", img, restoreBytes(t, s, p2.ID, size))
}

func TestMultiDiskPointAndRepeatedDisk(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(15, 16))
	disks := [][]byte{make([]byte, 3<<20), make([]byte, 5<<20+1)}
	for _, d := range disks {
		fill(rng, d)
	}
	b, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "vm"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range disks {
		if _, err := b.AddDisk(ctx, chunkstore.DiskSpec{Index: i, Reader: bytes.NewReader(d), Size: int64(len(d))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AddDisk(ctx, chunkstore.DiskSpec{Index: 1, Reader: bytes.NewReader(disks[1]), Size: int64(len(disks[1]))}); err == nil {
		t.Fatal("a second disk 1 in one point was accepted")
	}
	p, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range disks {
		out := make(writerAt, len(d))
		if err := s.RestoreDisk(ctx, p.ID, i, out, chunkstore.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		requireSame(t, "disk", d, out)
	}
	if err := s.RestoreDisk(ctx, p.ID, 2, make(writerAt, 1), chunkstore.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "no disk 2") {
		t.Errorf("restore of a missing disk: %v", err)
	}
}

func TestSecretsAreBoundToStoreAndPurpose(t *testing.T) {
	s, _ := newStore(t)
	other, _ := newStore(t)
	sealed := s.SealSecret("vcenter/vc1", []byte("hunter2"))
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed secret holds the plaintext")
	}
	got, err := s.OpenSecret("vcenter/vc1", sealed)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("OpenSecret = %q, %v; want hunter2", got, err)
	}
	if _, err := s.OpenSecret("vcenter/vc2", sealed); err == nil {
		t.Error("a secret opened for another purpose")
	}
	if _, err := other.OpenSecret("vcenter/vc1", sealed); err == nil {
		t.Error("a secret opened with another store's key")
	}
}
