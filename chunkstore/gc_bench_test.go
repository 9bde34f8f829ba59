package chunkstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// BenchmarkGCMillions runs a GC (RepackBelow 50) over a synthetic store of
// BULWARK_GC_BENCH_CHUNKS data chunks (1 million unless set; the report's
// figure is 10 million) and reports its time and the peak RSS of the
// process that ran it.
//
//	go test -run '^$' -bench GCMillions ./chunkstore/
//	BULWARK_GC_BENCH_CHUNKS=10000000 go test -run '^$' -bench GCMillions -benchtime 1x -timeout 3h ./chunkstore/
//
// The store is real as far as GC can tell: sealed blobs in packs on a local
// backend, indexed in badger, and manifests whose map pages, stored as map
// blobs, name the chunks. Only the sizes are not: a chunk's plaintext is
// 256 random bytes (so that 10 million fit on a disk) while its extent in
// the map is 512 KiB, the average chunk size, so map pages hold as many
// extents as real ones. Restore would fail on such a point (the extents do
// not match the chunks' lengths); GC reads only IDs. With packs of 128
// chunks, as 32 MiB packs of 256 KiB sealed chunks would hold, repack and
// delete handle as many packs and blobs as in a real store, but copy far
// fewer bytes: what is measured is GC's own work, not the data's I/O.
//
// The shape (the gcBench constants below): 4 VMs, one disk each, 30 daily points per
// VM, each an incremental of the one before. Every point rewrites its
// disk's hot map pages whole (1% of pages), a random quarter of the chunks
// of its warm pages (4%), and a run of 10% of the chunks of 1% of the other
// pages, chosen at random: about 2% of the chunks are new and 6% of the map
// pages change per point. A "14 daily, 3 weekly" retention then deletes 13
// points of each VM (days 0, 2-7 and 9-14), before the GC. That leaves
// about 13% of the blobs dead (more below a million chunks, whose small
// disks have more hot pages in proportion): packs of hot chunks wholly
// dead, packs of warm chunks partly (repacked when under half live), packs
// of cold chunks mostly live.
//
// Building the store takes minutes at 10 million chunks; it is kept under
// os.TempDir() in bulwark-gc-bench-v1-<chunks> (delete it to rebuild).
// Every iteration runs on a copy of it (packs hard-linked, since they are
// never modified, the index copied), in a fresh process: the
// test binary runs itself with BULWARK_GC_BENCH_RUN set to the copy, so the
// peak RSS (VmHWM) is that of opening the store and collecting garbage,
// with the soft memory limit bulwark runs with. BULWARK_GC_BENCH_COLD=1
// drops the page cache before each run (root only); BULWARK_GC_BENCH_CHECK=1
// runs a structural check after the GC, outside the measurement;
// BULWARK_GC_BENCH_HEAPPROFILE=prefix writes a heap profile at the end of
// each phase (prefix.mark, ...), which spoils the timings.
//
// The run fails if GC's counts differ from what the builder knows to be
// live and dead, or if sampled live blobs (many in repacked packs) no longer
// load after it.
func BenchmarkGCMillions(b *testing.B) {
	if dir := os.Getenv(gcBenchRunEnv); dir != "" {
		gcBenchChild(b, dir)
		return
	}
	n := 1_000_000
	if v := os.Getenv("BULWARK_GC_BENCH_CHUNKS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10_000 {
			b.Fatalf("BULWARK_GC_BENCH_CHUNKS=%q: want a number of chunks of at least 10000", v)
		}
	}
	src, meta := gcBenchStore(b, n)
	b.Logf("store %s (built in %.0f s): %d chunks, %d map blobs in %d packs, %.1f MiB; %d points kept, %d deleted; %d blobs live, %d dead (%.1f%%); "+
		"packs: %d wholly dead, %d under half live, %d kept of which %d hold dead blobs",
		src, meta.BuildSeconds, meta.Chunks, meta.MapBlobs, meta.Packs, gcBenchMiB(meta.Bytes), meta.PointsKept, meta.PointsDeleted,
		meta.LiveBlobs, meta.DeadBlobs, 100*float64(meta.DeadBlobs)/float64(meta.LiveBlobs+meta.DeadBlobs),
		meta.PacksWhollyDead, meta.PacksRepack, meta.PacksKept, meta.PacksKeptWithDead)

	var sum gcBenchResult
	var phases []string
	phaseSeconds := map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		run, err := os.MkdirTemp("", "bulwark-gc-bench-run-*")
		if err != nil {
			b.Fatal(err)
		}
		if err := gcBenchClone(src, run); err != nil {
			os.RemoveAll(run)
			b.Fatal(err)
		}
		if os.Getenv("BULWARK_GC_BENCH_COLD") == "1" {
			if err := gcBenchDropCaches(); err != nil {
				os.RemoveAll(run)
				b.Fatalf("BULWARK_GC_BENCH_COLD: %v", err)
			}
		}
		b.StartTimer()
		res, err := gcBenchRunChild(run)
		b.StopTimer()
		os.RemoveAll(run)
		if err != nil {
			b.Fatal(err)
		}
		gcBenchVerify(b, meta, res)
		sum.OpenSeconds += res.OpenSeconds
		sum.GCSeconds += res.GCSeconds
		sum.PeakRSSKiB = max(sum.PeakRSSKiB, res.PeakRSSKiB)
		sum.OpenRSSKiB = max(sum.OpenRSSKiB, res.OpenRSSKiB)
		sum.Stats = res.Stats
		for _, p := range res.Phases {
			if _, ok := phaseSeconds[p.Name]; !ok {
				phases = append(phases, p.Name)
			}
			phaseSeconds[p.Name] += p.Seconds
		}
		b.Logf("run %d: open %.2f s (VmHWM %.0f MiB), GC %.2f s (Go's collector %.1f CPU-s), VmHWM %.0f MiB (at the end RssAnon %.0f MiB, RssFile %.0f MiB); "+
			"a full index scan afterwards took %.2f s for %d entries",
			i+1, res.OpenSeconds, float64(res.OpenRSSKiB)/1024, res.GCSeconds, res.GoGCCPUSeconds, float64(res.PeakRSSKiB)/1024,
			float64(res.RssAnonKiB)/1024, float64(res.RssFileKiB)/1024, res.ScanSeconds, res.ScanEntries)
		for _, p := range res.Phases {
			b.Logf("  %-6s %6.2f s  peak RSS sampled %5.0f MiB (anon %5.0f, file %5.0f), live Go heap %5.0f MiB", p.Name, p.Seconds,
				float64(p.PeakRSSKiB)/1024, float64(p.PeakAnonKiB)/1024, float64(p.PeakFileKiB)/1024, gcBenchMiB(int64(p.PeakHeap)))
		}
		st := res.Stats
		b.Logf("  %d points; %d blobs live, %d forgotten; packs: %d deleted, %d repacked into %d; %.1f of %.1f MiB reclaimed",
			st.Points, st.LiveBlobs, st.DeadBlobs, st.PacksDeleted, st.PacksRepacked, st.PacksWritten,
			gcBenchMiB(st.BytesReclaimed), gcBenchMiB(st.BytesBefore))
	}
	n64 := float64(b.N)
	b.ReportMetric(float64(meta.Chunks), "chunks")
	b.ReportMetric(sum.GCSeconds/n64, "gc-s")
	b.ReportMetric(sum.OpenSeconds/n64, "open-s")
	b.ReportMetric(float64(sum.PeakRSSKiB)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(sum.Stats.LiveBlobs), "live-blobs")
	b.ReportMetric(float64(sum.Stats.DeadBlobs), "dead-blobs")
	b.ReportMetric(gcBenchMiB(sum.Stats.BytesReclaimed), "reclaimed-MiB")
	for _, name := range phases {
		b.ReportMetric(phaseSeconds[name]/n64, name+"-s")
	}
}

const (
	gcBenchRunEnv  = "BULWARK_GC_BENCH_RUN"
	gcBenchMarker  = "bulwark-gc-bench-result: "
	gcBenchVersion = 1 // of the store's shape: part of the cache's name
)

var gcBenchPassword = []byte("gc bench")

// The store's shape; see BenchmarkGCMillions.
const (
	gcBenchVMs     = 4
	gcBenchDays    = 30
	gcBenchPerPack = 128
	gcBenchPlain   = 256       // bytes of plaintext per chunk
	gcBenchExtent  = 512 << 10 // bytes of disk per extent in the map
	gcBenchPerPage = diskmap.PageSpan / gcBenchExtent
)

// gcBenchExtents returns the extents per disk that make about n chunks.
func gcBenchExtents(n int) int {
	k := n / gcBenchVMs
	for range 8 {
		// The chunks a point rewrites: hot pages, a quarter of warm ones,
		// a tenth of 1% of the others.
		pages := (k + gcBenchPerPage - 1) / gcBenchPerPage
		var fresh float64
		for p := range pages {
			size := float64(min(k, (p+1)*gcBenchPerPage) - p*gcBenchPerPage)
			switch {
			case gcBenchHot(p):
				fresh += size
			case gcBenchWarm(p):
				fresh += size / 4
			}
		}
		fresh += float64(max(1, pages/100) * gcBenchPerPage / 10)
		k = max(gcBenchPerPage, int(float64(n)/gcBenchVMs/(1+(gcBenchDays-1)*fresh/float64(k))))
	}
	return k
}

// gcBenchKept says which points a "keep 14 daily, 3 weekly" policy keeps.
func gcBenchKept(day int) bool { return day == 1 || day == 8 || day >= 15 }

func gcBenchHot(page int) bool  { return page%100 == 0 }
func gcBenchWarm(page int) bool { return page%25 == 12 }

// gcBenchMeta is what the builder knows of the store it built.
type gcBenchMeta struct {
	Chunks, MapBlobs, Packs, Bytes int64
	ExtentsPerDisk                 int
	PointsKept, PointsDeleted      int
	LiveBlobs, DeadBlobs           int64
	DeadForgotten                  int64 // dead blobs in packs GC deletes or repacks
	PacksWhollyDead                int
	PacksRepack                    int // partly live, under half of their bytes
	PacksKept, PacksKeptWithDead   int
	// Samples for the run to look up after the GC.
	LiveSample     []blob.ID // must load, many from repacked packs
	GoneSample     []blob.ID // dead in deleted or repacked packs: must be gone from the index
	KeptDeadSample []blob.ID // dead in kept packs: still indexed
	BuildSeconds   float64
}

// gcBenchStore returns the cached store of n chunks, building it first if
// need be.
func gcBenchStore(b *testing.B, n int) (string, *gcBenchMeta) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("bulwark-gc-bench-v%d-%d", gcBenchVersion, n))
	if meta, err := gcBenchReadMeta(dir); err == nil {
		return dir, meta
	}
	tmp := dir + ".building"
	if err := os.RemoveAll(tmp); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	b.Logf("building a store of %d chunks in %s (kept for later runs)", n, dir)
	meta, err := gcBenchBuild(tmp, n)
	if err != nil {
		b.Fatalf("build: %v", err)
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		b.Fatal(err)
	}
	// The store is complete once its metadata is there.
	if err := os.WriteFile(filepath.Join(tmp, "gc-bench.json"), mb, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		b.Fatal(err)
	}
	return dir, meta
}

func gcBenchReadMeta(dir string) (*gcBenchMeta, error) {
	mb, err := os.ReadFile(filepath.Join(dir, "gc-bench.json"))
	if err != nil {
		return nil, err
	}
	var m gcBenchMeta
	return &m, json.Unmarshal(mb, &m)
}

// gcBenchPack is one pack the builder wrote: blobs first..first+count-1.
type gcBenchPack struct {
	first, count uint32
	size         int64
}

type gcBenchBuilder struct {
	ctx context.Context
	s   *Store
	w   *pack.Writer
	sc  pack.Scratch

	next      uint32   // number of the next blob
	wFirst    uint32   // number of w's first blob
	sealedLen []uint32 // by blob number
	mapIDs    map[uint32]blob.ID
	packs     []gcBenchPack
	live      []uint64 // bitmap by blob number
	plain     [gcBenchPlain]byte

	saves   chan gcBenchSave
	pending sync.WaitGroup
	errMu   sync.Mutex
	err     error
}

type gcBenchSave struct {
	data    []byte
	id      blob.ID
	entries []pack.Entry
}

// gcBenchDisk is one VM's disk as the builder tracks it.
type gcBenchDisk struct {
	ids     []blob.ID // by extent
	nums    []uint32  // blob numbers, by extent
	pageIDs []blob.ID
	pageNum []uint32
	rng     *rand.Rand
	parent  *blob.ID
}

func gcBenchBuild(dir string, n int) (*gcBenchMeta, error) {
	start := time.Now()
	ctx := context.Background()
	be := backend.NewLocal(dir)
	if err := Init(ctx, be, InitOptions{Password: gcBenchPassword, KDF: crypto.KDFParams{Time: 1, Memory: 8 << 10, Threads: 1}}); err != nil {
		return nil, err
	}
	s, err := Open(ctx, be, Options{Password: gcBenchPassword, Purpose: "gc bench build"})
	if err != nil {
		return nil, err
	}
	defer s.Close()

	k := gcBenchExtents(n)
	bl := &gcBenchBuilder{ctx: ctx, s: s, mapIDs: map[uint32]blob.ID{}, saves: make(chan gcBenchSave, 8)}
	var savers sync.WaitGroup
	for range 4 { // saving is mostly waiting for fsync
		savers.Add(1)
		go func() {
			defer savers.Done()
			for sv := range bl.saves {
				err := s.be.Save(ctx, backend.Handle{Kind: backend.Packs, Name: sv.id.String()}, sv.data)
				if err == nil {
					err = s.idx.AddPack(sv.id, int64(len(sv.data)), sv.entries)
				}
				if err != nil {
					bl.errMu.Lock()
					if bl.err == nil {
						bl.err = err
					}
					bl.errMu.Unlock()
				}
				bl.pending.Done()
			}
		}()
	}
	defer func() {
		close(bl.saves)
		savers.Wait()
	}()

	disks := make([]*gcBenchDisk, gcBenchVMs)
	pages := (k + gcBenchPerPage - 1) / gcBenchPerPage
	for v := range disks {
		disks[v] = &gcBenchDisk{
			ids: make([]blob.ID, k), nums: make([]uint32, k),
			pageIDs: make([]blob.ID, pages), pageNum: make([]uint32, pages),
			rng: rand.New(rand.NewPCG(uint64(v), 42)),
		}
	}
	meta := &gcBenchMeta{ExtentsPerDisk: k}
	var doomed []blob.ID
	t0 := time.Date(2026, 10, 25, 22, 0, 0, 0, time.UTC)
	for day := range gcBenchDays {
		for v, d := range disks {
			p, err := bl.point(d, day, v, t0.Add(time.Duration(day)*24*time.Hour+time.Duration(v)*time.Minute))
			if err != nil {
				return nil, err
			}
			if gcBenchKept(day) {
				meta.PointsKept++
				for _, num := range d.nums {
					bl.setLive(num)
				}
				for _, num := range d.pageNum {
					bl.setLive(num)
				}
			} else {
				doomed = append(doomed, p.ID)
			}
		}
	}
	for _, id := range doomed {
		if err := s.deletePoint(ctx, id); err != nil {
			return nil, err
		}
	}
	meta.PointsDeleted = len(doomed)
	bl.account(meta)
	meta.BuildSeconds = time.Since(start).Seconds()
	return meta, nil
}

// point writes day's point of VM v: its new chunks, its changed map pages,
// then its manifest.
func (bl *gcBenchBuilder) point(d *gcBenchDisk, day, v int, when time.Time) (*Point, error) {
	k := len(d.ids)
	pages := len(d.pageIDs)
	cold := map[int]bool{}
	if day > 0 {
		for want := max(1, pages/100); len(cold) < want; {
			p := d.rng.IntN(pages)
			if !gcBenchHot(p) && !gcBenchWarm(p) {
				cold[p] = true
			}
			if pages < 3 { // too small a disk to have cold pages to spare
				break
			}
		}
	}
	var changed []int
	var st BackupStats
	for p := range pages {
		lo, hi := p*gcBenchPerPage, min(k, (p+1)*gcBenchPerPage)
		runLo, runHi := 0, 0
		if cold[p] {
			run := max(1, (hi-lo)/10)
			runLo = lo + d.rng.IntN(hi-lo-run+1)
			runHi = runLo + run
		}
		touched := false
		for j := lo; j < hi; j++ {
			var fresh bool
			switch {
			case day == 0 || gcBenchHot(p):
				fresh = true
			case gcBenchWarm(p):
				fresh = d.rng.IntN(4) == 0
			default:
				fresh = j >= runLo && j < runHi
			}
			if !fresh {
				continue
			}
			num := bl.next
			binary.LittleEndian.PutUint32(bl.plain[:], num)
			gcBenchFill(num, bl.plain[4:])
			id := bl.s.key.ID(bl.plain[:])
			if err := bl.add(blob.Data, id, bl.plain[:]); err != nil {
				return nil, err
			}
			d.ids[j], d.nums[j] = id, num
			touched = true
			st.NewChunks++
		}
		if touched {
			changed = append(changed, p)
		}
	}
	// Map pages go after the data, as storeMap stores them.
	ext := make([]diskmap.Extent, 0, gcBenchPerPage)
	for _, p := range changed {
		ext = ext[:0]
		for j := p * gcBenchPerPage; j < min(k, (p+1)*gcBenchPerPage); j++ {
			ext = append(ext, diskmap.Extent{Offset: int64(j) * gcBenchExtent, Length: gcBenchExtent, ID: d.ids[j]})
		}
		enc := diskmap.EncodePage(diskmap.Page{Index: int64(p), Extents: ext})
		id := bl.s.key.ID(enc)
		d.pageIDs[p], d.pageNum[p] = id, bl.next
		bl.mapIDs[bl.next] = id
		if err := bl.add(blob.Map, id, enc); err != nil {
			return nil, err
		}
	}
	if err := bl.flush(); err != nil {
		return nil, err
	}
	capacity := int64(k) * gcBenchExtent
	disk := Disk{Index: 0, Label: fmt.Sprintf("vm-%02d.vmdk", v), Capacity: capacity, DataBytes: capacity, Extents: k,
		ChangeID: fmt.Sprintf("52 7a 1c 3e/%d", day)}
	if day == 0 {
		disk.FullRead = "first backup"
	}
	for p, id := range d.pageIDs {
		disk.Pages = append(disk.Pages, PageRef{Index: int64(p), ID: id})
	}
	st.Chunks = int64(k)
	p := &Point{Version: pointVersion, Time: when, Source: Source{Name: fmt.Sprintf("vm-%02d", v)}, Job: "nightly",
		Parent: d.parent, Consistency: "crash-consistent", Disks: []Disk{disk}, Stats: st}
	if err := bl.s.writePoint(bl.ctx, p); err != nil {
		return nil, err
	}
	id := p.ID
	d.parent = &id
	return p, nil
}

// gcBenchFill fills b with bytes that depend on num only.
func gcBenchFill(num uint32, b []byte) {
	x := uint64(num) * 0x9E3779B97F4A7C15
	for i := 0; i < len(b); i += 8 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], z^z>>31)
		copy(b[i:], w[:])
	}
}

// id returns the ID of blob num.
func (bl *gcBenchBuilder) id(num uint32) blob.ID {
	if id, ok := bl.mapIDs[num]; ok {
		return id
	}
	binary.LittleEndian.PutUint32(bl.plain[:], num)
	gcBenchFill(num, bl.plain[4:])
	return bl.s.key.ID(bl.plain[:])
}

// add seals a blob into the open pack, handing the pack to the savers when
// it holds gcBenchPerPack blobs.
func (bl *gcBenchBuilder) add(t blob.Type, id blob.ID, plain []byte) error {
	e, sealed := bl.s.codec.Seal(t, id, plain, &bl.sc)
	if bl.w == nil {
		bl.w = pack.NewWriter(gcBenchPerPack*(gcBenchPlain+crypto.Overhead)+pack.HeaderSize, nil)
		bl.wFirst = bl.next
	}
	bl.w.Add(e, sealed)
	bl.sealedLen = append(bl.sealedLen, uint32(len(sealed)))
	bl.next++
	if bl.w.Count() >= gcBenchPerPack {
		return bl.finish()
	}
	return nil
}

func (bl *gcBenchBuilder) finish() error {
	if bl.w == nil || bl.w.Count() == 0 {
		return nil
	}
	data, id, entries := bl.w.Finish(bl.s.key)
	bl.packs = append(bl.packs, gcBenchPack{first: bl.wFirst, count: uint32(len(entries)), size: int64(len(data))})
	bl.w = nil
	bl.errMu.Lock()
	err := bl.err
	bl.errMu.Unlock()
	if err != nil {
		return err
	}
	bl.pending.Add(1)
	bl.saves <- gcBenchSave{data: data, id: id, entries: entries}
	return nil
}

// flush makes every blob added so far durable and indexed, as a commit does.
func (bl *gcBenchBuilder) flush() error {
	if err := bl.finish(); err != nil {
		return err
	}
	bl.pending.Wait()
	bl.errMu.Lock()
	defer bl.errMu.Unlock()
	return bl.err
}

func (bl *gcBenchBuilder) setLive(num uint32) {
	for int(num/64) >= len(bl.live) {
		bl.live = append(bl.live, 0)
	}
	bl.live[num/64] |= 1 << (num % 64)
}

func (bl *gcBenchBuilder) isLive(num uint32) bool {
	return int(num/64) < len(bl.live) && bl.live[num/64]&(1<<(num%64)) != 0
}

// account counts what GC should find, by GC's own rule for repacking, and
// picks the blobs the run looks up afterwards.
func (bl *gcBenchBuilder) account(m *gcBenchMeta) {
	m.Chunks = int64(bl.next) - int64(len(bl.mapIDs))
	m.MapBlobs = int64(len(bl.mapIDs))
	m.Packs = int64(len(bl.packs))
	const (
		whollyDead = iota
		repack
		kept
	)
	class := make([]uint8, len(bl.packs))
	for i, p := range bl.packs {
		m.Bytes += p.size
		var liveBytes int64
		var dead int64
		for num := p.first; num < p.first+p.count; num++ {
			if bl.isLive(num) {
				liveBytes += int64(bl.sealedLen[num])
				m.LiveBlobs++
			} else {
				dead++
			}
		}
		m.DeadBlobs += dead
		switch {
		case liveBytes == 0:
			class[i] = whollyDead
			m.PacksWhollyDead++
			m.DeadForgotten += dead
		case float64(liveBytes) < 50.0/100*float64(p.size):
			class[i] = repack
			m.PacksRepack++
			m.DeadForgotten += dead
		default:
			class[i] = kept
			m.PacksKept++
			if dead > 0 {
				m.PacksKeptWithDead++
			}
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	const want = 400
	// Sample each kind with the probability that yields about want.
	var counts [4]int64 // live in repacked, live elsewhere, gone, dead kept
	kind := func(i int, num uint32) int {
		switch live := bl.isLive(num); {
		case live && class[i] == repack:
			return 0
		case live:
			return 1
		case class[i] == kept:
			return 3
		}
		return 2
	}
	for i, p := range bl.packs {
		for num := p.first; num < p.first+p.count; num++ {
			counts[kind(i, num)]++
		}
	}
	for i, p := range bl.packs {
		for num := p.first; num < p.first+p.count; num++ {
			c := kind(i, num)
			if rng.Float64()*float64(counts[c]) >= want {
				continue
			}
			switch c {
			case 0, 1:
				m.LiveSample = append(m.LiveSample, bl.id(num))
			case 2:
				m.GoneSample = append(m.GoneSample, bl.id(num))
			case 3:
				m.KeptDeadSample = append(m.KeptDeadSample, bl.id(num))
			}
		}
	}
}

// gcBenchClone copies the store in src to dst, packs as hard links: they
// are never modified, only removed. (Badger's tables are not linked: it
// truncates a table file before it removes it.)
func gcBenchClone(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if strings.HasPrefix(rel, "packs"+string(filepath.Separator)) {
			if os.Link(path, to) == nil {
				return nil
			}
		}
		return gcBenchCopy(path, to)
	})
}

func gcBenchCopy(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func gcBenchDropCaches() error {
	if err := exec.Command("sync").Run(); err != nil {
		return err
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// gcBenchResult is what the process that ran the GC reports.
type gcBenchResult struct {
	OpenSeconds float64        `json:"open_seconds"`
	GCSeconds   float64        `json:"gc_seconds"`
	OpenRSSKiB  int64          `json:"open_rss_kib"` // VmHWM after opening
	PeakRSSKiB  int64          `json:"peak_rss_kib"` // VmHWM after the GC
	RssAnonKiB  int64          `json:"rss_anon_kib"` // after the GC
	RssFileKiB  int64          `json:"rss_file_kib"`
	Stats       GCStats        `json:"stats"`
	Phases      []gcBenchPhase `json:"phases"`
	// CPU time of Go's garbage collector during the GC, of the 2·GOMAXPROCS
	// the wall time allows.
	GoGCCPUSeconds float64 `json:"go_gc_cpu_seconds"`
	ScanSeconds    float64 `json:"scan_seconds"` // one index scan, after the GC
	ScanEntries    int64   `json:"scan_entries"`
}

// gcBenchPhase is a stretch of the GC as its progress reports tell them
// apart: "mark" (manifests and map pages), "scan" (an index scan for the
// packs' live bytes), "repack", "sweep" (the last repacked pack, an index
// scan for the dead blobs, dropping their entries), "delete" (pack files).
type gcBenchPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	// Sampled every 20 ms: RSS, its anonymous and file-backed parts (the
	// latter mostly badger's tables, which it maps), and the live Go heap.
	PeakRSSKiB  int64  `json:"peak_rss_kib"`
	PeakAnonKiB int64  `json:"peak_anon_kib"`
	PeakFileKiB int64  `json:"peak_file_kib"`
	PeakHeap    uint64 `json:"peak_heap"`
}

func gcBenchRunChild(dir string) (*gcBenchResult, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkGCMillions$", "-test.benchtime=1x", "-test.timeout=0")
	cmd.Env = append(os.Environ(), gcBenchRunEnv+"="+dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var res *gcBenchResult
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), gcBenchMarker); ok {
			res = &gcBenchResult{}
			if jerr := json.Unmarshal([]byte(l), res); jerr != nil {
				return nil, jerr
			}
		}
	}
	if err != nil || res == nil {
		return nil, fmt.Errorf("GC process: %v\n%s%s", err, out.Bytes(), errOut.Bytes())
	}
	return res, nil
}

// gcBenchVerify compares what GC did with what the builder knows.
func gcBenchVerify(b *testing.B, m *gcBenchMeta, res *gcBenchResult) {
	b.Helper()
	st := res.Stats
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"points", int64(st.Points), int64(m.PointsKept)},
		{"live blobs", st.LiveBlobs, m.LiveBlobs},
		{"dead blobs forgotten", st.DeadBlobs, m.DeadForgotten},
		{"packs deleted", int64(st.PacksDeleted), int64(m.PacksWhollyDead)},
		{"packs repacked", int64(st.PacksRepacked), int64(m.PacksRepack)},
		{"bytes before", st.BytesBefore, m.Bytes},
		{"packs spared", int64(st.PacksKept), 0},
		{"packs damaged", int64(len(st.PacksDamaged)), 0},
	} {
		if c.got != c.want {
			b.Errorf("GC: %s %d, want %d", c.what, c.got, c.want)
		}
	}
}

// gcBenchChild opens the store in dir, collects its garbage, and prints a
// gcBenchResult on a line of its own.
func gcBenchChild(b *testing.B, dir string) {
	if os.Getenv("GOMEMLIMIT") == "" { // as cmd/bulwark runs
		debug.SetMemoryLimit(index.SoftMemoryLimit)
	}
	ctx := context.Background()
	var res gcBenchResult
	start := time.Now()
	s, err := Open(ctx, backend.NewLocal(dir), Options{Password: gcBenchPassword, Purpose: "gc bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	res.OpenSeconds = time.Since(start).Seconds()
	res.OpenRSSKiB = gcBenchStatus()["VmHWM"]

	// The file is opened once: opening it costs the kernel far more than
	// reading it again does.
	status, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer status.Close()
	tr := &gcBenchTracker{status: status}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			tr.sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	gcCPU := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(gcCPU)
	cpu0 := gcCPU[0].Value.Float64()
	tr.enter("mark")
	start = time.Now()
	st, err := s.GC(ctx, GCOptions{RepackBelow: 50, Progress: func(stage string, done, total int64) {
		tr.enter(stage)
		if done == total {
			switch stage {
			case "mark":
				tr.enter("scan")
			case "repack":
				tr.enter("sweep")
			}
		}
	}})
	res.GCSeconds = time.Since(start).Seconds()
	metrics.Read(gcCPU)
	res.GoGCCPUSeconds = gcCPU[0].Value.Float64() - cpu0
	tr.enter("")
	close(stop)
	<-sampled
	if err != nil {
		b.Fatal(err)
	}
	end := gcBenchStatus()
	res.PeakRSSKiB, res.RssAnonKiB, res.RssFileKiB = end["VmHWM"], end["RssAnon"], end["RssFile"]
	res.Stats, res.Phases = st, tr.phases

	// Outside the measurement: is the store as it should be?
	meta, err := gcBenchReadMeta(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range meta.LiveSample {
		if _, err := s.loadBlob(ctx, id); err != nil {
			b.Errorf("live blob after GC: %v", err)
		}
	}
	for _, id := range meta.GoneSample {
		if _, found, err := s.idx.Lookup(id); err != nil || found {
			b.Errorf("dead blob %s: still indexed (%v)", id.Short(), err)
		}
	}
	for _, id := range meta.KeptDeadSample {
		if _, found, err := s.idx.Lookup(id); err != nil || !found {
			b.Errorf("dead blob %s in a kept pack: not indexed (%v)", id.Short(), err)
		}
	}
	start = time.Now()
	if err := s.idx.Blobs(func(index.Location) error { res.ScanEntries++; return nil }); err != nil {
		b.Fatal(err)
	}
	res.ScanSeconds = time.Since(start).Seconds()
	if os.Getenv("BULWARK_GC_BENCH_CHECK") == "1" {
		rep, err := s.Check(ctx, CheckOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range rep.Problems {
			b.Errorf("check after GC: %s %s: %s", p.Kind, p.Object, p.Detail)
		}
	}
	out, err := json.Marshal(&res)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("\n%s%s\n", gcBenchMarker, out)
}

// gcBenchTracker times the phases of a GC and samples memory in each.
type gcBenchTracker struct {
	mu     sync.Mutex
	phases []gcBenchPhase
	open   bool // the last phase is under way
	since  time.Time
	status *os.File // /proc/self/status
	buf    [8192]byte
}

// The Go heap that the last collection found live: what GC holds, without
// the garbage a collection would free.
var gcBenchHeap = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

// enter starts phase name, unless it is the current one; "" ends the last.
func (t *gcBenchTracker) enter(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open && t.phases[len(t.phases)-1].Name == name {
		return
	}
	now := time.Now()
	if t.open {
		t.phases[len(t.phases)-1].Seconds = now.Sub(t.since).Seconds()
		if prefix := os.Getenv("BULWARK_GC_BENCH_HEAPPROFILE"); prefix != "" {
			// What the phase leaves behind; the collection this forces
			// makes the timings meaningless.
			runtime.GC()
			f, err := os.Create(prefix + "." + t.phases[len(t.phases)-1].Name)
			if err == nil {
				err = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "heap profile:", err)
			}
			now = time.Now()
		}
	}
	t.open = name != ""
	if t.open {
		t.phases = append(t.phases, gcBenchPhase{Name: name})
		t.since = now
	}
}

func (t *gcBenchTracker) sample() {
	n, err := t.status.ReadAt(t.buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	st := gcBenchParseStatus(t.buf[:n])
	metrics.Read(gcBenchHeap)
	heap := gcBenchHeap[0].Value.Uint64()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		p := &t.phases[len(t.phases)-1]
		p.PeakRSSKiB, p.PeakHeap = max(p.PeakRSSKiB, st["VmRSS"]), max(p.PeakHeap, heap)
		p.PeakAnonKiB, p.PeakFileKiB = max(p.PeakAnonKiB, st["RssAnon"]), max(p.PeakFileKiB, st["RssFile"])
	}
}

// gcBenchStatus returns the kB figures of /proc/self/status.
func gcBenchStatus() map[string]int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return map[string]int64{}
	}
	return gcBenchParseStatus(st)
}

func gcBenchParseStatus(st []byte) map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(string(st), "\n") {
		name, v, ok := strings.Cut(l, ":")
		if v, found := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok && found {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[name] = n
			}
		}
	}
	return out
}

func gcBenchMiB(n int64) float64 { return float64(n) / (1 << 20) }
