package ntfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/bits"
	"slices"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Index entry flags.
const (
	entrySubnode = 0x1
	entryLast    = 0x2
)

// ReadDir lists a directory's $I30 index: the entries of $INDEX_ROOT and of
// every index block of $INDEX_ALLOCATION they lead to. DOS names are left
// out, as are the metafiles in the root.
func (r *Reader) ReadDir(dn fstree.Node) ([]fstree.Entry, error) {
	d, ok := dn.(*node)
	if !ok || !d.dir {
		return nil, fmt.Errorf("ntfs: readdir of a node that is not a directory: %w", fs.ErrInvalid)
	}
	if entries, ok := r.dirs.Get(d.num); ok {
		return slices.Clone(entries), nil
	}
	w := &dirWalk{r: r, dir: d, seen: map[int64]bool{}}
	if err := w.walk(); err != nil {
		return nil, fmt.Errorf("ntfs: directory %d: %w", d.num, err)
	}
	r.dirs.Add(d.num, w.entries, int64(len(w.entries)+1))
	return slices.Clone(w.entries), nil
}

// dirWalk is one listing of a directory's index B-tree.
type dirWalk struct {
	r         *Reader
	dir       *node
	blockSize int
	vcnSize   int64 // bytes per VCN of the index allocation
	alloc     *stream
	seen      map[int64]bool // index blocks visited, by VCN
	entries   []fstree.Entry
}

func (w *dirWalk) walk() error {
	root := w.dir.find(attrIndexRoot, "$I30")
	if root == nil || !root.resident || len(root.value) < 0x20 {
		return fmt.Errorf("no $I30 index root: %w", fstree.ErrCorrupt)
	}
	v := root.value
	if typ := binary.LittleEndian.Uint32(v); typ != attrFileName {
		return fmt.Errorf("$I30 indexes attribute 0x%x: %w", typ, fstree.ErrCorrupt)
	}
	w.blockSize = int(binary.LittleEndian.Uint32(v[8:]))
	if w.blockSize < fixupBlock || w.blockSize > 64<<10 || bits.OnesCount(uint(w.blockSize)) != 1 {
		return fmt.Errorf("index blocks of %d bytes: %w", w.blockSize, fstree.ErrCorrupt)
	}
	// VCNs count clusters, or 512-byte blocks when index blocks are
	// smaller than a cluster.
	w.vcnSize = w.r.clusterSize
	if int64(w.blockSize) < w.r.clusterSize {
		w.vcnSize = fixupBlock
	}
	if w.dir.alloc != nil {
		w.alloc = w.r.newStream(w.dir.alloc)
	}
	return w.node(v[0x10:], "index root", 0)
}

// node reads the entries of one index node, whose index header starts
// hdr, and then the nodes below it.
func (w *dirWalk) node(hdr []byte, where string, depth int) error {
	if depth > maxIndexTreeDepth {
		return fmt.Errorf("%s: index deeper than %d: %w", where, maxIndexTreeDepth, fstree.ErrCorrupt)
	}
	if len(hdr) < 16 {
		return fmt.Errorf("%s: index header cut short: %w", where, fstree.ErrCorrupt)
	}
	start := int(binary.LittleEndian.Uint32(hdr))
	used := int(binary.LittleEndian.Uint32(hdr[4:]))
	if used > len(hdr) || start < 16 || start > used {
		return fmt.Errorf("%s: entries from %d to %d of %d bytes: %w", where, start, used, len(hdr), fstree.ErrCorrupt)
	}
	var children []int64
	for off := start; ; {
		if off+16 > used {
			return fmt.Errorf("%s: entries without an end: %w", where, fstree.ErrCorrupt)
		}
		e := hdr[off:]
		length := int(binary.LittleEndian.Uint16(e[8:]))
		keyLen := int(binary.LittleEndian.Uint16(e[10:]))
		flags := binary.LittleEndian.Uint16(e[12:])
		if length < 16 || length%8 != 0 || length > used-off {
			return fmt.Errorf("%s: entry at %d of %d bytes: %w", where, off, length, fstree.ErrCorrupt)
		}
		room := length - 16
		if flags&entrySubnode != 0 {
			if room < 8 {
				return fmt.Errorf("%s: entry at %d has no room for its subnode: %w", where, off, fstree.ErrCorrupt)
			}
			room -= 8
			children = append(children, int64(binary.LittleEndian.Uint64(e[length-8:])))
		}
		if flags&entryLast != 0 {
			break
		}
		if keyLen > room {
			return fmt.Errorf("%s: key of %d bytes in an entry of %d: %w", where, keyLen, length, fstree.ErrCorrupt)
		}
		fn, err := parseFileName(e[16 : 16+keyLen])
		if err != nil {
			return fmt.Errorf("%s: entry at %d: %w", where, off, err)
		}
		if err := w.add(binary.LittleEndian.Uint64(e), fn); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		off += length
	}
	for _, vcn := range children {
		if err := w.block(vcn, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// block reads the index block at vcn of the index allocation and walks it.
func (w *dirWalk) block(vcn int64, depth int) error {
	where := fmt.Sprintf("index block at VCN %d", vcn)
	if w.alloc == nil {
		return fmt.Errorf("%s, without an index allocation: %w", where, fstree.ErrCorrupt)
	}
	if vcn < 0 || vcn > (w.alloc.size-int64(w.blockSize))/w.vcnSize {
		return fmt.Errorf("%s beyond an allocation of %d bytes: %w", where, w.alloc.size, fstree.ErrCorrupt)
	}
	if w.seen[vcn] {
		return fmt.Errorf("%s reached twice: %w", where, fstree.ErrCorrupt)
	}
	w.seen[vcn] = true
	b := make([]byte, w.blockSize)
	if _, err := w.alloc.ReadAt(b, vcn*w.vcnSize); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := fixup(b, "INDX", where); err != nil {
		return err
	}
	if got := int64(binary.LittleEndian.Uint64(b[0x10:])); got != vcn {
		return fmt.Errorf("%s says it is at VCN %d: %w", where, got, fstree.ErrCorrupt)
	}
	return w.node(b[0x18:], where, depth)
}

// add turns an index entry into a directory entry.
func (w *dirWalk) add(ref uint64, fn fileName) error {
	if fn.namespace == nameDOS {
		return nil
	}
	num := ref & refMask
	dir := w.dir.num
	switch {
	case fn.parent != dir:
		return fmt.Errorf("entry %q is in directory %d: %w", fn.name, fn.parent, fstree.ErrCorrupt)
	case num == dir && dir == recRoot && fn.name == ".":
		return nil
	case num == dir:
		return fmt.Errorf("entry %q is the directory itself: %w", fn.name, fstree.ErrCorrupt)
	case dir == recRoot && num < firstUserRecord:
		return nil
	case len(w.entries) >= maxDirEntries:
		return fmt.Errorf("more than %d entries: %w", maxDirEntries, fstree.ErrCorrupt)
	}
	var typ fs.FileMode
	if fn.flags&dupFileNameIndexPresent != 0 && fn.flags&fstree.AttrReparse == 0 {
		typ = fs.ModeDir
	}
	r := w.r
	w.entries = append(w.entries, fstree.Entry{
		Name: fn.name,
		Type: typ,
		Load: func() (fstree.Node, error) { return r.child(dir, ref) },
	})
	return nil
}

// child loads the node an entry of directory dir refers to, checking that
// it is the record the entry meant and that one of its names is in dir: a
// directory has one name, so no walk down from the root meets it twice.
func (r *Reader) child(dir, ref uint64) (fstree.Node, error) {
	num := ref & refMask
	n, err := r.node(num)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	if seq := uint16(ref >> 48); seq != 0 && seq != n.seq {
		return nil, fmt.Errorf("ntfs: directory %d names record %d of sequence %d, found %d: %w",
			dir, num, seq, n.seq, fstree.ErrCorrupt)
	}
	if !slices.Contains(n.parents, dir) {
		return nil, fmt.Errorf("ntfs: directory %d lists record %d, which is not in it: %w", dir, num, fstree.ErrCorrupt)
	}
	return n, nil
}
