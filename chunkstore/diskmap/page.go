package diskmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// A disk map is stored as pages, each holding the extents that start in one
// PageSpan of the disk. Pages are blobs, deduplicated like chunks, so a point
// whose changes touch few spans stores few new pages.
const PageSpan = 256 << 20

const pageVersion = 1

// Page is the extents of one span.
type Page struct {
	Index   int64 // the span: bytes [Index*PageSpan, (Index+1)*PageSpan)
	Extents []Extent
}

// Paginate splits extents by span. Empty spans have no page.
func Paginate(extents []Extent) []Page {
	var pages []Page
	for i := 0; i < len(extents); {
		idx := extents[i].Offset / PageSpan
		j := i
		for j < len(extents) && extents[j].Offset/PageSpan == idx {
			j++
		}
		pages = append(pages, Page{Index: idx, Extents: extents[i:j]})
		i = j
	}
	return pages
}

// EncodePage encodes a page: version, span index, count, then per extent the
// gap since the previous one, its length and its chunk ID.
func EncodePage(p Page) []byte {
	b := make([]byte, 0, 16+len(p.Extents)*(32+2*binary.MaxVarintLen64))
	b = append(b, pageVersion)
	b = binary.AppendUvarint(b, uint64(p.Index))
	b = binary.AppendUvarint(b, uint64(len(p.Extents)))
	prev := p.Index * PageSpan
	for _, e := range p.Extents {
		b = binary.AppendUvarint(b, uint64(e.Offset-prev))
		b = binary.AppendUvarint(b, uint64(e.Length))
		b = append(b, e.ID[:]...)
		prev = e.End()
	}
	return b
}

// DecodePage decodes a page of a disk of size bytes, checking that its
// extents start in its span, are sorted and apart, and lie within the disk.
func DecodePage(b []byte, size int64) (Page, error) {
	var p Page
	orig := b
	if len(b) < 3 || b[0] != pageVersion {
		return p, errors.New("map page: unknown version")
	}
	b = b[1:]
	idx, k := binary.Uvarint(b)
	if k <= 0 || idx >= uint64(size/PageSpan+1) || int64(idx)*PageSpan >= size {
		return p, fmt.Errorf("map page: span index beyond a disk of %d bytes", size)
	}
	b = b[k:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)/34) {
		return p, errors.New("map page: bad extent count")
	}
	b = b[k:]
	p.Index = int64(idx)
	p.Extents = make([]Extent, 0, n)
	start := p.Index * PageSpan
	prev := start
	for i := uint64(0); i < n; i++ {
		gap, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return p, fmt.Errorf("map page: extent %d truncated", i)
		}
		length, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 || len(b) < k1+k2+32 {
			return p, fmt.Errorf("map page: extent %d truncated", i)
		}
		if gap > uint64(size-prev) || length == 0 || length > uint64(size-prev)-gap {
			return p, fmt.Errorf("map page: extent %d out of range", i)
		}
		e := Extent{Offset: prev + int64(gap), Length: int64(length)}
		copy(e.ID[:], b[k1+k2:])
		b = b[k1+k2+32:]
		if e.Offset >= start+PageSpan || e.End() > size {
			return p, fmt.Errorf("map page: extent %d (%d+%d) outside span %d of a disk of %d bytes", i, e.Offset, e.Length, p.Index, size)
		}
		p.Extents = append(p.Extents, e)
		prev = e.End()
	}
	if len(b) != 0 {
		return p, fmt.Errorf("map page: %d stray bytes", len(b))
	}
	// One encoding per page: a page is a blob named by the hash of its bytes.
	if !bytes.Equal(EncodePage(p), orig) {
		return p, errors.New("map page: not in canonical form")
	}
	return p, nil
}
