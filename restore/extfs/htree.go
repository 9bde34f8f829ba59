package extfs

import "encoding/binary"

// The htree root: "." and ".." entries, then dx_root_info, then the
// count/limit header that stands in for the first index entry's hash.
const (
	dxRootInfo    = 24
	dxRootEntries = 32
	dxNodeEntries = 8 // past the empty entry that hides an index node from readers
	maxHashLeaves = 1024
)

// indexed reports whether lookups in directory n may use its htree. A
// case-folding directory hashes folded names; it is searched linearly.
func (r *Reader) indexed(n *inode) bool {
	return r.sb.compat&compatDirIndex != 0 && n.flags&flagIndex != 0 &&
		n.flags&(flagInlineData|flagCasefold|flagEncrypt) == 0
}

// dxFrame is one index block on the path from the root to a leaf.
type dxFrame struct {
	entries []byte // count entries of 8 bytes: hash, then logical block
	at      int
}

func (f *dxFrame) count() int { return len(f.entries) / 8 }

func (f *dxFrame) block() uint64 {
	// The top bits are reserved; Linux ignores them.
	return uint64(binary.LittleEndian.Uint32(f.entries[8*f.at+4:]) & 0x0fffffff)
}

func (f *dxFrame) hash() uint32 {
	if f.at == 0 {
		return 0
	}
	return binary.LittleEndian.Uint32(f.entries[8*f.at:])
}

// htreeLookup finds a name through a directory's hash index: from the
// root down the index blocks to the leaf block the name's hash falls in,
// and on to the next leaves while they continue the same hash.
func (r *Reader) htreeLookup(n *inode, name string) (dirent, bool, error) {
	le := binary.LittleEndian
	root, err := r.dirBlock(n, 0)
	if err != nil {
		return dirent{}, false, err
	}
	info := root[dxRootInfo:dxRootEntries]
	version, infoLen, levels := int(info[4]), info[5], int(info[6])
	maxLevels := 2
	if r.sb.incompat&incompatLargeDir != 0 {
		maxLevels = 3
	}
	if le.Uint32(info) != 0 || infoLen != 8 || levels >= maxLevels {
		return dirent{}, false, corrupt("directory inode %d: htree root with %d levels", n.ino, levels)
	}
	if version <= hashTEA && r.sb.flags&flagUnsignedHash != 0 {
		version += hashLegacyUnsigned
	}
	if version > hashTEAUnsigned {
		// A hash this package does not compute (siphash of an encrypted
		// case-folding directory): the leaves still list every name.
		return r.linearLookup(n, name)
	}
	hash := dirHash(name, version, r.sb.hashSeed)

	frames := make([]dxFrame, 0, levels+1)
	node, off := root, dxRootEntries
	for {
		f, err := r.dxFrame(n, node, off, hash)
		if err != nil {
			return dirent{}, false, err
		}
		frames = append(frames, f)
		if len(frames) > levels {
			break
		}
		if node, err = r.dxNode(n, f.block()); err != nil {
			return dirent{}, false, err
		}
		off = dxNodeEntries
	}
	// Names of one hash span a leaf or two; a hostile index may make every
	// leaf continue the last.
	for range maxHashLeaves {
		leaf := frames[len(frames)-1].block()
		if leaf == 0 {
			return dirent{}, false, corrupt("directory inode %d: htree leaf at the root block", n.ino)
		}
		b, err := r.dirBlock(n, leaf)
		if err != nil {
			return dirent{}, false, err
		}
		var found *dirent
		_, err = r.parseDirBlock(n, leaf, b, false, func(d dirent) (bool, error) {
			if d.name == name {
				found = &d
				return true, nil
			}
			return false, nil
		})
		if err != nil || found != nil {
			return derefOr(found), found != nil, err
		}
		// The next leaf may hold more names of this hash: its index entry
		// then has the hash with the low bit set.
		i := len(frames) - 1
		for i >= 0 && frames[i].at+1 >= frames[i].count() {
			i--
		}
		if i < 0 {
			return dirent{}, false, nil
		}
		frames[i].at++
		if frames[i].hash()&^1 != hash {
			return dirent{}, false, nil
		}
		for j := i + 1; j < len(frames); j++ {
			node, err := r.dxNode(n, frames[j-1].block())
			if err != nil {
				return dirent{}, false, err
			}
			if frames[j], err = r.dxFrame(n, node, dxNodeEntries, 0); err != nil {
				return dirent{}, false, err
			}
		}
	}
	return dirent{}, false, corrupt("directory inode %d: more than %d htree leaves of hash %#x", n.ino, maxHashLeaves, hash)
}

// dxFrame reads the index entries at off of an index block and finds the
// last one whose hash is at most hash.
func (r *Reader) dxFrame(n *inode, node []byte, off int, hash uint32) (dxFrame, error) {
	le := binary.LittleEndian
	limit, count := int(le.Uint16(node[off:])), int(le.Uint16(node[off+2:]))
	if count == 0 || count > limit || off+8*limit > len(node) {
		return dxFrame{}, corrupt("directory inode %d: htree index of %d entries (limit %d)", n.ino, count, limit)
	}
	f := dxFrame{entries: node[off : off+8*count]}
	lo, hi := 1, count-1
	for lo <= hi {
		m := int(uint(lo+hi) >> 1)
		if le.Uint32(f.entries[8*m:]) > hash {
			hi = m - 1
		} else {
			lo = m + 1
		}
	}
	f.at = lo - 1
	return f, nil
}

// dxNode reads an interior index block, which begins with an empty
// directory entry spanning the block.
func (r *Reader) dxNode(n *inode, lblk uint64) ([]byte, error) {
	if lblk == 0 {
		return nil, corrupt("directory inode %d: htree node at the root block", n.ino)
	}
	b, err := r.dirBlock(n, lblk)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint32(b) != 0 || r.recLen(le.Uint16(b[4:])) != len(b) {
		return nil, corrupt("directory inode %d: htree node at block %d", n.ino, lblk)
	}
	return b, nil
}

// linearLookup finds a name by reading the whole directory.
func (r *Reader) linearLookup(n *inode, name string) (dirent, bool, error) {
	var found *dirent
	err := r.scanDir(n, func(d dirent) (bool, error) {
		if d.name == name {
			found = &d
			return true, nil
		}
		return false, nil
	})
	return derefOr(found), found != nil, err
}

func derefOr(d *dirent) dirent {
	if d == nil {
		return dirent{}
	}
	return *d
}
