package extfs

import "encoding/binary"

// Group descriptor flags.
const bgInodeUninit = 0x1 // the group's inode table was never written

// groupDesc is what this package needs of a block group's descriptor.
type groupDesc struct {
	inodeTable uint64
	flags      uint16
}

// group reads the descriptor of block group g.
func (r *Reader) group(g uint32) (groupDesc, error) {
	if g >= r.sb.groups {
		return groupDesc{}, corrupt("block group %d of %d", g, r.sb.groups)
	}
	perBlock := uint32(r.bs) / r.sb.descSize
	b, err := r.block(r.descriptorBlock(g / perBlock))
	if err != nil {
		return groupDesc{}, err
	}
	d := b[(g%perBlock)*r.sb.descSize:][:r.sb.descSize]
	le := binary.LittleEndian
	gd := groupDesc{inodeTable: uint64(le.Uint32(d[0x8:])), flags: le.Uint16(d[0x12:])}
	if r.sb.incompat&incompat64Bit != 0 {
		gd.inodeTable |= uint64(le.Uint32(d[0x28:])) << 32
	}
	// Each inode's block is checked when read: a truncated volume still
	// gives the inodes it holds.
	if gd.inodeTable <= uint64(r.sb.firstDataBlock) || gd.inodeTable >= r.limit {
		return groupDesc{}, corrupt("block group %d: inode table at block %d", g, gd.inodeTable)
	}
	return gd, nil
}

// descriptorBlock returns where the nr-th block of group descriptors is.
// Without meta_bg they follow the superblock; with it, each meta group of
// descriptors lives at the start of its first group (after a backup
// superblock if the group has one).
func (r *Reader) descriptorBlock(nr uint32) uint64 {
	sb := &r.sb
	if sb.incompat&incompatMetaBG == 0 || nr < sb.firstMetaBG {
		// The block after the superblock's: block 2 with 1 KiB blocks
		// (even when bigalloc puts block 0 in the first group), else 1.
		return uint64(superOffset/r.bs) + 1 + uint64(nr)
	}
	g := uint64(nr) * uint64(uint32(r.bs)/sb.descSize)
	var hasSuper uint64
	if g < 1<<32 && sb.hasSuper(uint32(g)) {
		hasSuper = 1
	}
	// With 1 KiB blocks and no block before the first group (bigalloc),
	// block 1 holds the superblock.
	if r.bs == 1024 && nr == 0 && sb.firstDataBlock == 0 {
		hasSuper++
	}
	return g*uint64(sb.blocksPerGroup) + uint64(sb.firstDataBlock) + hasSuper
}
