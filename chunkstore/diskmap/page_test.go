package diskmap

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
)

// maxFuzzDisk bounds the disk sizes FuzzDecodePage tries: all of int64,
// since offsets near the top once overflowed (TestDecodePageHugeDisk).
const maxFuzzDisk = math.MaxInt64

// checkPage checks what DecodePage promises of a page it accepts.
func checkPage(t *testing.T, p Page, size int64) {
	t.Helper()
	if p.Index < 0 || p.Index > size/PageSpan {
		t.Fatalf("page index %d beyond a disk of %d bytes", p.Index, size)
	}
	if err := Validate(p.Extents, size); err != nil {
		t.Fatalf("decoded page %d is not a valid map: %v", p.Index, err)
	}
	lo, hi := p.Index*PageSpan, (p.Index+1)*PageSpan
	for i, e := range p.Extents {
		if e.Offset < lo || e.Offset >= hi {
			t.Fatalf("extent %d (%d+%d) starts outside span %d (%d..%d)", i, e.Offset, e.Length, p.Index, lo, hi)
		}
	}
}

func extentID(off int64) blob.ID {
	var id blob.ID
	binary.LittleEndian.PutUint64(id[:], uint64(off))
	id[31] = 0xee
	return id
}

// samplePages returns a map spanning several pages, and its size.
func samplePages() ([]Extent, int64) {
	size := int64(3*PageSpan + 12345)
	var ext []Extent
	for off := int64(0); off < size; off += 40 << 20 {
		n := min(int64(17<<20+off%1000), size-off)
		ext = append(ext, Extent{off, n, extentID(off)})
	}
	return ext, size // the extent at 240 MiB ends in the next span
}

func TestPageRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for iter := 0; iter < 500; iter++ {
		size := rng.Int64N(4*PageSpan) + 1
		var ext []Extent
		for off := rng.Int64N(PageSpan / 2); off < size; {
			n := min(1+rng.Int64N(PageSpan/3), size-off)
			ext = append(ext, Extent{off, n, extentID(off)})
			off += n + rng.Int64N(3)*rng.Int64N(PageSpan/4)
		}
		if err := Validate(ext, size); err != nil {
			t.Fatalf("bad test map: %v", err)
		}
		var back []Extent
		for _, p := range Paginate(ext) {
			b := EncodePage(p)
			got, err := DecodePage(b, size)
			if err != nil {
				t.Fatalf("DecodePage(EncodePage(page %d of %d extents), %d): %v", p.Index, len(p.Extents), size, err)
			}
			if got.Index != p.Index || !slices.Equal(got.Extents, p.Extents) {
				t.Fatalf("page %d: decoded %+v, want %+v", p.Index, got, p)
			}
			checkPage(t, got, size)
			back = append(back, got.Extents...)
		}
		if !slices.Equal(back, ext) {
			t.Fatalf("pages decode to %v, want %v", back, ext)
		}
	}
}

func TestPaginate(t *testing.T) {
	ext := []Extent{
		{0, 10, extentID(0)},
		{PageSpan - 1, 10, extentID(PageSpan - 1)}, // starts in span 0, ends in span 1
		{PageSpan + 9, 5, extentID(PageSpan + 9)},
		{3 * PageSpan, 5, extentID(3 * PageSpan)},
	}
	pages := Paginate(ext)
	want := []Page{{0, ext[:2]}, {1, ext[2:3]}, {3, ext[3:]}}
	if len(pages) != len(want) {
		t.Fatalf("Paginate gave %d pages, want %d: %+v", len(pages), len(want), pages)
	}
	for i := range want {
		if pages[i].Index != want[i].Index || !slices.Equal(pages[i].Extents, want[i].Extents) {
			t.Errorf("page %d = %+v, want %+v", i, pages[i], want[i])
		}
	}
	if Paginate(nil) != nil {
		t.Errorf("Paginate(nil) = %v, want no pages", Paginate(nil))
	}
}

// page builds a page's bytes by hand: version, index, count, then per
// extent gap, length and a 32-byte ID.
func page(version byte, index uint64, count uint64, ext ...[2]uint64) []byte {
	b := []byte{version}
	b = binary.AppendUvarint(b, index)
	b = binary.AppendUvarint(b, count)
	for _, e := range ext {
		b = binary.AppendUvarint(b, e[0])
		b = binary.AppendUvarint(b, e[1])
		b = append(b, make([]byte, 32)...)
	}
	return b
}

func TestDecodePageRejects(t *testing.T) {
	const size = 2*PageSpan + 100
	valid := page(1, 1, 2, [2]uint64{5, 10}, [2]uint64{0, 7})
	if _, err := DecodePage(valid, size); err != nil {
		t.Fatalf("DecodePage of a valid page: %v", err)
	}
	tests := []struct {
		name string
		b    []byte
		size int64
	}{
		{"empty", nil, size},
		{"short", []byte{1, 0}, size},
		{"version 0", page(0, 0, 0), size},
		{"version 2", page(2, 1, 2, [2]uint64{5, 10}, [2]uint64{0, 7}), size},
		{"index beyond disk", page(1, 3, 0), size},
		{"index beyond empty disk", page(1, 1, 0), 0},
		{"index overflows", append([]byte{1}, bytes.Repeat([]byte{0xff}, 10)...), size},
		{"count beyond bytes", page(1, 0, 3, [2]uint64{0, 1}, [2]uint64{0, 1}), size},
		{"huge count", page(1, 0, math.MaxUint64), size},
		{"truncated extent", valid[:len(valid)-1], size},
		{"stray byte", append(slices.Clone(valid), 0), size},
		{"zero length", page(1, 0, 1, [2]uint64{0, 0}), size},
		{"extent beyond disk", page(1, 2, 1, [2]uint64{50, 51}), size},
		{"extent starts in next span", page(1, 0, 1, [2]uint64{PageSpan, 1}), size},
		{"second extent starts in next span", page(1, 0, 2, [2]uint64{PageSpan - 10, 5}, [2]uint64{5, 1}), size},
		{"gap beyond disk", page(1, 0, 1, [2]uint64{math.MaxUint64, 1}), size},
		{"length beyond disk", page(1, 0, 1, [2]uint64{0, math.MaxUint64}), size},
		{"length overflows int64", page(1, 0, 1, [2]uint64{0, 1 << 63}), math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := DecodePage(tt.b, tt.size); err == nil {
				t.Errorf("DecodePage(%x, %d) = %+v, want an error", tt.b, tt.size, p)
			}
		})
	}
}

// TestDecodePageNonCanonical: a page has one encoding (it is a blob named by
// its hash), so varints with redundant continuation bytes are refused.
func TestDecodePageNonCanonical(t *testing.T) {
	const size = 1 << 20
	canonical := page(1, 0, 1, [2]uint64{0, 10})
	// The same page with its gap of 0 written as 0x80 0x00.
	padded := []byte{1, 0, 1, 0x80, 0x00, 10}
	padded = append(padded, make([]byte, 32)...)
	if _, err := DecodePage(canonical, size); err != nil {
		t.Fatalf("canonical page %x: %v", canonical, err)
	}
	if p, err := DecodePage(padded, size); err == nil {
		t.Errorf("DecodePage accepted non-canonical page %x as %+v", padded, p)
	}
}

// TestDecodePageHugeDisk: on a disk of more than 2^62 bytes the sum of the
// previous extent's end and the next gap can overflow int64; such extents
// are refused, not placed at a negative offset.
func TestDecodePageHugeDisk(t *testing.T) {
	tests := []struct {
		size int64
		b    []byte
	}{
		{math.MaxInt64, page(1, 0, 2, [2]uint64{0, math.MaxInt64}, [2]uint64{math.MaxInt64, 1})},
		{3 << 61, page(1, 0, 2, [2]uint64{0, 3 << 61}, [2]uint64{3 << 61, 1})},
	}
	for _, tt := range tests {
		p, err := DecodePage(tt.b, tt.size)
		if err != nil {
			continue
		}
		if err := Validate(p.Extents, tt.size); err != nil {
			t.Errorf("DecodePage(%x, %d) accepted an invalid page %+v: %v", tt.b, tt.size, p, err)
		}
	}
}

func FuzzDecodePage(f *testing.F) {
	ext, size := samplePages()
	for _, p := range Paginate(ext) {
		f.Add(EncodePage(p), size)
	}
	f.Add(EncodePage(Page{0, []Extent{{0, 1, blob.ID{}}}}), int64(1))
	f.Add(EncodePage(Page{}), int64(0))
	f.Add(page(1, 1, 2, [2]uint64{5, 10}, [2]uint64{0, 7}), int64(2*PageSpan+100))
	f.Add(page(1, 0, 1, [2]uint64{PageSpan, 1}), int64(2*PageSpan))
	f.Add(page(2, 0, 0), int64(100))
	f.Add([]byte{1, 0, 1, 0x80, 0x00, 10}, int64(1<<20))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		size &= maxFuzzDisk
		p, err := DecodePage(b, size)
		if err != nil {
			return
		}
		checkPage(t, p, size)
		re := EncodePage(p)
		if !bytes.Equal(re, b) {
			t.Fatalf("page %x re-encodes to %x: accepted pages must be canonical", b, re)
		}
		q, err := DecodePage(re, size)
		if err != nil {
			t.Fatalf("re-encoded page %x does not decode: %v", re, err)
		}
		if q.Index != p.Index || !slices.Equal(q.Extents, p.Extents) {
			t.Fatalf("page %x decodes to %+v, re-encoded to %+v", b, p, q)
		}
		if !bytes.Equal(EncodePage(q), re) {
			t.Fatalf("encoding is not stable: %x then %x", re, EncodePage(q))
		}
	})
}
