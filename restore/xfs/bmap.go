package xfs

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// extentSize is the size of a packed extent record (xfs_bmbt_rec).
const extentSize = 16

// maxFileBlocks bounds logical block numbers: extent start offsets have 54
// bits.
const maxFileBlocks = 1 << 54

// extent maps count logical blocks of a file from off to filesystem block
// block. An unwritten extent is allocated but reads as zeros.
type extent struct {
	off, block, count uint64
	unwritten         bool
}

func (e extent) end() uint64 { return e.off + e.count }

// decodeExtent unpacks a 128-bit record: 1 bit unwritten flag, 54 bits
// logical offset, 52 bits block number, 21 bits length.
func decodeExtent(b []byte) extent {
	l0 := binary.BigEndian.Uint64(b)
	l1 := binary.BigEndian.Uint64(b[8:])
	return extent{
		unwritten: l0>>63 != 0,
		off:       l0 & (1<<63 - 1) >> 9,
		block:     (l0&0x1ff)<<43 | l1>>21,
		count:     l1 & (1<<21 - 1),
	}
}

// parseExtents decodes a run of records and checks that they are in order,
// do not overlap and lie inside their allocation groups.
func (s *super) parseExtents(b []byte) (extentList, error) {
	ext := make(extentList, len(b)/extentSize)
	for i := range ext {
		e := decodeExtent(b[i*extentSize:])
		if err := s.checkExtent(e); err != nil {
			return nil, err
		}
		if i > 0 && e.off < ext[i-1].end() {
			return nil, fmt.Errorf("extent at block %d overlaps or precedes the one at %d: %w", e.off, ext[i-1].off, fstree.ErrCorrupt)
		}
		ext[i] = e
	}
	return ext, nil
}

func (s *super) checkExtent(e extent) error {
	if e.count == 0 || e.end() > maxFileBlocks {
		return fmt.Errorf("extent of %d blocks at %d: %w", e.count, e.off, fstree.ErrCorrupt)
	}
	if _, err := s.blockOffset(e.block, e.count); err != nil {
		return fmt.Errorf("extent at block %d: %w", e.off, err)
	}
	return nil
}

// A mapper maps a file's logical blocks to extents.
type mapper interface {
	// find returns the extent holding logical block lb or, when lb is in
	// a hole, the first extent after it; ok is false when there is none.
	find(lb uint64) (e extent, ok bool, err error)
}

// extentList is the data fork of an extents-format inode, or a leaf's
// records, sorted by offset.
type extentList []extent

func (l extentList) find(lb uint64) (extent, bool, error) {
	i := sort.Search(len(l), func(i int) bool { return l[i].end() > lb })
	if i == len(l) {
		return extent{}, false, nil
	}
	return l[i], true, nil
}

// noExtents maps nothing: a file of holes.
type noExtents struct{}

func (noExtents) find(uint64) (extent, bool, error) { return extent{}, false, nil }
