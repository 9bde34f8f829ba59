package xfs

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Extent B+tree (bmbt) block magics and header sizes.
const (
	bmapMagic    = 0x424d4150 // "BMAP", version 4
	bma3Magic    = 0x424d4133 // "BMA3", version 5, with CRC, owner and self address
	bmbtHdrV4    = 24
	bmbtHdrV5    = 72
	bmbtMaxLevel = 9 // XFS_BTREE_MAXLEVELS: a 64-bit block space needs no more
)

// bmdrRoot is the root of an extent B+tree, kept in the inode's data fork.
type bmdrRoot struct {
	level int
	keys  []uint64 // first logical block under each child
	ptrs  []uint64 // child filesystem block numbers
}

func parseBmdr(fork []byte) (*bmdrRoot, error) {
	if len(fork) < 4 {
		return nil, fmt.Errorf("extent tree root in a fork of %d bytes: %w", len(fork), fstree.ErrCorrupt)
	}
	be := binary.BigEndian
	level := int(be.Uint16(fork))
	n := int(be.Uint16(fork[2:]))
	maxRecs := (len(fork) - 4) / 16
	if level < 1 || level > bmbtMaxLevel {
		return nil, fmt.Errorf("extent tree of depth %d: %w", level, fstree.ErrCorrupt)
	}
	if n < 1 || n > maxRecs {
		return nil, fmt.Errorf("extent tree root with %d of at most %d keys: %w", n, maxRecs, fstree.ErrCorrupt)
	}
	keys, ptrs, err := parseKeysPtrs(fork[4:], n, maxRecs)
	if err != nil {
		return nil, fmt.Errorf("extent tree root: %w", err)
	}
	return &bmdrRoot{level: level, keys: keys, ptrs: ptrs}, nil
}

// parseKeysPtrs reads n keys and n pointers of a node whose pointers start
// after room for maxRecs keys.
func parseKeysPtrs(b []byte, n, maxRecs int) (keys, ptrs []uint64, err error) {
	be := binary.BigEndian
	keys = make([]uint64, n)
	ptrs = make([]uint64, n)
	for i := range n {
		keys[i] = be.Uint64(b[i*8:])
		ptrs[i] = be.Uint64(b[(maxRecs+i)*8:])
		if i > 0 && keys[i] <= keys[i-1] {
			return nil, nil, fmt.Errorf("keys out of order (%d after %d): %w", keys[i], keys[i-1], fstree.ErrCorrupt)
		}
	}
	if keys[n-1] >= maxFileBlocks {
		return nil, nil, fmt.Errorf("key %d: %w", keys[n-1], fstree.ErrCorrupt)
	}
	return keys, ptrs, nil
}

// bmbtNode is a parsed extent tree block: keys and pointers, or at level 0
// extent records.
type bmbtNode struct {
	level int
	keys  []uint64
	ptrs  []uint64
	recs  extentList
}

// btreeMap maps the blocks of a btree-format inode. Each find descends
// from the root; blocks come from the reader's cache, so a sequential read
// re-reads nothing.
type btreeMap struct {
	r    *Reader
	ino  uint64
	root *bmdrRoot
}

func (t *btreeMap) find(lb uint64) (extent, bool, error) {
	return t.findIn(t.root.keys, t.root.ptrs, t.root.level, maxFileBlocks, lb)
}

// findIn looks under a node at level whose subtree holds blocks below hi.
// Levels strictly decrease on the way down, so a cycle of pointers is a
// level mismatch, never a loop. Every child's records lie between its key
// and the next, so if child i (the last one whose key is at most lb) has
// nothing at or after lb, child i+1 starts after lb: at most two children
// per level are looked at.
func (t *btreeMap) findIn(keys, ptrs []uint64, level int, hi, lb uint64) (extent, bool, error) {
	i := max(sort.Search(len(keys), func(i int) bool { return keys[i] > lb })-1, 0)
	for j := i; j < len(keys) && j <= i+1; j++ {
		lo, chi := keys[j], hi
		if j+1 < len(keys) {
			chi = keys[j+1]
		}
		n, err := t.node(ptrs[j], level-1)
		if err != nil {
			return extent{}, false, err
		}
		if n.level == 0 {
			if n.recs[0].off < lo || n.recs[len(n.recs)-1].end() > chi {
				return extent{}, false, fmt.Errorf("inode %d: extent tree leaf %d holds blocks %d-%d outside %d-%d: %w",
					t.ino, ptrs[j], n.recs[0].off, n.recs[len(n.recs)-1].end(), lo, chi, fstree.ErrCorrupt)
			}
			if e, ok, _ := n.recs.find(lb); ok {
				return e, true, nil
			}
			continue
		}
		if n.keys[0] < lo || n.keys[len(n.keys)-1] >= chi {
			return extent{}, false, fmt.Errorf("inode %d: extent tree node %d has keys %d-%d outside %d-%d: %w",
				t.ino, ptrs[j], n.keys[0], n.keys[len(n.keys)-1], lo, chi, fstree.ErrCorrupt)
		}
		e, ok, err := t.findIn(n.keys, n.ptrs, n.level, chi, lb)
		if err != nil || ok {
			return e, ok, err
		}
	}
	return extent{}, false, nil
}

// node reads and checks the extent tree block at fsb, which must be at
// level.
func (t *btreeMap) node(fsb uint64, level int) (*bmbtNode, error) {
	key := cacheKey{kind: kindBmbt, ino: t.ino, n: fsb}
	if v, ok := t.r.blocks.Get(key); ok {
		n := v.(*bmbtNode)
		if n.level != level {
			return nil, fmt.Errorf("inode %d: extent tree block %d at level %d, want %d: %w", t.ino, fsb, n.level, level, fstree.ErrCorrupt)
		}
		return n, nil
	}
	r := t.r
	off, err := r.sb.blockOffset(fsb, 1)
	if err != nil {
		return nil, fmt.Errorf("inode %d: extent tree block: %w", t.ino, err)
	}
	b := make([]byte, r.sb.blockSize)
	if err := r.readAt(b, off); err != nil {
		return nil, fmt.Errorf("inode %d: extent tree block %d: %w", t.ino, fsb, err)
	}
	n, err := r.parseBmbt(t.ino, fsb, off, b)
	if err != nil {
		return nil, err
	}
	r.blocks.Add(key, n, int64(len(b)))
	if n.level != level {
		return nil, fmt.Errorf("inode %d: extent tree block %d at level %d, want %d: %w", t.ino, fsb, n.level, level, fstree.ErrCorrupt)
	}
	return n, nil
}

func (r *Reader) parseBmbt(ino, fsb uint64, off int64, b []byte) (*bmbtNode, error) {
	be := binary.BigEndian
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("inode %d: extent tree block %d: %s: %w", ino, fsb, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	hdr := bmbtHdrV4
	if r.sb.v5 {
		hdr = bmbtHdrV5
		if m := be.Uint32(b); m != bma3Magic {
			return nil, corrupt("bad magic %#x", m)
		}
		if blkno := be.Uint64(b[24:]); blkno != uint64(off)/512 {
			return nil, corrupt("records its address as sector %d", blkno)
		}
		if owner := be.Uint64(b[56:]); owner != ino {
			return nil, corrupt("owned by inode %d", owner)
		}
	} else if m := be.Uint32(b); m != bmapMagic {
		return nil, corrupt("bad magic %#x", m)
	}
	n := &bmbtNode{level: int(be.Uint16(b[4:]))}
	count := int(be.Uint16(b[6:]))
	maxRecs := (len(b) - hdr) / 16
	if n.level >= bmbtMaxLevel {
		return nil, corrupt("level %d", n.level)
	}
	if count < 1 || count > maxRecs {
		return nil, corrupt("%d of at most %d records", count, maxRecs)
	}
	var err error
	if n.level == 0 {
		n.recs, err = r.sb.parseExtents(b[hdr : hdr+count*extentSize])
	} else {
		n.keys, n.ptrs, err = parseKeysPtrs(b[hdr:], count, maxRecs)
	}
	if err != nil {
		return nil, fmt.Errorf("inode %d: extent tree block %d: %w", ino, fsb, err)
	}
	return n, nil
}
