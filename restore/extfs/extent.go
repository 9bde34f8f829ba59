package extfs

import "encoding/binary"

const (
	extentMagic = 0xf30a
	// maxExtentDepth is the deepest tree Linux builds and accepts.
	maxExtentDepth = 5
	// An extent longer than this is unwritten: allocated, reading as zeros.
	maxInitLen = 32768
)

// extentMapper maps an ext4 file through its extent tree, whose root lies
// in the inode's i_block. Each lookup walks from the root; the interior
// blocks come from the block cache.
type extentMapper struct {
	r *Reader
	n *inode
}

type extentHeader struct {
	entries, max, depth uint16
}

func (m extentMapper) header(node []byte, where uint64) (extentHeader, error) {
	le := binary.LittleEndian
	if le.Uint16(node) != extentMagic {
		return extentHeader{}, corrupt("inode %d: extent node at block %d: bad magic %#x", m.n.ino, where, le.Uint16(node))
	}
	h := extentHeader{entries: le.Uint16(node[2:]), max: le.Uint16(node[4:]), depth: le.Uint16(node[6:])}
	if int(h.max) > (len(node)-12)/12 || h.entries > h.max {
		return extentHeader{}, corrupt("inode %d: extent node at block %d: %d entries of %d", m.n.ino, where, h.entries, h.max)
	}
	return h, nil
}

func (m extentMapper) mapBlock(lblk uint64) (run, error) {
	le := binary.LittleEndian
	node := m.n.block[:]
	var where uint64       // block of node, 0 for the root in the inode
	end := uint64(1) << 32 // first logical block past what node covers
	h, err := m.header(node, where)
	if err != nil {
		return run{}, err
	}
	if h.depth > maxExtentDepth {
		return run{}, corrupt("inode %d: extent tree depth %d", m.n.ino, h.depth)
	}
	// Each level down must be one less deep, so the walk ends even when
	// blocks point back up the tree.
	for h.depth > 0 {
		if h.entries == 0 {
			return run{}, corrupt("inode %d: empty extent index at block %d", m.n.ino, where)
		}
		idx := -1
		for i := range int(h.entries) {
			e := node[12+12*i:]
			start := uint64(le.Uint32(e))
			if i > 0 && start <= uint64(le.Uint32(node[12*i:])) {
				return run{}, corrupt("inode %d: extent index at block %d out of order", m.n.ino, where)
			}
			if start > lblk {
				end = min(end, start)
				break
			}
			idx = i
		}
		if idx < 0 {
			return run{n: end - lblk, zero: true}, nil
		}
		e := node[12+12*idx:]
		child := uint64(le.Uint32(e[4:])) | uint64(le.Uint16(e[8:]))<<32
		if err := m.r.checkRun(m.n.ino, child, 1); err != nil {
			return run{}, err
		}
		if node, err = m.r.block(child); err != nil {
			return run{}, err
		}
		where = child
		depth := h.depth
		if h, err = m.header(node, where); err != nil {
			return run{}, err
		}
		if h.depth != depth-1 {
			return run{}, corrupt("inode %d: extent node at block %d has depth %d under depth %d", m.n.ino, where, h.depth, depth)
		}
	}
	var prevEnd uint64
	for i := range int(h.entries) {
		e := node[12+12*i:]
		start := uint64(le.Uint32(e))
		length := uint64(le.Uint16(e[4:]))
		unwritten := length > maxInitLen
		if unwritten {
			length -= maxInitLen
		}
		if length == 0 || start < prevEnd || start+length > 1<<32 {
			return run{}, corrupt("inode %d: extent %d+%d at block %d", m.n.ino, start, length, where)
		}
		prevEnd = start + length
		if lblk < start {
			return run{n: min(start, end) - lblk, zero: true}, nil
		}
		if lblk >= prevEnd {
			continue
		}
		phys := uint64(le.Uint32(e[8:])) | uint64(le.Uint16(e[6:]))<<32
		if err := m.r.checkRun(m.n.ino, phys, length); err != nil {
			return run{}, err
		}
		return run{phys: phys + lblk - start, n: prevEnd - lblk, zero: unwritten}, nil
	}
	return run{n: end - lblk, zero: true}, nil
}
