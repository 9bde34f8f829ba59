package lvm

import (
	"fmt"
	"io"
	"sort"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// lvReader reads an LV by mapping its offsets through its segments. It is
// immutable once built, so safe for concurrent use.
type lvReader struct {
	size int64
	segs []mappedSeg // sorted, contiguous from 0
}

// mappedSeg is a segment whose areas are striped: stripe bytes to each in
// turn. A linear segment is one area with a stripe as long as itself.
type mappedSeg struct {
	start, length int64
	stripe        int64
	areas         []span
}

// span is where an area's bytes start in a reader: a PV's device or a
// sub-LV.
type span struct {
	r    io.ReaderAt
	base int64
}

func (l *lvReader) ReadAt(p []byte, off int64) (int, error) {
	p, eof := fstree.ClipRead(p, off, l.size)
	if len(p) == 0 {
		return 0, eof
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].start+l.segs[i].length > pos })
		if i == len(l.segs) {
			return n, fmt.Errorf("lvm: offset %d not mapped", pos)
		}
		s := &l.segs[i]
		k, err := s.read(p[n:min(len(p), n+int(s.start+s.length-pos))], pos-s.start)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, eof
}

// read fills p from offset o of the segment, which holds all of p.
func (s *mappedSeg) read(p []byte, o int64) (int, error) {
	n := 0
	stripes := int64(len(s.areas))
	for n < len(p) {
		pos := o + int64(n)
		chunk, in := pos/s.stripe, pos%s.stripe
		a := s.areas[chunk%stripes]
		k := int(min(int64(len(p)-n), s.stripe-in))
		if err := readFull(a.r, p[n:n+k], a.base+chunk/stripes*s.stripe+in); err != nil {
			return n, fmt.Errorf("lvm: read extents at %d: %w", a.base+chunk/stripes*s.stripe+in, err)
		}
		n += k
	}
	return n, nil
}
