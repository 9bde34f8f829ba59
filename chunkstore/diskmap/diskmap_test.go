package diskmap

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
)

// checkNormalized reports whether areas are what Normalize promises: sorted,
// non-empty, within [0, size), and neither overlapping nor touching.
func checkNormalized(areas []Area, size int64) error {
	for i, a := range areas {
		if a.Length <= 0 || a.Offset < 0 || a.End() < a.Offset || a.End() > size {
			return fmt.Errorf("area %d (%d+%d) is empty or outside a disk of %d bytes", i, a.Offset, a.Length, size)
		}
		if i > 0 && a.Offset <= areas[i-1].End() {
			return fmt.Errorf("area %d (%d+%d) overlaps or touches area %d (%d+%d)", i, a.Offset, a.Length, i-1, areas[i-1].Offset, areas[i-1].Length)
		}
	}
	return nil
}

// containing returns the index of the normalized area holding all of
// [off, end), or -1.
func containing(areas []Area, off, end int64) int {
	i := FindArea(areas, off)
	if i < len(areas) && areas[i].Offset <= off && end <= areas[i].End() {
		return i
	}
	return -1
}

// overlaps reports whether any of the normalized areas overlaps [off, end).
func overlaps(areas []Area, off, end int64) bool {
	i := FindArea(areas, off)
	return i < len(areas) && areas[i].Offset < end
}

// bitmapAreas is the reference for Normalize on small disks: the runs of the
// bytes of [0, size) that some area with a positive length covers.
func bitmapAreas(areas []Area, size int64) []Area {
	// depth[x] counts the areas that start at x less those that end there.
	depth := make([]int, size+1)
	for _, a := range areas {
		if a.Length <= 0 || a.Offset >= size {
			continue
		}
		lo := max(a.Offset, 0)
		// a.End() computed without overflow: a.Offset < size here.
		hi := size
		if uint64(a.Length) < uint64(size)-uint64(a.Offset) {
			hi = a.Offset + a.Length
		}
		if lo < hi {
			depth[lo]++
			depth[hi]--
		}
	}
	var out []Area
	n := 0
	for x := int64(0); x < size; x++ {
		n += depth[x]
		if n == 0 {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End() == x {
			out[k-1].Length++
		} else {
			out = append(out, Area{x, 1})
		}
	}
	return out
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []Area
		size int64
		want []Area
	}{
		{"nil", nil, 100, []Area{}},
		{"empty disk", []Area{{0, 10}}, 0, []Area{}},
		{"one", []Area{{10, 5}}, 100, []Area{{10, 5}}},
		{"drops empty", []Area{{10, 0}, {20, -3}}, 100, []Area{}},
		{"sorts", []Area{{50, 5}, {10, 5}}, 100, []Area{{10, 5}, {50, 5}}},
		{"merges overlapping", []Area{{10, 10}, {15, 10}}, 100, []Area{{10, 15}}},
		{"merges touching", []Area{{10, 10}, {20, 10}}, 100, []Area{{10, 20}}},
		{"keeps apart", []Area{{10, 10}, {21, 10}}, 100, []Area{{10, 10}, {21, 10}}},
		{"swallows contained", []Area{{10, 50}, {20, 5}, {30, 5}}, 100, []Area{{10, 50}}},
		{"clips end", []Area{{90, 50}}, 100, []Area{{90, 10}}},
		{"drops beyond", []Area{{100, 5}, {200, 5}}, 100, []Area{}},
		{"clips negative start", []Area{{-10, 15}}, 100, []Area{{0, 5}}},
		{"negative start ending at zero", []Area{{-10, 10}}, 100, []Area{}},
		{"overflowing end", []Area{{10, math.MaxInt64}}, 100, []Area{{10, 90}}},
		{"clips from far before", []Area{{math.MinInt64 + 10, math.MaxInt64}}, 100, []Area{{0, 9}}},
		{"many merge into one", []Area{{0, 1}, {1, 1}, {2, 1}, {3, 1}}, 4, []Area{{0, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := Normalize(in, tt.size)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Normalize(%v, %d) = %v, want %v", tt.in, tt.size, got, tt.want)
			}
			if err := checkNormalized(got, tt.size); err != nil {
				t.Errorf("Normalize(%v, %d): %v", tt.in, tt.size, err)
			}
		})
	}
}

// TestNormalizeMatchesBitmap compares Normalize with a byte-by-byte reference
// on many random small inputs, including negative and overflowing areas.
func TestNormalizeMatchesBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		size := rng.Int64N(200)
		areas := make([]Area, rng.IntN(8))
		for i := range areas {
			a := Area{rng.Int64N(260) - 30, rng.Int64N(120) - 10}
			switch rng.IntN(20) {
			case 0:
				a.Length = math.MaxInt64 - rng.Int64N(3)
			case 1:
				a.Offset = math.MaxInt64 - rng.Int64N(3)
			}
			areas[i] = a
		}
		want := bitmapAreas(areas, size)
		got := Normalize(slices.Clone(areas), size)
		if len(want) == 0 && len(got) == 0 {
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("iteration %d: Normalize(%v, %d) = %v, want %v", iter, areas, size, got, want)
		}
	}
}

// TestNormalizeAreaBeforeDisk: an area lying wholly before offset 0 covers
// no byte of the disk and must vanish, not become the whole disk.
func TestNormalizeAreaBeforeDisk(t *testing.T) {
	tests := []struct {
		in   Area
		size int64
	}{
		{Area{-10, 5}, 100},
		{Area{-1000, 1}, 4096},
		{Area{math.MinInt64, 1}, 1 << 30},
	}
	for _, tt := range tests {
		got := Normalize([]Area{tt.in}, tt.size)
		if len(got) != 0 {
			t.Errorf("Normalize([%v], %d) = %v, want no area: it covers no byte of the disk", tt.in, tt.size, got)
		}
		// Widen inherits it: nothing changed, yet the whole disk is re-read.
		if got := Widen(nil, []Area{tt.in}, tt.size, 4096); len(got) != 0 {
			t.Errorf("Widen(nil, [%v], %d, 4096) = %v, want no region", tt.in, tt.size, got)
		}
	}
}

func TestValidate(t *testing.T) {
	id := blob.ID{1}
	tests := []struct {
		name    string
		extents []Extent
		size    int64
		ok      bool
	}{
		{"empty", nil, 0, true},
		{"one", []Extent{{0, 10, id}}, 10, true},
		{"touching", []Extent{{0, 10, id}, {10, 10, id}}, 20, true},
		{"gap", []Extent{{5, 10, id}, {30, 10, id}}, 40, true},
		{"zero length", []Extent{{0, 0, id}}, 10, false},
		{"negative length", []Extent{{5, -1, id}}, 10, false},
		{"negative offset", []Extent{{-1, 5, id}}, 10, false},
		{"overlap", []Extent{{0, 10, id}, {9, 10, id}}, 20, false},
		{"unsorted", []Extent{{10, 5, id}, {0, 5, id}}, 20, false},
		{"beyond size", []Extent{{5, 10, id}}, 14, false},
		{"overflow", []Extent{{5, math.MaxInt64, id}}, math.MaxInt64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.extents, tt.size)
			if (err == nil) != tt.ok {
				t.Errorf("Validate(%v, %d) = %v, want ok=%v", tt.extents, tt.size, err, tt.ok)
			}
		})
	}
}

func TestWiden(t *testing.T) {
	id := blob.ID{7}
	// Extents at 100..200, 200..300 and 1000..1500 of a disk of 4000 bytes.
	parent := []Extent{{100, 100, id}, {200, 100, id}, {1000, 500, id}}
	tests := []struct {
		name  string
		areas []Area
		align int64
		want  []Area
	}{
		{"nothing", nil, 64, []Area{}},
		{"inside one extent", []Area{{150, 10}}, 64, []Area{{100, 100}}},
		{"across two extents", []Area{{150, 100}}, 64, []Area{{100, 200}}},
		{"extent end is exclusive", []Area{{199, 1}}, 64, []Area{{100, 100}}},
		{"extent start", []Area{{200, 1}}, 64, []Area{{200, 100}}},
		{"gap aligned both ways", []Area{{500, 10}}, 64, []Area{{448, 64}}},
		{"gap aligned across a block edge", []Area{{500, 20}}, 64, []Area{{448, 128}}},
		{"gap clipped by extents", []Area{{310, 10}, {990, 5}}, 1024, []Area{{300, 700}}},
		{"gap to extent", []Area{{40, 70}}, 64, []Area{{0, 200}}},
		{"gap clipped by disk end", []Area{{3990, 10}}, 1024, []Area{{3072, 928}}},
		{"whole disk", []Area{{0, 4000}}, 64, []Area{{0, 4000}}},
		{"align 1 keeps gaps exact", []Area{{500, 10}}, 1, []Area{{500, 10}}},
		{"merges widened", []Area{{110, 1}, {210, 1}}, 64, []Area{{100, 200}}},
		{"already aligned gap", []Area{{512, 64}}, 64, []Area{{512, 64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Widen(parent, tt.areas, 4000, tt.align)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Widen(parent, %v, 4000, %d) = %v, want %v", tt.areas, tt.align, got, tt.want)
			}
			if err := checkWiden(parent, tt.areas, 4000, tt.align, got); err != nil {
				t.Error(err)
			}
		})
	}
}

// checkWiden checks Widen's promises: the regions are normalized, cover every
// changed area, cut through no parent extent, and grow no further than the
// parent extents the areas touch and, in zero gaps, the align blocks they
// touch.
func checkWiden(parent []Extent, areas []Area, size, align int64, regions []Area) error {
	if err := checkNormalized(regions, size); err != nil {
		return fmt.Errorf("regions %v are not normalized: %v", regions, err)
	}
	changed := Normalize(slices.Clone(areas), size)
	for _, a := range changed {
		if containing(regions, a.Offset, a.End()) < 0 {
			return fmt.Errorf("changed area %d+%d is not covered by regions %v", a.Offset, a.Length, regions)
		}
	}
	for _, e := range parent {
		if i := FindArea(regions, e.Offset); i < len(regions) && regions[i].Offset < e.End() {
			if regions[i].Offset > e.Offset || e.End() > regions[i].End() {
				return fmt.Errorf("region %d+%d cuts through parent extent %d+%d", regions[i].Offset, regions[i].Length, e.Offset, e.Length)
			}
			if !overlaps(changed, e.Offset, e.End()) {
				return fmt.Errorf("parent extent %d+%d is in region %d+%d but no changed area touches it", e.Offset, e.Length, regions[i].Offset, regions[i].Length)
			}
		}
	}
	// Bytes of regions in the parent's zero gaps must lie in an align block
	// that some changed area touches.
	blocks := make([]Area, 0, len(changed))
	for _, a := range changed {
		start := a.Offset - a.Offset%align
		end := a.End()
		if r := end % align; r != 0 {
			end += align - r // no overflow: end <= size, and tests keep size far from MaxInt64
		}
		blocks = append(blocks, Area{start, end - start})
	}
	blocks = Normalize(blocks, size)
	for _, r := range regions {
		pos := r.Offset
		for i := Find(parent, r.Offset); ; i++ {
			gapEnd := r.End()
			if i < len(parent) && parent[i].Offset < r.End() {
				gapEnd = parent[i].Offset
			}
			if pos < gapEnd && containing(blocks, pos, gapEnd) < 0 {
				return fmt.Errorf("region %d+%d holds zero gap %d..%d, beyond the align-%d blocks %v of the changed areas", r.Offset, r.Length, pos, gapEnd, align, blocks)
			}
			if i >= len(parent) || parent[i].Offset >= r.End() {
				break
			}
			pos = parent[i].End()
		}
	}
	return nil
}

// checkSplice checks Splice's result against its definition: the parent's
// extents outside regions, plus fresh, in order, forming a valid map.
func checkSplice(parent []Extent, regions []Area, fresh []Extent, size int64, got []Extent) error {
	var want []Extent
	for _, e := range parent {
		if !overlaps(regions, e.Offset, e.End()) {
			want = append(want, e)
		}
	}
	want = append(want, fresh...)
	sort.Slice(want, func(i, j int) bool { return want[i].Offset < want[j].Offset })
	if !slices.Equal(got, want) {
		return fmt.Errorf("Splice = %v, want %v", got, want)
	}
	if err := Validate(got, size); err != nil {
		return fmt.Errorf("Splice result is not a valid map: %v", err)
	}
	return nil
}

// idAt names a chunk after where it is and which map it came from, so that
// parent and fresh extents never compare equal by accident.
func idAt(tag byte, off int64) blob.ID {
	var id blob.ID
	id[0] = tag
	for i := 0; i < 8; i++ {
		id[1+i] = byte(off >> (8 * i))
	}
	return id
}

// randomMap returns a valid map of a disk of size bytes, with gaps.
func randomMap(rng *rand.Rand, size, unit int64) []Extent {
	var out []Extent
	for off := int64(0); off < size; {
		if rng.IntN(3) == 0 {
			off += (1 + rng.Int64N(8)) * unit
			continue
		}
		n := min((1+rng.Int64N(8))*unit, size-off)
		if rng.IntN(4) == 0 {
			n = min(1+rng.Int64N(8*unit), size-off) // unaligned
		}
		out = append(out, Extent{off, n, idAt('p', off)})
		off += n
	}
	return out
}

// randomFresh returns sorted extents that lie within regions, with gaps.
func randomFresh(rng *rand.Rand, regions []Area) []Extent {
	var out []Extent
	for _, r := range regions {
		for off := r.Offset; off < r.End(); {
			step := 1 + rng.Int64N(max(r.Length/3, 1))
			n := min(step, r.End()-off)
			if rng.IntN(4) != 0 {
				out = append(out, Extent{off, n, idAt('f', off)})
			}
			off += n
		}
	}
	return out
}

func randomAreas(rng *rand.Rand, size int64) []Area {
	areas := make([]Area, rng.IntN(8))
	for i := range areas {
		off := rng.Int64N(size + 1)
		var n int64
		switch rng.IntN(4) {
		case 0:
			n = rng.Int64N(4)
		case 1:
			n = rng.Int64N(size + 1)
		default:
			n = rng.Int64N(size/16 + 1)
		}
		areas[i] = Area{off, min(n, size-off)}
	}
	return areas
}

// TestWidenSpliceRandom is the incremental-backup property: widened regions
// cover the changes and cut no parent extent, and splicing fresh extents into
// them yields the parent outside the regions plus the fresh extents.
func TestWidenSpliceRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(20240601, 7))
	aligns := []int64{1, 2, 3, 7, 8, 64, 512, 4096}
	for iter := 0; iter < 20000; iter++ {
		var size, unit int64
		if iter%2 == 0 {
			size, unit = rng.Int64N(5000), 1+rng.Int64N(100)
		} else {
			size = rng.Int64N(1 << 40)
			unit = 1 + size/int64(10+rng.IntN(100))
		}
		align := aligns[rng.IntN(len(aligns))]
		parent := randomMap(rng, size, unit)
		if err := Validate(parent, size); err != nil {
			t.Fatalf("bad test map: %v", err)
		}
		areas := randomAreas(rng, size)
		regions := Widen(parent, slices.Clone(areas), size, align)
		if err := checkWiden(parent, areas, size, align, regions); err != nil {
			t.Fatalf("iteration %d: Widen(%v, %v, %d, %d) = %v: %v", iter, parent, areas, size, align, regions, err)
		}
		fresh := randomFresh(rng, regions)
		got, err := Splice(parent, regions, fresh)
		if err != nil {
			t.Fatalf("iteration %d: Splice(%v, %v, %v): %v", iter, parent, regions, fresh, err)
		}
		if err := checkSplice(parent, regions, fresh, size, got); err != nil {
			t.Fatalf("iteration %d: parent %v, regions %v, fresh %v: %v", iter, parent, regions, fresh, err)
		}
	}
}

func TestSplice(t *testing.T) {
	p := func(off, n int64) Extent { return Extent{off, n, idAt('p', off)} }
	f := func(off, n int64) Extent { return Extent{off, n, idAt('f', off)} }
	parent := []Extent{p(0, 100), p(100, 100), p(300, 100), p(400, 100)}
	tests := []struct {
		name    string
		regions []Area
		fresh   []Extent
		want    []Extent // nil with wantErr
		wantErr bool
	}{
		{"no regions", nil, nil, parent, false},
		{"replace one", []Area{{100, 100}}, []Extent{f(100, 60), f(160, 40)}, []Extent{p(0, 100), f(100, 60), f(160, 40), p(300, 100), p(400, 100)}, false},
		{"region becomes zero", []Area{{100, 100}}, nil, []Extent{p(0, 100), p(300, 100), p(400, 100)}, false},
		{"fill a gap", []Area{{200, 100}}, []Extent{f(220, 30)}, []Extent{p(0, 100), p(100, 100), f(220, 30), p(300, 100), p(400, 100)}, false},
		{"two regions", []Area{{0, 100}, {400, 100}}, []Extent{f(0, 100), f(400, 50)}, []Extent{f(0, 100), p(100, 100), p(300, 100), f(400, 50)}, false},
		{"whole disk", []Area{{0, 500}}, []Extent{f(0, 500)}, []Extent{f(0, 500)}, false},
		{"region past the parent", []Area{{500, 100}}, []Extent{f(500, 100)}, append(slices.Clone(parent), f(500, 100)), false},
		{"fresh before first region", []Area{{100, 100}}, []Extent{f(50, 10)}, nil, true},
		{"fresh between regions", []Area{{0, 100}, {400, 100}}, []Extent{f(250, 10)}, nil, true},
		{"fresh after last region", []Area{{100, 100}}, []Extent{f(450, 10)}, nil, true},
		{"fresh straddles region start", []Area{{100, 100}}, []Extent{f(90, 20)}, nil, true},
		{"fresh straddles region end", []Area{{100, 100}}, []Extent{f(190, 20)}, nil, true},
		{"fresh but no regions", nil, []Extent{f(0, 10)}, nil, true},
		{"parent straddles region start", []Area{{50, 150}}, nil, nil, true},
		{"parent straddles region end", []Area{{100, 50}}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Splice(parent, tt.regions, tt.fresh)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Splice(parent, %v, %v) = %v, want an error", tt.regions, tt.fresh, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Splice(parent, %v, %v): %v", tt.regions, tt.fresh, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Splice(parent, %v, %v) = %v, want %v", tt.regions, tt.fresh, got, tt.want)
			}
		})
	}
}

// byteSource hands out fuzz input as small numbers, then zeros once spent.
type byteSource []byte

func (s *byteSource) u8() int64 {
	if len(*s) == 0 {
		return 0
	}
	v := (*s)[0]
	*s = (*s)[1:]
	return int64(v)
}

func (s *byteSource) u16() int64 { return s.u8()<<8 | s.u8() }

func FuzzWidenSplice(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x10, 0x00, 63, 0, 4, 0, 10, 2, 20, 0, 5, 2, 0x01, 0x00, 0x00, 0x80})
	f.Add([]byte{0xff, 0xff, 0, 30, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 3, 0, 0, 0xff, 0xff, 9, 9, 9, 9})
	f.Add([]byte{0x00, 0x40, 7, 12, 3, 0, 1, 0, 1, 0, 1, 1, 0x00, 0x20, 0x00, 0x01, 1, 2, 3})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 8; i++ {
		seed := make([]byte, 64)
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := byteSource(data)
		scale := int64(1) << (src.u8() % 32)
		size := src.u16() * scale
		align := src.u8() + 1
		if src.u8()%2 == 1 {
			align *= 512
		}
		var parent []Extent
		for n, off := src.u8()%32, int64(0); n > 0 && off < size; n-- {
			off += src.u8() % 4 * src.u8() * scale // often no gap
			length := min((src.u8()+1)*scale, size-off)
			if length <= 0 {
				break
			}
			parent = append(parent, Extent{off, length, idAt('p', off)})
			off += length
		}
		areas := make([]Area, src.u8()%8)
		for i := range areas {
			off := src.u16() * scale % (size + 1)
			areas[i] = Area{off, min(src.u16()*scale, size-off)}
		}
		regions := Widen(parent, slices.Clone(areas), size, align)
		if err := checkWiden(parent, areas, size, align, regions); err != nil {
			t.Fatalf("Widen(%v, %v, %d, %d) = %v: %v", parent, areas, size, align, regions, err)
		}
		var fresh []Extent
		for _, r := range regions {
			for off := r.Offset; off < r.End(); {
				// At most about 64 extents a region keeps each run cheap.
				n := min(max((src.u8()%16+1)*scale, r.Length/64), r.End()-off)
				if src.u8()%4 != 0 {
					fresh = append(fresh, Extent{off, n, idAt('f', off)})
				}
				off += n
			}
		}
		got, err := Splice(parent, regions, fresh)
		if err != nil {
			t.Fatalf("Splice(%v, %v, %v): %v", parent, regions, fresh, err)
		}
		if err := checkSplice(parent, regions, fresh, size, got); err != nil {
			t.Fatal(err)
		}
		// A fresh extent just outside the regions must be refused, not
		// spliced or panicked on.
		if len(regions) > 0 && len(fresh) > 0 {
			r := regions[len(regions)-1]
			if r.End() < size {
				bad := append(slices.Clone(fresh), Extent{r.End(), 1, idAt('x', r.End())})
				if out, err := Splice(parent, regions, bad); err == nil {
					t.Fatalf("Splice accepted fresh extent %d+1 outside regions %v: %v", r.End(), regions, out)
				}
			}
		}
	})
}

// TestCheckWidenCatchesMistakes makes sure the property checker used above
// can fail: each of these region lists breaks one of Widen's promises.
func TestCheckWidenCatchesMistakes(t *testing.T) {
	id := blob.ID{7}
	parent := []Extent{{100, 100, id}, {1000, 500, id}}
	areas := []Area{{150, 10}, {600, 10}}
	tests := []struct {
		name    string
		regions []Area
	}{
		{"misses an area", []Area{{100, 100}}},
		{"cuts an extent", []Area{{150, 50}, {576, 64}}},
		{"not normalized", []Area{{576, 64}, {100, 100}}},
		{"takes an untouched extent", []Area{{100, 100}, {576, 64}, {1000, 500}}},
		{"too wide in a gap", []Area{{100, 100}, {512, 128}}},
		{"beyond the disk", []Area{{100, 100}, {576, 64}, {3000, 2000}}},
	}
	if err := checkWiden(parent, areas, 4000, 64, Widen(parent, areas, 4000, 64)); err != nil {
		t.Fatalf("checkWiden rejects Widen's own answer: %v", err)
	}
	for _, tt := range tests {
		if err := checkWiden(parent, areas, 4000, 64, tt.regions); err == nil {
			t.Errorf("%s: checkWiden accepted regions %v", tt.name, tt.regions)
		}
	}
}
