package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// checkParams make small chunks and 1 MiB packs, so that a few MiB of data
// fill many packs and damage to one of them hits some points and not others.
var checkParams = chunkstore.Params{
	ChunkMin:  64 << 10,
	ChunkAvg:  128 << 10,
	ChunkMax:  512 << 10,
	Segment:   2 << 20,
	ZeroBlock: 4 << 10,
	PackSize:  1 << 20,
	ZstdLevel: 1,
}

// fxPoint is a point of the fixture and everything known about it from
// before any damage: its image, its extents and every blob it uses.
type fxPoint struct {
	name    string
	source  string
	id      blob.ID
	time    time.Time
	img     []byte
	extents []diskmap.Extent
	blobs   map[blob.ID]bool // its chunks and map pages
}

// fixture is a store with two sources of unrelated random data:
//
//	a1  random image of source "alpha"
//	a2  a1 with the area at xOff rewritten (it no longer has a1's chunk there)
//	a3  a1 with the area at yOff rewritten, in another segment (so it keeps
//	    a1's chunk at xOff)
//	b1  random image of source "beta"
//	b2  b1 with a small change
//
// Every backup commits (and so flushes) before the next starts, so no pack
// holds blobs of both sources.
type fixture struct {
	dir    string
	s      *chunkstore.Store
	size   int
	xOff   int64
	points []*fxPoint
}

func (f *fixture) point(name string) *fxPoint {
	for _, p := range f.points {
		if p.name == name {
			return p
		}
	}
	panic("no point " + name)
}

func (f *fixture) byID(id string) *fxPoint {
	for _, p := range f.points {
		if p.id.String() == id {
			return p
		}
	}
	return nil
}

// using returns the names of the points that use any of the blobs.
func (f *fixture) using(blobs map[blob.ID]bool) map[string]bool {
	out := map[string]bool{}
	for _, p := range f.points {
		for id := range blobs {
			if p.blobs[id] {
				out[p.name] = true
				break
			}
		}
	}
	return out
}

func buildFixture(t *testing.T, size int) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := initStore(t, checkParams)
	f := &fixture{dir: dir, s: openStore(t, dir), size: size, xOff: int64(size / 8)}
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	random := func() []byte {
		b := make([]byte, size)
		_, _ = rng.Read(b)
		return b
	}
	changed := func(img []byte, off int) []byte {
		c := bytes.Clone(img)
		_, _ = rng.Read(c[off : off+64<<10])
		return c
	}
	a1, b1 := random(), random()
	yOff := size * 3 / 4
	if int64(yOff)/checkParams.Segment == f.xOff/checkParams.Segment {
		t.Fatalf("fixture of %d bytes: the changes of a2 and a3 share a segment", size)
	}
	for _, p := range []*fxPoint{
		{name: "a1", source: "alpha", img: a1},
		{name: "b1", source: "beta", img: b1},
		{name: "a2", source: "alpha", img: changed(a1, int(f.xOff))},
		{name: "a3", source: "alpha", img: changed(a1, yOff)},
		{name: "b2", source: "beta", img: changed(b1, size/2)},
	} {
		b, err := f.s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: p.source}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddDisk(ctx, chunkstore.DiskSpec{Label: p.name, Reader: bytes.NewReader(p.img), Size: int64(size)}); err != nil {
			t.Fatal(err)
		}
		pt, err := b.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.id, p.time = pt.ID, pt.Time
		f.points = append(f.points, p)
	}
	for _, p := range f.points {
		p.blobs = map[blob.ID]bool{}
		full, err := f.s.LoadPoint(ctx, p.id)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range full.Disks {
			for _, pr := range d.Pages {
				p.blobs[pr.ID] = true
			}
		}
		r, err := f.s.OpenDisk(ctx, p.id, 0)
		if err != nil {
			t.Fatal(err)
		}
		p.extents = r.Extents()
		for _, e := range p.extents {
			if !e.ID.IsZero() {
				p.blobs[e.ID] = true
			}
		}
	}
	return f
}

// close closes the store, for damage done behind its back.
func (f *fixture) close(t *testing.T) {
	t.Helper()
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	f.s = nil
}

func (f *fixture) open(t *testing.T, o chunkstore.Options) {
	t.Helper()
	o.Password = testPassword
	s, err := chunkstore.Open(context.Background(), backend.NewLocal(f.dir), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.s = s
}

func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	f.close(t)
	f.open(t, chunkstore.Options{})
}

func (f *fixture) packPath(id blob.ID) string {
	n := id.String()
	return filepath.Join(f.dir, "packs", n[:2], n)
}

func (f *fixture) packFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(f.dir, "packs", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	slices.Sort(names)
	return names
}

// chunkAt returns the chunk of p's extents that holds offset off.
func (p *fxPoint) chunkAt(t *testing.T, off int64) blob.ID {
	t.Helper()
	for _, e := range p.extents {
		if e.Offset <= off && off < e.End() && !e.ID.IsZero() {
			return e.ID
		}
	}
	t.Fatalf("point %s has no chunk at offset %d", p.name, off)
	return blob.ID{}
}

// sharedChunk returns a data chunk that a1 and a3 use and a2 does not.
func (f *fixture) sharedChunk(t *testing.T) blob.ID {
	t.Helper()
	c := f.point("a1").chunkAt(t, f.xOff)
	if !f.point("a3").blobs[c] || f.point("a2").blobs[c] {
		t.Fatalf("fixture: chunk %s at offset %d: in a3 %v, in a2 %v; want only a3", c.Short(), f.xOff,
			f.point("a3").blobs[c], f.point("a2").blobs[c])
	}
	return c
}

// packBlobs returns the blobs in a pack's trailer.
func (f *fixture) packBlobs(t *testing.T, p blob.ID) map[blob.ID]bool {
	t.Helper()
	entries, err := chunkstore.PackEntries(context.Background(), f.s, p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[blob.ID]bool{}
	for _, e := range entries {
		out[e.ID] = true
	}
	return out
}

// restoreAll restores every point whose manifest is still there and returns
// the names of those that fail. Those that succeed must be bit-exact.
func (f *fixture) restoreAll(t *testing.T) map[string]bool {
	t.Helper()
	failed := map[string]bool{}
	for _, p := range f.points {
		out := make(writerAt, len(p.img))
		err := f.s.RestoreDisk(context.Background(), p.id, 0, out, chunkstore.RestoreOptions{Sparse: true})
		if err != nil {
			failed[p.name] = true
			continue
		}
		if !bytes.Equal(out, p.img) {
			t.Errorf("point %s restored without an error but not bit-exact: silent corruption", p.name)
		}
	}
	return failed
}

func (f *fixture) check(t *testing.T, o chunkstore.CheckOptions) *chunkstore.CheckReport {
	t.Helper()
	rep, err := f.s.Check(context.Background(), o)
	if err != nil {
		t.Fatalf("check %+v: %v", o, err)
	}
	return rep
}

// requireOK fails unless the report is clean and covers the whole fixture.
func (f *fixture) requireOK(t *testing.T, rep *chunkstore.CheckReport, what string) {
	t.Helper()
	if !rep.OK() || len(rep.DamagedPoints) != 0 || len(rep.DamagedPacks) != 0 || rep.Incomplete {
		t.Fatalf("%s: check not OK: %s", what, describe(rep))
	}
	if rep.Points != len(f.points) {
		t.Errorf("%s: check saw %d points, want %d", what, rep.Points, len(f.points))
	}
}

func describe(rep *chunkstore.CheckReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ok=%v points=%d packs=%d blobs=%d data=%d/%d incomplete=%v resumed=%v damaged packs=%v",
		rep.OK(), rep.Points, rep.Packs, rep.Blobs, rep.DataPacks, rep.DataPacksTotal, rep.Incomplete, rep.Resumed, shorts(rep.DamagedPacks))
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "\n  problem %s %.8s (pack %.8s): %s", p.Kind, p.Object, p.Pack, p.Detail)
	}
	for _, d := range rep.DamagedPoints {
		fmt.Fprintf(&b, "\n  damaged point %.8s (%s) packs %v: %q", d.ID, d.Source, shorts(d.Packs), d.Problems)
	}
	return b.String()
}

func shorts(ids []string) []string {
	out := make([]string, len(ids))
	for i, s := range ids {
		out[i] = s[:min(8, len(s))]
	}
	return out
}

func hasProblem(rep *chunkstore.CheckReport, kind, object string) *chunkstore.Problem {
	for i, p := range rep.Problems {
		if p.Kind == kind && p.Object == object {
			return &rep.Problems[i]
		}
	}
	return nil
}

func sortedNames(m map[string]bool) []string {
	var out []string
	for n, ok := range m {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// requireDamaged checks that the report names exactly the points want, by
// ID and with their source, and, when packs is not nil, blames exactly
// those packs for each.
func (f *fixture) requireDamaged(t *testing.T, rep *chunkstore.CheckReport, want map[string]bool, packs []string) {
	t.Helper()
	got := map[string]bool{}
	for _, d := range rep.DamagedPoints {
		p := f.byID(d.ID)
		if p == nil {
			t.Errorf("damaged point %s is none of the fixture's", d.ID)
			continue
		}
		got[p.name] = true
		if d.Source != p.source {
			t.Errorf("damaged point %s: source %q, want %q", p.name, d.Source, p.source)
		}
		if !d.Time.Equal(p.time) {
			t.Errorf("damaged point %s: time %v, want %v", p.name, d.Time, p.time)
		}
		if len(d.Problems) == 0 {
			t.Errorf("damaged point %s: no problems named", p.name)
		}
		if packs != nil && !slices.Equal(d.Packs, packs) {
			t.Errorf("damaged point %s: packs at fault %v, want %v", p.name, shorts(d.Packs), shorts(packs))
		}
	}
	if !sameNames(got, want) {
		t.Fatalf("damaged points %v, want %v\n%s", sortedNames(got), sortedNames(want), describe(rep))
	}
}

func sameNames(a, b map[string]bool) bool {
	return slices.Equal(sortedNames(a), sortedNames(b))
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var b [1]byte
	if _, err := fh.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := fh.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCleanStore(t *testing.T) {
	f := buildFixture(t, 4<<20)
	packs := len(f.packFiles(t))
	if packs < 8 {
		t.Fatalf("fixture has %d packs, want many", packs)
	}
	rep := f.check(t, chunkstore.CheckOptions{})
	f.requireOK(t, rep, "structural")
	if rep.Packs != packs || rep.Blobs == 0 || rep.DataPacks != 0 || rep.DataPacksTotal != 0 {
		t.Errorf("structural check: %s; want %d packs, some blobs, no data read", describe(rep), packs)
	}
	var stages []string
	rep = f.check(t, chunkstore.CheckOptions{ReadData: 100, Progress: func(stage string, _, _ int64) {
		if !slices.Contains(stages, stage) {
			stages = append(stages, stage)
		}
	}})
	f.requireOK(t, rep, "data")
	if rep.DataPacks != packs || rep.DataPacksTotal != packs || rep.Resumed {
		t.Errorf("data check: %s; want all %d packs read", describe(rep), packs)
	}
	if !slices.Contains(stages, "data") {
		t.Errorf("progress stages %v lack \"data\"", stages)
	}
	for _, bad := range []float64{-1, 100.5} {
		if _, err := f.s.Check(context.Background(), chunkstore.CheckOptions{ReadData: bad}); err == nil {
			t.Errorf("check with ReadData %g: no error", bad)
		}
	}
}

// (a) A flipped byte inside a chunk: the structure is intact, reading the
// data finds it, names the pack and exactly the points that use the chunk.
func TestCorruptFlippedByteInPack(t *testing.T) {
	f := buildFixture(t, 4<<20)
	c := f.sharedChunk(t)
	pk, e, err := chunkstore.BlobLocation(f.s, c)
	if err != nil {
		t.Fatal(err)
	}
	want := f.using(map[blob.ID]bool{c: true})
	if !sameNames(want, map[string]bool{"a1": true, "a3": true}) {
		t.Fatalf("fixture: chunk %s is used by %v, want a1 and a3", c.Short(), sortedNames(want))
	}
	// a2 shares the pack but not the chunk: the point is not damaged.
	t.Logf("pack %s is also used (other chunks) by %v", pk.Short(), sortedNames(f.using(f.packBlobs(t, pk))))
	f.close(t)
	flipByte(t, f.packPath(pk), int64(e.Offset+e.Length/2))
	f.open(t, chunkstore.Options{})

	if rep := f.check(t, chunkstore.CheckOptions{}); !rep.OK() {
		// The structural check reads trailers and maps, not chunks.
		t.Errorf("structural check found damage inside a chunk it does not read: %s", describe(rep))
	}
	rep := f.check(t, chunkstore.CheckOptions{ReadData: 100})
	if rep.OK() {
		t.Fatalf("data check is OK on a flipped byte: %s", describe(rep))
	}
	if p := hasProblem(rep, "chunk", c.String()); p == nil || p.Pack != pk.String() {
		t.Errorf("no chunk problem for %s in pack %s: %s", c.Short(), pk.Short(), describe(rep))
	}
	if hasProblem(rep, "pack", pk.String()) == nil {
		t.Errorf("pack %s whose bytes no longer match its name is not a problem: %s", pk.Short(), describe(rep))
	}
	if !slices.Equal(rep.DamagedPacks, []string{pk.String()}) {
		t.Errorf("damaged packs %v, want [%s]", shorts(rep.DamagedPacks), pk.Short())
	}
	f.requireDamaged(t, rep, want, []string{pk.String()})
	if failed := f.restoreAll(t); !sameNames(failed, want) {
		t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
	}
}

// (b) A truncated pack: the structural check finds it, and every point that
// has a blob in it is damaged.
func TestCorruptTruncatedPack(t *testing.T) {
	f := buildFixture(t, 4<<20)
	pk, _, err := chunkstore.BlobLocation(f.s, f.sharedChunk(t))
	if err != nil {
		t.Fatal(err)
	}
	want := f.using(f.packBlobs(t, pk))
	if !want["a1"] || want["b1"] || want["b2"] {
		t.Fatalf("fixture: pack %s used by %v", pk.Short(), sortedNames(want))
	}
	f.close(t)
	fi, err := os.Stat(f.packPath(pk))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.packPath(pk), fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.open(t, chunkstore.Options{})
	rep := f.check(t, chunkstore.CheckOptions{})
	if rep.OK() || hasProblem(rep, "pack", pk.String()) == nil {
		t.Fatalf("structural check missed truncated pack %s: %s", pk.Short(), describe(rep))
	}
	if !slices.Equal(rep.DamagedPacks, []string{pk.String()}) {
		t.Errorf("damaged packs %v, want [%s]", shorts(rep.DamagedPacks), pk.Short())
	}
	f.requireDamaged(t, rep, want, []string{pk.String()})
	// Some blobs before the cut may still read; none of the others may fail.
	if failed := f.restoreAll(t); len(failed) == 0 || !subset(failed, want) {
		t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
	}
}

func subset(a, b map[string]bool) bool {
	for n := range a {
		if !b[n] {
			return false
		}
	}
	return true
}

// (c) A deleted pack: the structural check finds it and names it while the
// index still lists it; after a reopen, which forgets the pack, the points
// that lack its blobs are still damaged.
func TestCorruptDeletedPack(t *testing.T) {
	f := buildFixture(t, 4<<20)
	pk, _, err := chunkstore.BlobLocation(f.s, f.sharedChunk(t))
	if err != nil {
		t.Fatal(err)
	}
	want := f.using(f.packBlobs(t, pk))
	if !want["a1"] || want["b1"] || want["b2"] {
		t.Fatalf("fixture: pack %s used by %v", pk.Short(), sortedNames(want))
	}
	if err := os.Remove(f.packPath(pk)); err != nil {
		t.Fatal(err)
	}
	rep := f.check(t, chunkstore.CheckOptions{})
	p := hasProblem(rep, "pack", pk.String())
	if rep.OK() || p == nil || !strings.Contains(p.Detail, "missing") {
		t.Fatalf("structural check missed deleted pack %s: %s", pk.Short(), describe(rep))
	}
	if !slices.Equal(rep.DamagedPacks, []string{pk.String()}) {
		t.Errorf("damaged packs %v, want [%s]", shorts(rep.DamagedPacks), pk.Short())
	}
	f.requireDamaged(t, rep, want, []string{pk.String()})
	if failed := f.restoreAll(t); !sameNames(failed, want) {
		t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
	}

	t.Run("after reopen", func(t *testing.T) {
		// Open forgets the pack that is gone: the points' blobs are now
		// simply not indexed, which check must still call damage.
		f.reopen(t)
		rep := f.check(t, chunkstore.CheckOptions{})
		f.requireDamaged(t, rep, want, nil)
		if rep.OK() {
			t.Errorf("check is OK() with %d damaged points: the missing blobs are no Problem: %s", len(rep.DamagedPoints), describe(rep))
		}
		if failed := f.restoreAll(t); !sameNames(failed, want) {
			t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
		}
	})
}

// (d) A corrupted manifest: the structural check names the point, with the
// source and time the catalogue remembers; every other point restores.
func TestCorruptManifest(t *testing.T) {
	f := buildFixture(t, 4<<20)
	b1 := f.point("b1")
	f.close(t)
	path := filepath.Join(f.dir, "points", b1.id.String())
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, fi.Size()/2)
	f.open(t, chunkstore.Options{})
	rep := f.check(t, chunkstore.CheckOptions{})
	if rep.OK() || hasProblem(rep, "manifest", b1.id.String()) == nil {
		t.Fatalf("structural check missed the damaged manifest of %s: %s", b1.id.Short(), describe(rep))
	}
	if rep.Points != len(f.points) {
		t.Errorf("check counted %d points, want %d", rep.Points, len(f.points))
	}
	f.requireDamaged(t, rep, map[string]bool{"b1": true}, nil)
	if len(rep.DamagedPacks) != 0 {
		t.Errorf("a damaged manifest blamed packs %v", shorts(rep.DamagedPacks))
	}
	if failed := f.restoreAll(t); !sameNames(failed, map[string]bool{"b1": true}) {
		t.Errorf("points that fail to restore: %v, want only b1", sortedNames(failed))
	}
}

// (e) A stale index entry, naming a real place in the right pack that holds
// another blob: the structural check names the blob as kind "index" and the
// points that use it; a rebuilt index is right again.
func TestCorruptStaleIndexEntry(t *testing.T) {
	f := buildFixture(t, 4<<20)
	ctx := context.Background()
	c := f.sharedChunk(t)
	pk, _, err := chunkstore.BlobLocation(f.s, c)
	if err != nil {
		t.Fatal(err)
	}
	var other blob.ID
	for id := range f.packBlobs(t, pk) {
		if id != c {
			other = id
			break
		}
	}
	if other.IsZero() {
		t.Fatalf("pack %s holds only chunk %s", pk.Short(), c.Short())
	}
	if err := chunkstore.MisindexBlob(ctx, f.s, c, other); err != nil {
		t.Fatal(err)
	}
	want := f.using(map[blob.ID]bool{c: true})
	rep := f.check(t, chunkstore.CheckOptions{})
	if p := hasProblem(rep, "index", c.String()); rep.OK() || p == nil {
		t.Fatalf("structural check missed the stale entry of %s: %s", c.Short(), describe(rep))
	}
	if len(rep.Problems) != 1 {
		t.Errorf("one stale entry, %d problems: %s", len(rep.Problems), describe(rep))
	}
	f.requireDamaged(t, rep, want, []string{pk.String()})
	if failed := f.restoreAll(t); !sameNames(failed, want) {
		t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
	}

	f.close(t)
	f.open(t, chunkstore.Options{RebuildIndex: true})
	f.requireOK(t, f.check(t, chunkstore.CheckOptions{}), "after rebuilding the index")
	f.requireOK(t, f.check(t, chunkstore.CheckOptions{ReadData: 100}), "data, after rebuilding the index")
	if failed := f.restoreAll(t); len(failed) != 0 {
		t.Errorf("after rebuilding the index, %v fail to restore", sortedNames(failed))
	}
}

// Losing the index loses nothing: it is rebuilt from packs and manifests.
func TestIndexLossRebuilds(t *testing.T) {
	f := buildFixture(t, 4<<20)
	ctx := context.Background()
	for _, how := range []string{"index directory deleted", "RebuildIndex"} {
		f.close(t)
		if how == "RebuildIndex" {
			f.open(t, chunkstore.Options{RebuildIndex: true})
		} else {
			if err := os.RemoveAll(filepath.Join(f.dir, "index")); err != nil {
				t.Fatal(err)
			}
			f.open(t, chunkstore.Options{})
		}
		points, err := f.s.Points(ctx)
		if err != nil || len(points) != len(f.points) {
			t.Fatalf("%s: %d points, %v; want %d", how, len(points), err, len(f.points))
		}
		for _, p := range points {
			if fp := f.byID(p.ID.String()); fp == nil || fp.source != p.Source.Name || !fp.time.Equal(p.Time) {
				t.Errorf("%s: catalogue has point %s of %q at %v, unlike the fixture's", how, p.ID.Short(), p.Source.Name, p.Time)
			}
		}
		f.requireOK(t, f.check(t, chunkstore.CheckOptions{ReadData: 100}), how)
		if failed := f.restoreAll(t); len(failed) != 0 {
			t.Errorf("%s: %v fail to restore", how, sortedNames(failed))
		}
	}
}

// A pack saved but never indexed (a writer died between the two) is indexed
// on open, and the points that need it restore.
func TestUnindexedPackIndexedOnOpen(t *testing.T) {
	f := buildFixture(t, 4<<20)
	c := f.sharedChunk(t)
	pk, _, err := chunkstore.BlobLocation(f.s, c)
	if err != nil {
		t.Fatal(err)
	}
	want := f.using(f.packBlobs(t, pk))
	// Take the pack away and open: the index forgets it. Then put it back
	// while the store is closed: the file exists, the index lacks it.
	f.close(t)
	aside := filepath.Join(t.TempDir(), pk.String())
	if err := os.Rename(f.packPath(pk), aside); err != nil {
		t.Fatal(err)
	}
	f.open(t, chunkstore.Options{})
	if _, _, err := chunkstore.BlobLocation(f.s, c); err == nil {
		t.Fatalf("chunk %s still indexed after its pack was gone at open", c.Short())
	}
	if failed := f.restoreAll(t); !sameNames(failed, want) {
		t.Errorf("without the pack, points that fail to restore: %v, want %v", sortedNames(failed), sortedNames(want))
	}
	f.close(t)
	if err := os.Rename(aside, f.packPath(pk)); err != nil {
		t.Fatal(err)
	}
	f.open(t, chunkstore.Options{})
	if got, _, err := chunkstore.BlobLocation(f.s, c); err != nil || got != pk {
		t.Fatalf("after open, chunk %s is in pack %s (%v), want %s", c.Short(), got.Short(), err, pk.Short())
	}
	f.requireOK(t, f.check(t, chunkstore.CheckOptions{ReadData: 100}), "after indexing the pack found on open")
	if failed := f.restoreAll(t); len(failed) != 0 {
		t.Errorf("%v fail to restore", sortedNames(failed))
	}
}

func TestPinPruneDelete(t *testing.T) {
	f := buildFixture(t, 4<<20)
	ctx := context.Background()
	a1 := f.point("a1")
	if err := f.s.Pin(ctx, a1.id); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Pin(ctx, blob.ID{1}); err == nil {
		t.Error("pinned a point that does not exist")
	}
	if was, err := f.s.Unpin(ctx, f.point("a2").id); err != nil || was {
		t.Errorf("unpin of a point never pinned: %v, %v; want false", was, err)
	}
	decisions, err := f.s.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string][]string{}
	for _, d := range decisions {
		p := f.byID(d.Point.ID.String())
		if p == nil {
			t.Fatalf("prune decided on unknown point %s", d.Point.ID.Short())
		}
		if d.Keep {
			kept[p.name] = d.Reasons
		}
	}
	if len(decisions) != len(f.points) || len(kept) != 3 || !slices.Equal(kept["a1"], []string{"pinned"}) ||
		!slices.Contains(kept["a3"], "last") || !slices.Contains(kept["b2"], "last") {
		t.Fatalf("prune keep-last 1 with a1 pinned kept %v", kept)
	}
	remaining := func() map[string]bool {
		t.Helper()
		points, err := f.s.Points(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, p := range points {
			out[f.byID(p.ID.String()).name] = true
		}
		return out
	}
	if got := remaining(); !sameNames(got, map[string]bool{"a1": true, "a3": true, "b2": true}) {
		t.Fatalf("after prune: %v", sortedNames(got))
	}
	err = f.s.DeletePoint(ctx, a1.id)
	if !errors.Is(err, chunkstore.ErrPinned) {
		t.Fatalf("delete of a pinned point: %v, want ErrPinned", err)
	}
	if !remaining()["a1"] {
		t.Fatal("the pinned point is gone after a refused delete")
	}

	// Pins are files in the backend: a rebuilt index keeps them.
	f.close(t)
	f.open(t, chunkstore.Options{RebuildIndex: true})
	pins, err := f.s.Pinned(ctx)
	if err != nil || len(pins) != 1 || !pins[a1.id] {
		t.Fatalf("pins after rebuilding the index: %v, %v", pins, err)
	}
	if decisions, err = f.s.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	for _, d := range decisions {
		if d.Point.ID == a1.id && (!d.Keep || !slices.Equal(d.Reasons, []string{"pinned"})) {
			t.Errorf("after rebuilding the index, prune decides %v %v on the pinned point", d.Keep, d.Reasons)
		}
	}
	if err := f.s.DeletePoint(ctx, a1.id); !errors.Is(err, chunkstore.ErrPinned) {
		t.Fatalf("delete of a pinned point after an index rebuild: %v, want ErrPinned", err)
	}

	if was, err := f.s.Unpin(ctx, a1.id); err != nil || !was {
		t.Fatalf("unpin of a pinned point: %v, %v; want true", was, err)
	}
	if was, err := f.s.Unpin(ctx, a1.id); err != nil || was {
		t.Errorf("second unpin: %v, %v; want false", was, err)
	}
	if _, err := f.s.Prune(ctx, retention.Policy{Last: 1}, chunkstore.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := remaining(); !sameNames(got, map[string]bool{"a3": true, "b2": true}) {
		t.Fatalf("after unpin and prune: %v", sortedNames(got))
	}
	// What is left is whole, also once its garbage is collected.
	if _, err := f.s.GC(ctx, chunkstore.GCOptions{RepackBelow: 50}); err != nil {
		t.Fatal(err)
	}
	f.points = slices.DeleteFunc(f.points, func(p *fxPoint) bool { return p.name != "a3" && p.name != "b2" })
	f.requireOK(t, f.check(t, chunkstore.CheckOptions{ReadData: 100}), "after prune and GC")
	if failed := f.restoreAll(t); len(failed) != 0 {
		t.Errorf("after prune and GC, %v fail to restore", sortedNames(failed))
	}
}

// countingBackend counts the packs read whole, which only a data check does.
type countingBackend struct {
	backend.Backend
	mu    sync.Mutex
	whole map[string]int
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, off int64, n int) ([]byte, error) {
	b, err := c.Backend.Load(ctx, h, off, n)
	if err == nil && h.Kind == backend.Packs && off == 0 && n < 0 {
		c.mu.Lock()
		c.whole[h.Name]++
		c.mu.Unlock()
	}
	return b, err
}

// take returns the packs read whole since the last call.
func (c *countingBackend) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.whole
	c.whole = map[string]int{}
	return w
}

// openCounting reopens the fixture's store on a counting backend.
func (f *fixture) openCounting(t *testing.T) *countingBackend {
	t.Helper()
	f.close(t)
	cb := &countingBackend{Backend: backend.NewLocal(f.dir), whole: map[string]int{}}
	s, err := chunkstore.Open(context.Background(), cb, chunkstore.Options{Password: testPassword, IndexDir: filepath.Join(f.dir, "index")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.s = s
	return cb
}

// stoppedCheck runs a data check and cancels it once the first progress of
// stage "data" is reported.
func (f *fixture) stoppedCheck(t *testing.T, percent float64, resume bool) (*chunkstore.CheckReport, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	return f.s.Check(ctx, chunkstore.CheckOptions{ReadData: percent, Resume: resume, Progress: func(stage string, done, _ int64) {
		if stage == "data" && done > 0 {
			cancel()
		}
	}})
}

func readOnce(t *testing.T, what string, reads map[string]int) {
	t.Helper()
	for name, n := range reads {
		if n != 1 {
			t.Errorf("%s: pack %.8s read %d times", what, name, n)
		}
	}
}

func TestCheckResume(t *testing.T) {
	f := buildFixture(t, 10<<20)
	cb := f.openCounting(t)
	all := f.packFiles(t)
	n := len(all)
	if n < 20 {
		t.Fatalf("fixture has %d packs, want more than two batches", n)
	}

	rep1, err := f.stoppedCheck(t, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	reads1 := cb.take()
	readOnce(t, "stopped", reads1)
	if !rep1.Incomplete || rep1.DataPacks == 0 || rep1.DataPacks >= rep1.DataPacksTotal || rep1.DataPacksTotal != n {
		t.Fatalf("stopped check: %s; want incomplete, some of %d packs read", describe(rep1), n)
	}
	if len(reads1) != rep1.DataPacks {
		t.Errorf("stopped check says %d packs read, the backend saw %d", rep1.DataPacks, len(reads1))
	}
	if !rep1.OK() {
		t.Errorf("stopped check of a sound store: %s", describe(rep1))
	}

	rep2 := f.check(t, chunkstore.CheckOptions{ReadData: 100, Resume: true})
	reads2 := cb.take()
	readOnce(t, "resumed", reads2)
	f.requireOK(t, rep2, "resumed")
	if !rep2.Resumed || rep2.DataPacks != n || rep2.DataPacksTotal != n {
		t.Errorf("resumed check: %s; want resumed, all %d packs", describe(rep2), n)
	}
	if len(reads2) != n-len(reads1) {
		t.Errorf("resumed check read %d packs, want the %d the stopped one had not", len(reads2), n-len(reads1))
	}
	for name := range reads2 {
		if reads1[name] > 0 {
			t.Errorf("resumed check read pack %.8s again", name)
		}
	}
	if len(reads1)+len(reads2) != n {
		t.Errorf("the two runs read %d+%d packs of %d", len(reads1), len(reads2), n)
	}

	// A finished check leaves nothing to resume: Resume starts afresh.
	rep3 := f.check(t, chunkstore.CheckOptions{ReadData: 100, Resume: true})
	if reads := cb.take(); rep3.Resumed || len(reads) != n || rep3.DataPacks != n {
		t.Errorf("resume after a finished check: %s, %d packs read; want a fresh check of %d", describe(rep3), len(reads), n)
	}

	// Without Resume, a stopped check is started again from zero.
	if rep, err := f.stoppedCheck(t, 100, false); err != nil || !rep.Incomplete {
		t.Fatalf("second stopped check: %v, %v", rep, err)
	}
	cb.take()
	rep4 := f.check(t, chunkstore.CheckOptions{ReadData: 100})
	if reads := cb.take(); rep4.Resumed || len(reads) != n || rep4.DataPacks != n {
		t.Errorf("check without Resume after a stopped one: %s, %d packs read; want all %d", describe(rep4), len(reads), n)
	}

	// A stopped check is resumed only at the same share of the data.
	if rep, err := f.stoppedCheck(t, 100, false); err != nil || !rep.Incomplete {
		t.Fatalf("third stopped check: %v, %v", rep, err)
	}
	cb.take()
	rep5 := f.check(t, chunkstore.CheckOptions{ReadData: 50, Resume: true})
	if reads := cb.take(); rep5.Resumed || len(reads) != rep5.DataPacksTotal {
		t.Errorf("resume at another share: %s, %d packs read; want a fresh check", describe(rep5), len(reads))
	}
}

// Damage found before a data check stops is reported by the stopped run and
// again by the run that resumes it, which does not read the pack again.
func TestCheckResumeKeepsEarlierDamage(t *testing.T) {
	f := buildFixture(t, 10<<20)
	ctx := context.Background()
	cb := f.openCounting(t)
	// The first pack in the order a check reads them, with a chunk in it.
	var pk blob.ID
	var c blob.ID
	for _, name := range f.packFiles(t) {
		id, err := blob.ParseID(name)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := chunkstore.PackEntries(ctx, f.s, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Type == blob.Data {
				pk, c = id, e.ID
				break
			}
		}
		if !c.IsZero() {
			break
		}
	}
	_, e, err := chunkstore.BlobLocation(f.s, c)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, f.packPath(pk), int64(e.Offset+e.Length/2))
	want := f.using(map[blob.ID]bool{c: true})
	if len(want) == 0 {
		t.Fatalf("fixture: no point uses chunk %s", c.Short())
	}

	rep1, err := f.stoppedCheck(t, 100, false)
	reads1 := cb.take()
	if reads1[pk.String()] != 1 {
		t.Fatalf("the stopped check did not read pack %s (read %d)", pk.Short(), len(reads1))
	}
	if err != nil {
		t.Errorf("a data check stopped after finding damage returned no report: %v", err)
	} else {
		if !rep1.Incomplete || rep1.OK() || !slices.Contains(rep1.DamagedPacks, pk.String()) {
			t.Errorf("stopped check: %s; want incomplete, naming pack %s", describe(rep1), pk.Short())
		}
		f.requireDamaged(t, rep1, want, []string{pk.String()})
	}

	rep2 := f.check(t, chunkstore.CheckOptions{ReadData: 100, Resume: true})
	reads2 := cb.take()
	if !rep2.Resumed || rep2.Incomplete || rep2.DataPacks != rep2.DataPacksTotal || reads2[pk.String()] != 0 {
		t.Errorf("resumed check: %s, read the damaged pack %d times", describe(rep2), reads2[pk.String()])
	}
	if len(reads1)+len(reads2) != rep2.DataPacksTotal {
		t.Errorf("the two runs read %d+%d packs of %d", len(reads1), len(reads2), rep2.DataPacksTotal)
	}
	if p := hasProblem(rep2, "chunk", c.String()); rep2.OK() || p == nil || p.Pack != pk.String() {
		t.Errorf("resumed check lost the damage found before the stop: %s", describe(rep2))
	}
	if !slices.Equal(rep2.DamagedPacks, []string{pk.String()}) {
		t.Errorf("resumed check: damaged packs %v, want [%s]", shorts(rep2.DamagedPacks), pk.Short())
	}
	f.requireDamaged(t, rep2, want, []string{pk.String()})
	if failed := f.restoreAll(t); !sameNames(failed, want) {
		t.Errorf("points that fail to restore: %v; check named %v", sortedNames(failed), sortedNames(want))
	}
}

// ReadData 30 reads about 30% of the packs, and a resumed check keeps the
// selection of the one it resumes.
func TestCheckPartialSelection(t *testing.T) {
	f := buildFixture(t, 10<<20)
	cb := f.openCounting(t)
	n := len(f.packFiles(t))
	const runs = 6
	total := 0
	for range runs {
		rep := f.check(t, chunkstore.CheckOptions{ReadData: 30})
		reads := cb.take()
		readOnce(t, "30%", reads)
		f.requireOK(t, rep, "30%")
		if len(reads) != rep.DataPacksTotal || rep.DataPacks != rep.DataPacksTotal || rep.DataPacksTotal >= n {
			t.Errorf("30%% check: %s, %d packs read of %d", describe(rep), len(reads), n)
		}
		total += len(reads)
	}
	// Binomial, 6n draws at 0.3: these bounds are over 5 standard deviations out.
	if lo, hi := runs*n/10, runs*n*55/100; total < lo || total > hi {
		t.Errorf("%d checks of 30%% read %d packs of %d, outside %d..%d", runs, total, runs*n, lo, hi)
	}
	t.Logf("%d checks of 30%% of %d packs read %d (%.0f%%)", runs, n, total, 100*float64(total)/float64(runs*n))

	// A selection larger than one batch is needed to stop a check inside
	// it; a new seed is drawn each time until one is.
	var rep1 *chunkstore.CheckReport
	var reads1 map[string]int
	for attempt := 0; attempt < 40; attempt++ {
		rep, err := f.stoppedCheck(t, 30, false)
		if err != nil {
			t.Fatal(err)
		}
		reads1 = cb.take()
		if rep.Incomplete {
			rep1 = rep
			break
		}
	}
	if rep1 == nil {
		t.Fatal("no 30% check was large enough to stop midway")
	}
	rep2 := f.check(t, chunkstore.CheckOptions{ReadData: 30, Resume: true})
	reads2 := cb.take()
	if !rep2.Resumed || rep2.DataPacksTotal != rep1.DataPacksTotal || rep2.DataPacks != rep2.DataPacksTotal {
		t.Fatalf("resumed 30%% check: %s; stopped one: %s", describe(rep2), describe(rep1))
	}
	if len(reads1)+len(reads2) != rep2.DataPacksTotal {
		t.Errorf("the two runs read %d+%d packs, the selection is %d", len(reads1), len(reads2), rep2.DataPacksTotal)
	}
	// Packs are read in the order of their names: the resumed run reads
	// the rest of the same selection, after the ones already read.
	last := ""
	for name := range reads1 {
		last = max(last, name)
	}
	for name := range reads2 {
		if reads1[name] > 0 || name <= last {
			t.Errorf("resumed 30%% check read pack %.8s, not after the stopped one's last %.8s", name, last)
		}
	}
}
