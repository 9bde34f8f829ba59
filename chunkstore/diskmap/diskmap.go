// Package diskmap holds disk maps: the sorted extents that say which chunk
// holds each byte of a disk. Bytes that no extent covers are zero, so zero
// runs cost nothing. It also holds the arithmetic of incremental backups:
// widening changed areas to the parent's chunk boundaries and splicing
// freshly chunked regions into the parent's map.
package diskmap

import (
	"fmt"
	"sort"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
)

// Extent says that Length bytes at Offset are the plaintext of chunk ID.
type Extent struct {
	Offset int64
	Length int64
	ID     blob.ID
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Area is a byte range of a disk.
type Area struct {
	Offset int64
	Length int64
}

// End is the offset just past the area.
func (a Area) End() int64 { return a.Offset + a.Length }

// Validate checks that extents are sorted, apart, non-empty and within size.
func Validate(extents []Extent, size int64) error {
	var end int64
	for i, e := range extents {
		if e.Length <= 0 || e.Offset < end || e.End() > size || e.End() < e.Offset {
			return fmt.Errorf("extent %d (%d+%d) is empty, out of order or beyond the disk's %d bytes", i, e.Offset, e.Length, size)
		}
		end = e.End()
	}
	return nil
}

// Find returns the index of the first extent that ends after off.
func Find(extents []Extent, off int64) int {
	return sort.Search(len(extents), func(i int) bool { return extents[i].End() > off })
}

// Normalize sorts areas, clips them to size, drops empty ones and merges
// those that overlap or touch.
func Normalize(areas []Area, size int64) []Area {
	out := make([]Area, 0, len(areas))
	for _, a := range areas {
		if a.Length <= 0 || a.Offset >= size {
			continue
		}
		end := size
		if a.Offset < 0 || a.Length <= size-a.Offset { // no overflow
			end = min(a.Offset+a.Length, size)
		}
		start := max(a.Offset, 0)
		if end > start {
			out = append(out, Area{start, end - start})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	merged := out[:0]
	for _, a := range out {
		if n := len(merged); n > 0 && a.Offset <= merged[n-1].End() {
			if a.End() > merged[n-1].End() {
				merged[n-1].Length = a.End() - merged[n-1].Offset
			}
			continue
		}
		merged = append(merged, a)
	}
	return merged
}

// Widen turns changed areas into the regions to re-chunk: each area grows to
// the boundaries of the parent's chunks it touches, so that every parent
// chunk lies wholly inside or wholly outside the regions, and where it lies
// in a zero gap it grows to whole multiples of align. The result is
// normalized.
func Widen(parent []Extent, areas []Area, size, align int64) []Area {
	out := make([]Area, 0, len(areas))
	for _, a := range Normalize(areas, size) {
		start, end := a.Offset, a.End()
		if i := Find(parent, start); i < len(parent) && parent[i].Offset <= start {
			start = parent[i].Offset
		} else {
			start = max(start-start%align, prevEnd(parent, i))
		}
		if j := Find(parent, end-1); j < len(parent) && parent[j].Offset < end {
			end = parent[j].End()
		} else {
			next := size
			if j < len(parent) {
				next = parent[j].Offset
			}
			if r := end % align; r != 0 {
				end += align - r
			}
			end = min(end, next)
		}
		out = append(out, Area{start, end - start})
	}
	return Normalize(out, size)
}

func prevEnd(extents []Extent, i int) int64 {
	if i == 0 {
		return 0
	}
	return extents[i-1].End()
}

// Splice returns parent with every extent inside regions replaced by fresh,
// which must lie inside regions. Regions come from Widen, so no parent
// extent straddles a region's edge; one that does means a bug or a parent
// map that lies, and is an error.
func Splice(parent []Extent, regions []Area, fresh []Extent) ([]Extent, error) {
	out := make([]Extent, 0, len(parent)+len(fresh))
	pi, fi := 0, 0
	for _, r := range regions {
		for ; pi < len(parent) && parent[pi].End() <= r.Offset; pi++ {
			out = append(out, parent[pi])
		}
		for ; pi < len(parent) && parent[pi].Offset < r.End(); pi++ {
			if parent[pi].Offset < r.Offset || parent[pi].End() > r.End() {
				return nil, fmt.Errorf("parent extent %d+%d straddles region %d+%d", parent[pi].Offset, parent[pi].Length, r.Offset, r.Length)
			}
		}
		for ; fi < len(fresh) && fresh[fi].Offset < r.End(); fi++ {
			if fresh[fi].Offset < r.Offset || fresh[fi].End() > r.End() {
				return nil, fmt.Errorf("new extent %d+%d lies outside region %d+%d", fresh[fi].Offset, fresh[fi].Length, r.Offset, r.Length)
			}
			out = append(out, fresh[fi])
		}
	}
	if fi != len(fresh) {
		return nil, fmt.Errorf("new extent %d+%d lies outside every region", fresh[fi].Offset, fresh[fi].Length)
	}
	return append(out, parent[pi:]...), nil
}

// Covered sums the lengths of extents: the disk's bytes that are not zero.
func Covered(extents []Extent) int64 {
	var n int64
	for _, e := range extents {
		n += e.Length
	}
	return n
}

// FindArea returns the index of the first of sorted areas that ends after off.
func FindArea(areas []Area, off int64) int {
	return sort.Search(len(areas), func(i int) bool { return areas[i].End() > off })
}
