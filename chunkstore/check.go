package chunkstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// CheckOptions control Check.
type CheckOptions struct {
	// ReadData is the share of packs, in percent, to read whole: each is
	// hashed against its name and every blob in it decrypted, decompressed
	// and hashed again. 0 checks structure only.
	ReadData float64
	// Resume continues the last data check that was stopped before its
	// end, if it read the same share; otherwise a new one starts.
	Resume bool
	// Progress, if set, is told the stage and how far it has come.
	Progress func(stage string, done, total int64)
}

// Problem is one piece of damage.
type Problem struct {
	// Kind is what is damaged: "manifest", "pack", "index", "map" or
	// "chunk".
	Kind   string `json:"kind"`
	Object string `json:"object"`         // its ID
	Pack   string `json:"pack,omitempty"` // for a chunk, the pack it is in
	Detail string `json:"detail"`
}

// DamagedPoint is a point that cannot be restored whole.
type DamagedPoint struct {
	ID       string    `json:"id"`
	Source   string    `json:"source,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Problems []string  `json:"problems"`
	Packs    []string  `json:"packs,omitempty"` // the packs at fault
}

// CheckReport is what Check found.
type CheckReport struct {
	Points int   `json:"points"`
	Packs  int   `json:"packs"`
	Blobs  int64 `json:"blobs"`
	// DataPacks of DataPacksTotal chosen packs have been read whole in this
	// data check, counting the runs it resumed.
	DataPacks      int  `json:"data_packs"`
	DataPacksTotal int  `json:"data_packs_total"`
	Resumed        bool `json:"resumed,omitempty"`
	// Incomplete says the data check stopped before its end; a check with
	// Resume continues it.
	Incomplete    bool           `json:"incomplete,omitempty"`
	Problems      []Problem      `json:"problems"`
	DamagedPoints []DamagedPoint `json:"damaged_points"`
	DamagedPacks  []string       `json:"damaged_packs"`
	Seconds       float64        `json:"seconds"`
}

// OK reports whether no damage was found.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// checkCursor is a data check's progress, kept in the index so that a
// stopped check can go on where it stopped.
type checkCursor struct {
	Percent  float64   `json:"percent"`
	Seed     uint64    `json:"seed"`
	After    string    `json:"after"` // the last pack of the sorted list done
	Read     int       `json:"read"`
	Problems []Problem `json:"problems"`
}

const checkCursorKey = "check-cursor"

// checker holds one check's state.
type checker struct {
	s      *Store
	rep    CheckReport
	points map[blob.ID]*Point
	// bad holds blobs found damaged or missing, by idKey, and why.
	bad map[uint64]badBlob
	// refs holds blobs the points use that the index has not yet shown.
	refs      idSet
	badPages  map[blob.ID]string
	badPacks  map[blob.ID]bool
	noPoint   map[blob.ID]string // manifests that do not load, and why
	catalogue map[blob.ID]*Point
	missing   int // packs the index has and the backend lacks
}

type badBlob struct {
	pack string
	why  string
}

func (c *checker) problem(kind, object, format string, a ...any) {
	c.rep.Problems = append(c.rep.Problems, Problem{Kind: kind, Object: object, Detail: fmt.Sprintf(format, a...)})
}

// Check verifies the store: every manifest decodes, every pack is present
// and well-formed, every index entry matches its pack's trailer, and every
// chunk a point uses is indexed; with o.ReadData, it also reads packs whole.
// It names each damaged point and the packs at fault. A data check stopped
// by ctx returns its report so far, marked Incomplete, and can be resumed.
func (s *Store) Check(ctx context.Context, o CheckOptions) (*CheckReport, error) {
	if o.ReadData < 0 || o.ReadData > 100 {
		return nil, fmt.Errorf("check: %g%% of the data is not between 0 and 100", o.ReadData)
	}
	start := time.Now()
	s.maint.Lock()
	defer s.maint.Unlock()
	progress := func(stage string, done, total int64) {
		if o.Progress != nil {
			o.Progress(stage, done, total)
		}
	}
	var c *checker
	var fps *prints
	var sizes map[blob.ID]int64
	var firstFresh uint32
	for attempt := 0; ; attempt++ {
		if s.readOnly {
			// A writer may have added and deleted packs since this reader
			// opened: its index catches up first.
			s.refreshMu.Lock()
			err := s.reconcilePacks(ctx)
			s.refreshMu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("check: %w", err)
			}
		}
		c = &checker{s: s, bad: map[uint64]badBlob{}, refs: idSet{}, badPages: map[blob.ID]string{},
			badPacks: map[blob.ID]bool{}, noPoint: map[blob.ID]string{}, points: map[blob.ID]*Point{}, catalogue: map[blob.ID]*Point{}}
		if err := c.manifests(ctx, progress); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		// Taken after the manifests were listed: every pack they need was
		// indexed before they were written, so numbers below this one
		// cover them, and packs from later numbers are a running backup's.
		firstFresh = s.idx.NextPackNumber()
		var err error
		if fps, sizes, err = c.packs(ctx, firstFresh, progress); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		// A pack gone from under a reader may be a writer's GC at work
		// rather than damage: one more look tells.
		if !s.readOnly || c.missing == 0 || attempt > 0 {
			break
		}
	}
	if err := c.mark(ctx, progress); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if err := c.index(firstFresh, fps); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if o.ReadData > 0 {
		if err := c.readData(ctx, o, sizes, progress); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	// A data check stopped by ctx still names what it found so far.
	if err := c.attribute(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	rep := &c.rep
	for id := range c.badPacks {
		rep.DamagedPacks = append(rep.DamagedPacks, id.String())
	}
	slices.Sort(rep.DamagedPacks)
	sort.Slice(rep.DamagedPoints, func(i, j int) bool { return rep.DamagedPoints[i].ID < rep.DamagedPoints[j].ID })
	rep.Seconds = time.Since(start).Seconds()
	s.log.Info("check done", "points", rep.Points, "packs", rep.Packs, "problems", len(rep.Problems),
		"damaged_points", len(rep.DamagedPoints), "data_packs", rep.DataPacks, "incomplete", rep.Incomplete)
	return rep, nil
}

// manifests loads every manifest in the backend.
func (c *checker) manifests(ctx context.Context, progress func(string, int64, int64)) error {
	cat, err := c.s.Points(ctx)
	if err != nil {
		return err
	}
	for _, p := range cat {
		c.catalogue[p.ID] = p
	}
	var names []string
	if err := c.s.be.List(ctx, backend.Points, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	}); err != nil {
		return err
	}
	slices.Sort(names)
	for i, name := range names {
		id, err := blob.ParseID(name)
		if err != nil {
			c.problem("manifest", name, "a file among the manifests that is not named like one")
			continue
		}
		p, err := c.s.LoadPoint(ctx, id)
		if err != nil {
			c.problem("manifest", id.String(), "%v", err)
			c.noPoint[id] = err.Error()
			continue
		}
		c.points[id] = p
		progress("manifests", int64(i+1), int64(len(names)))
	}
	c.rep.Points = len(names)
	return nil
}

// entryPrint is what an index entry and a trailer entry must agree on.
func entryPrint(seed maphash.Seed, number uint32, e pack.Entry) uint64 {
	var b [32 + 4 + 4*3 + 2]byte
	copy(b[:], e.ID[:])
	binary.LittleEndian.PutUint32(b[32:], number)
	binary.LittleEndian.PutUint32(b[36:], e.Offset)
	binary.LittleEndian.PutUint32(b[40:], e.Length)
	binary.LittleEndian.PutUint32(b[44:], e.RawLength)
	b[48] = byte(e.Type)
	if e.Compressed {
		b[49] = 1
	}
	return maphash.Bytes(seed, b[:])
}

type prints struct {
	seed maphash.Seed
	all  []uint64 // sorted
}

// packs reads every pack's trailer and returns the prints of their entries
// and the sizes of the indexed packs below firstFresh.
func (c *checker) packs(ctx context.Context, firstFresh uint32, progress func(string, int64, int64)) (*prints, map[blob.ID]int64, error) {
	s := c.s
	indexed := map[blob.ID]index.PackInfo{}
	if err := s.idx.Packs(func(p index.PackInfo) error {
		if p.Number < firstFresh {
			indexed[p.ID] = p
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	type file struct {
		id   blob.ID
		size int64
	}
	var files []file
	present := map[blob.ID]bool{}
	if err := s.be.List(ctx, backend.Packs, func(name string, size int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			c.problem("pack", name, "a file among the packs that is not named like one")
			return nil
		}
		present[id] = true
		if _, ok := indexed[id]; ok {
			files = append(files, file{id, size})
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	for id := range indexed {
		if !present[id] {
			c.problem("pack", id.String(), "missing: the index lists it, the store has no such file")
			c.badPacks[id] = true
			c.missing++
		}
	}
	c.rep.Packs = len(present)
	ps := &prints{seed: maphash.MakeSeed()}
	var mu sync.Mutex
	var done int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4) // trailers are small reads: a little queue depth helps
	for _, f := range files {
		g.Go(func() error {
			info := indexed[f.id]
			var entries []pack.Entry
			var err error
			if f.size != info.Size {
				err = fmt.Errorf("%d bytes, the index says %d (truncated or replaced)", f.size, info.Size)
			} else {
				entries, err = s.readTrailer(gctx, f.id, f.size)
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				c.problem("pack", f.id.String(), "%v", err)
				c.badPacks[f.id] = true
			}
			for _, e := range entries {
				ps.all = append(ps.all, entryPrint(ps.seed, info.Number, e))
			}
			done++
			progress("packs", done, int64(len(files)))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	slices.Sort(ps.all)
	sizes := map[blob.ID]int64{}
	for id, p := range indexed {
		if present[id] && !c.badPacks[id] {
			sizes[id] = p.Size
		}
	}
	return ps, sizes, nil
}

// mark collects the blobs the points use; a map page that cannot be read
// damages the points that have it.
func (c *checker) mark(ctx context.Context, progress func(string, int64, int64)) error {
	pages := idSet{}
	var i int64
	for _, p := range c.points {
		err := c.s.newPages(ctx, p, pages, func(_ *Disk, pr PageRef, pg diskmap.Page, err error) error {
			c.refs.add(pr.ID)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.badPages[pr.ID] = err.Error()
				c.problem("map", pr.ID.String(), "point %s: %v", p.ID.Short(), err)
				return nil
			}
			for _, e := range pg.Extents {
				c.refs.add(e.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		i++
		progress("maps", i, int64(len(c.points)))
	}
	return nil
}

// index checks every index entry against its pack's trailer, and strikes
// the blobs it finds from the ones the points use.
func (c *checker) index(firstFresh uint32, ps *prints) error {
	return c.s.idx.Blobs(func(l index.Location) error {
		c.refs.remove(l.ID)
		if l.PackNumber >= firstFresh {
			return nil
		}
		c.rep.Blobs++
		if c.badPacks[l.Pack] {
			c.bad[idKey(l.ID)] = badBlob{l.Pack.String(), fmt.Sprintf("blob %s is in damaged pack %s", l.ID.Short(), l.Pack.Short())}
			return nil
		}
		fp := entryPrint(ps.seed, l.PackNumber, l.Entry)
		if _, ok := slices.BinarySearch(ps.all, fp); !ok {
			c.problem("index", l.ID.String(), "stale index entry: it says pack %s at offset %d, length %d, which the pack's trailer does not list (run \"bulwark index rebuild\")",
				l.Pack.Short(), l.Offset, l.Length)
			c.bad[idKey(l.ID)] = badBlob{l.Pack.String(), fmt.Sprintf("blob %s: stale index entry", l.ID.Short())}
		}
		return nil
	})
}

// readData reads the chosen share of packs whole, resuming a stopped check
// if asked to.
func (c *checker) readData(ctx context.Context, o CheckOptions, sizes map[blob.ID]int64, progress func(string, int64, int64)) error {
	s := c.s
	cur := checkCursor{Percent: o.ReadData, Seed: rand.Uint64()}
	if o.Resume {
		b, err := s.idx.Meta(checkCursorKey)
		if err != nil {
			return err
		}
		var old checkCursor
		if b != nil && json.Unmarshal(b, &old) == nil && old.Percent == o.ReadData {
			cur = old
			c.rep.Resumed = true
			for _, p := range old.Problems {
				c.note(blob.ID{}, []Problem{p})
			}
		}
	}
	var chosen []blob.ID
	for id := range sizes {
		if o.ReadData >= 100 || float64(selector(cur.Seed, id)%10000) < o.ReadData*100 {
			chosen = append(chosen, id)
		}
	}
	slices.SortFunc(chosen, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	c.rep.DataPacksTotal = len(chosen)
	todo := chosen
	if cur.After != "" {
		after, err := blob.ParseID(cur.After)
		if err == nil {
			i, _ := slices.BinarySearchFunc(chosen, after, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
			for i < len(chosen) && chosen[i] == after {
				i++
			}
			todo = chosen[i:]
		}
	}
	c.rep.DataPacks = cur.Read
	save := func() error {
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		return s.idx.SetMeta(checkCursorKey, b)
	}
	// Packs are read a batch at a time on every core; the cursor moves
	// when a whole batch is done, so a resumed check redoes at most one.
	const batch = 8
	for len(todo) > 0 {
		if ctx.Err() != nil {
			c.rep.Incomplete = true
			return save()
		}
		n := min(batch, len(todo))
		found := make([][]Problem, n)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(2)
		for i, id := range todo[:n] {
			g.Go(func() error {
				found[i] = s.readPack(gctx, id)
				return gctx.Err()
			})
		}
		if err := g.Wait(); err != nil {
			c.rep.Incomplete = true
			return save()
		}
		for i, ps := range found {
			cur.Problems = append(cur.Problems, ps...)
			c.note(todo[i], ps)
		}
		cur.After = todo[n-1].String()
		cur.Read += n
		c.rep.DataPacks = cur.Read
		todo = todo[n:]
		progress("data", int64(cur.Read), int64(len(chosen)))
		if err := save(); err != nil {
			return err
		}
	}
	return s.idx.SetMeta(checkCursorKey, nil)
}

// note records what reading pack found. Problems of a chunk name their
// pack; a resumed check's come with the zero pack and name it themselves.
func (c *checker) note(pack blob.ID, ps []Problem) {
	for _, p := range ps {
		c.rep.Problems = append(c.rep.Problems, p)
		id, err := blob.ParseID(p.Object)
		if err != nil {
			continue
		}
		if p.Kind == "pack" {
			c.badPacks[id] = true
			continue
		}
		where := p.Pack
		if where == "" {
			where = pack.String()
		}
		if pid, err := blob.ParseID(where); err == nil {
			c.badPacks[pid] = true
		}
		c.bad[idKey(id)] = badBlob{where, p.Detail}
	}
}

// selector spreads packs over 0..2^64 by a seeded hash of their ID, so a
// resumed check picks the same packs.
func selector(seed uint64, id blob.ID) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h := sha256.Sum256(append(b[:], id[:]...))
	return binary.LittleEndian.Uint64(h[:8])
}

// readPack reads a pack whole and checks it against its name, then every
// blob in it. The problems name the pack, and each blob that fails.
func (s *Store) readPack(ctx context.Context, id blob.ID) []Problem {
	data, err := s.be.Load(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()}, 0, -1)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return []Problem{{Kind: "pack", Object: id.String(), Detail: err.Error()}}
	}
	var out []Problem
	if sha256.Sum256(data) != id {
		out = append(out, Problem{Kind: "pack", Object: id.String(), Detail: "contents do not match the pack's name (damaged)"})
	}
	entries, err := pack.Parse(s.key, data)
	if err != nil {
		return append(out, Problem{Kind: "pack", Object: id.String(), Detail: err.Error()})
	}
	for _, e := range entries {
		if _, err := s.codec.Open(e, data[e.Offset:e.Offset+e.Length]); err != nil {
			out = append(out, Problem{Kind: "chunk", Object: e.ID.String(), Pack: id.String(), Detail: fmt.Sprintf("pack %s: %v", id.Short(), err)})
		}
	}
	return out
}

// attribute names the points that use damaged or missing blobs, or whose
// manifest or map is damaged.
func (c *checker) attribute(ctx context.Context) error {
	for id, why := range c.noPoint {
		dp := DamagedPoint{ID: id.String(), Problems: []string{"manifest: " + why}}
		if p := c.catalogue[id]; p != nil {
			dp.Source, dp.Time = p.Source.Name, p.Time
		}
		c.rep.DamagedPoints = append(c.rep.DamagedPoints, dp)
	}
	const unindexed = "used by a point but not in the index"
	for k := range c.refs {
		c.bad[k] = badBlob{"", unindexed}
	}
	reported := idSet{}
	if len(c.bad) == 0 && len(c.badPages) == 0 {
		return nil
	}
	// Pages are decoded once each, and what is wrong in them remembered.
	type pageFault struct {
		problems []string
		packs    []string
	}
	faults := map[blob.ID]*pageFault{}
	for _, p := range c.points {
		var problems, packs []string
		for di := range p.Disks {
			d := &p.Disks[di]
			for _, pr := range d.Pages {
				f, ok := faults[pr.ID]
				if !ok {
					f = &pageFault{}
					if why, bad := c.badPages[pr.ID]; bad {
						f.problems = append(f.problems, why)
					} else if pg, err := c.s.loadPage(ctx, d, pr); err != nil {
						f.problems = append(f.problems, err.Error())
					} else {
						for _, e := range pg.Extents {
							if b, bad := c.bad[idKey(e.ID)]; bad {
								// Only here is the full ID of a missing chunk known.
								if b.why == unindexed && !reported.has(e.ID) {
									reported.add(e.ID)
									c.problem("chunk", e.ID.String(), "%s", unindexed)
								}
								f.problems = append(f.problems, fmt.Sprintf("disk %d at offset %d: chunk %s: %s", d.Index, e.Offset, e.ID.Short(), b.why))
								if b.pack != "" {
									f.packs = append(f.packs, b.pack)
								}
							}
						}
					}
					faults[pr.ID] = f
				}
				problems = append(problems, f.problems...)
				packs = append(packs, f.packs...)
			}
		}
		if len(problems) == 0 {
			continue
		}
		slices.Sort(packs)
		const most = 20 // a badly damaged point would otherwise list every chunk
		if len(problems) > most {
			problems = append(problems[:most], fmt.Sprintf("and %d more", len(problems)-most))
		}
		c.rep.DamagedPoints = append(c.rep.DamagedPoints, DamagedPoint{
			ID: p.ID.String(), Source: p.Source.Name, Time: p.Time, Problems: problems, Packs: slices.Compact(packs),
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}
