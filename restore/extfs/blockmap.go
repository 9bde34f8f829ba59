package extfs

import "encoding/binary"

// directBlocks are the block pointers of i_block before the single, double
// and triple indirect ones.
const directBlocks = 12

// blockMapper maps an ext2 or ext3 file through i_block: 12 direct
// pointers, then trees of indirect blocks one, two and three levels deep.
// A zero pointer is a hole, of one block or of a whole subtree.
type blockMapper struct {
	r *Reader
	n *inode
}

func (m blockMapper) mapBlock(lblk uint64) (run, error) {
	if lblk < directBlocks {
		return m.scan(m.n.block[:4*directBlocks], int(lblk))
	}
	lblk -= directBlocks
	p := uint64(m.r.bs / 4)
	span := p // blocks under the top pointer of this level
	for level := 1; level <= 3; level++ {
		if lblk < span {
			ptr := binary.LittleEndian.Uint32(m.n.block[4*(directBlocks-1+level):])
			return m.walk(ptr, level, span, lblk)
		}
		lblk -= span
		span *= p
	}
	return run{}, corrupt("inode %d: block %d past the triple indirect block", m.n.ino, lblk)
}

// walk descends from a pointer to an indirect block of the given level,
// which covers span blocks, to block rel of them.
func (m blockMapper) walk(ptr uint32, level int, span, rel uint64) (run, error) {
	p := uint64(m.r.bs / 4)
	for {
		if ptr == 0 {
			return run{n: span - rel, zero: true}, nil
		}
		if err := m.r.checkRun(m.n.ino, uint64(ptr), 1); err != nil {
			return run{}, err
		}
		b, err := m.r.block(uint64(ptr))
		if err != nil {
			return run{}, err
		}
		span /= p
		i := rel / span
		if level == 1 {
			return m.scan(b, int(i))
		}
		rel %= span
		ptr = binary.LittleEndian.Uint32(b[4*i:])
		level--
	}
}

// scan returns the run from pointer i of an array of block pointers: zero
// pointers, or pointers to consecutive blocks.
func (m blockMapper) scan(ptrs []byte, i int) (run, error) {
	le := binary.LittleEndian
	first := le.Uint32(ptrs[4*i:])
	n := uint64(1)
	for j := i + 1; j < len(ptrs)/4; j++ {
		next := le.Uint32(ptrs[4*j:])
		if (first == 0 && next != 0) || (first != 0 && uint64(next) != uint64(first)+n) {
			break
		}
		n++
	}
	if first == 0 {
		return run{n: n, zero: true}, nil
	}
	if err := m.r.checkRun(m.n.ino, uint64(first), n); err != nil {
		return run{}, err
	}
	return run{phys: uint64(first), n: n}, nil
}
