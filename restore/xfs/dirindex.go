package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Directory hash index blocks (in the leaf space of the directory): the
// block magics are 16 bits inside a shared block header.
const (
	leaf1MagicV4 = 0xd2f1 // single leaf of a leaf directory
	leafnMagicV4 = 0xd2ff // leaf under a node
	nodeMagicV4  = 0xfebe // interior node of the hash B+tree
	leaf1MagicV5 = 0x3df1
	leafnMagicV5 = 0x3dff
	nodeMagicV5  = 0x3ebe
	daHdrV4      = 16 // forw, back, magic, pad, count, level or stale
	daHdrV5      = 64 // forw, back, magic, pad, CRC, address, LSN, UUID, owner, count, level or stale, pad
	daOwner      = 48 // offset of a version 5 header's owner
	daMaxDepth   = 5  // XFS_DA_NODE_MAXDEPTH
	// maxLeafHops bounds how many sibling leaves one hash's entries may
	// continue into.
	maxLeafHops = 64
)

// Lookup implements fstree.Lookuper: in a directory with a hash index it
// reads the index path and one data block instead of every data block.
func (r *Reader) Lookup(n fstree.Node, name string) (fstree.Entry, bool, error) {
	in, err := asInode(n)
	if err != nil {
		return fstree.Entry{}, false, err
	}
	// Short form and single-block directories are read whole anyway.
	if in.isDir() && in.format != formatLocal && in.size > int64(r.sb.dirBlockSize()) {
		if in.size > dirLeafOffset {
			return fstree.Entry{}, false, fmt.Errorf("directory inode %d of %d bytes: %w", in.ino, in.size, fstree.ErrCorrupt)
		}
		e, found, err := r.lookupHashed(in, []byte(name))
		// An ASCII case-insensitive filesystem hashes folded names, and
		// kernels have folded bytes above 0x7f differently: a miss
		// there is confirmed by reading the directory.
		if err != nil || found || !r.sb.asciiCI {
			return e, found, err
		}
	}
	var e fstree.Entry
	var found bool
	err = r.walkDir(in, func(n []byte, ino uint64, typ fs.FileMode) bool {
		if string(n) == name {
			e, found = fstree.Entry{Name: name, Type: typ, Load: r.load(ino)}, true
		}
		return found
	})
	return e, found, err
}

// lookupHashed descends the hash B+tree from the first block of the leaf
// space to the leaf holding name's hash, then checks each data entry that
// the leaf gives for that hash.
func (r *Reader) lookupHashed(in *inode, name []byte) (fstree.Entry, bool, error) {
	be := binary.BigEndian
	corrupt := func(db uint64, format string, args ...any) error {
		return fmt.Errorf("directory inode %d index block %d: %s: %w", in.ino, db, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	m := r.mapper(in)
	hdr, leaf1, leafn, node := daHdrV4, uint16(leaf1MagicV4), uint16(leafnMagicV4), uint16(nodeMagicV4)
	if r.sb.v5 {
		hdr, leaf1, leafn, node = daHdrV5, leaf1MagicV5, leafnMagicV5, nodeMagicV5
	}
	leafStart := uint64(dirLeafOffset) >> r.sb.blockLog
	hash := daHash(name)
	if r.sb.asciiCI {
		hash = daHash(foldASCII(name))
	}
	db := leafStart
	wantLevel := -1 // unknown at the root
	for hops := 0; ; {
		b, err := r.dirBlock(in, m, db)
		if err != nil {
			return fstree.Entry{}, false, err
		}
		if r.sb.v5 {
			if owner := be.Uint64(b[daOwner:]); owner != in.ino {
				return fstree.Entry{}, false, corrupt(db, "owned by inode %d", owner)
			}
		}
		count := int(be.Uint16(b[hdr-4:]))
		if r.sb.v5 {
			count = int(be.Uint16(b[hdr-8:]))
		}
		if hdr+count*8 > len(b) {
			return fstree.Entry{}, false, corrupt(db, "%d entries", count)
		}
		hashAt := func(i int) uint32 { return be.Uint32(b[hdr+i*8:]) }
		valAt := func(i int) uint32 { return be.Uint32(b[hdr+i*8+4:]) }
		// The first entry whose hash is not below name's: in a node, the
		// child whose largest hash is; in a leaf, the first candidate.
		i := sort.Search(count, func(i int) bool { return hashAt(i) >= hash })
		magic := be.Uint16(b[8:])
		switch {
		case magic == node && hops == 0:
			level := int(be.Uint16(b[hdr-2:]))
			if r.sb.v5 {
				level = int(be.Uint16(b[hdr-6:]))
			}
			if level < 1 || level >= daMaxDepth || wantLevel >= 0 && level != wantLevel {
				return fstree.Entry{}, false, corrupt(db, "node at level %d", level)
			}
			if i == count {
				return fstree.Entry{}, false, nil
			}
			child := uint64(valAt(i))
			if child < leafStart || child >= 2*leafStart {
				return fstree.Entry{}, false, corrupt(db, "child block %d outside the index", child)
			}
			// Levels strictly decrease, so the descent ends.
			db, wantLevel = child, level-1
			continue
		case (magic == leafn || magic == leaf1 && wantLevel < 0) && wantLevel <= 0:
		default:
			return fstree.Entry{}, false, corrupt(db, "bad magic %#x", magic)
		}
		for ; i < count && hashAt(i) == hash; i++ {
			addr := valAt(i)
			if addr == 0 { // stale
				continue
			}
			e, found, err := r.entryAt(in, m, uint64(addr)*8, name)
			if err != nil || found {
				return e, found, err
			}
		}
		// Entries with the same hash may go on in the next leaf.
		forw := uint64(be.Uint32(b))
		if i < count || forw == 0 || magic == leaf1 {
			return fstree.Entry{}, false, nil
		}
		if hops++; hops > maxLeafHops {
			return fstree.Entry{}, false, corrupt(db, "more than %d leaves of one hash", maxLeafHops)
		}
		if forw < leafStart || forw >= 2*leafStart {
			return fstree.Entry{}, false, corrupt(db, "next leaf %d outside the index", forw)
		}
		db, wantLevel = forw, 0
	}
}

// entryAt checks whether the data entry at byte offset off of the
// directory's data space is name.
func (r *Reader) entryAt(in *inode, m mapper, off uint64, name []byte) (fstree.Entry, bool, error) {
	bs := uint64(r.sb.dirBlockSize())
	if off >= uint64(in.size) {
		return fstree.Entry{}, false, fmt.Errorf("directory inode %d: index points at %d, past the data (%d): %w", in.ino, off, in.size, fstree.ErrCorrupt)
	}
	db := off / bs << r.sb.dirBlkLog
	b, err := r.dirBlock(in, m, db)
	if err != nil {
		return fstree.Entry{}, false, err
	}
	start, end, err := r.dataBounds(in, db, b)
	if err != nil {
		return fstree.Entry{}, false, err
	}
	pos := int(off % bs)
	if pos < start {
		return fstree.Entry{}, false, fmt.Errorf("directory inode %d: index points into block %d's header: %w", in.ino, db, fstree.ErrCorrupt)
	}
	e, err := r.dataEntry(b, pos, end)
	if err != nil {
		return fstree.Entry{}, false, fmt.Errorf("directory inode %d block %d: %w", in.ino, db, err)
	}
	if e.name == nil {
		return fstree.Entry{}, false, fmt.Errorf("directory inode %d: index points at unused space in block %d: %w", in.ino, db, fstree.ErrCorrupt)
	}
	if !bytes.Equal(e.name, name) {
		return fstree.Entry{}, false, nil
	}
	return fstree.Entry{Name: string(name), Type: e.typ, Load: r.load(e.ino)}, true, nil
}

// daHash is the directory name hash (xfs_da_hashname): seven bits of
// each byte, rotated in four bytes at a time.
func daHash(name []byte) uint32 {
	var h uint32
	for ; len(name) >= 4; name = name[4:] {
		h = uint32(name[0])<<21 ^ uint32(name[1])<<14 ^ uint32(name[2])<<7 ^ uint32(name[3]) ^ rol32(h, 7*4)
	}
	switch len(name) {
	case 3:
		return uint32(name[0])<<14 ^ uint32(name[1])<<7 ^ uint32(name[2]) ^ rol32(h, 7*3)
	case 2:
		return uint32(name[0])<<7 ^ uint32(name[1]) ^ rol32(h, 7*2)
	case 1:
		return uint32(name[0]) ^ rol32(h, 7)
	}
	return h
}

func rol32(x uint32, n uint) uint32 { return x<<n | x>>(32-n) }

// foldASCII returns name with ASCII capitals lowered, as case-insensitive
// XFS hashes it.
func foldASCII(name []byte) []byte {
	out := make([]byte, len(name))
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
