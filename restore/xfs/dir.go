package xfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Directory data block magics and header sizes.
const (
	xd2bMagic = 0x58443242 // "XD2B": single-block directory, version 4
	xdb3Magic = 0x58444233 // "XDB3": single-block directory, version 5
	xd2dMagic = 0x58443244 // "XD2D": data block of a leaf or node directory
	xdd3Magic = 0x58444433 // "XDD3"
	dataHdrV4 = 16         // magic, 3 best-free records
	dataHdrV5 = 64         // magic, CRC, address, LSN, UUID, owner, best-free, pad
	dataOwner = 40         // offset of a version 5 header's owner

	// dirLeafOffset is where a directory's logical space stops holding
	// data blocks and starts holding its hash index (then at twice that,
	// its free-space index).
	dirLeafOffset = 32 << 30
	// dataFreeTag marks an unused stretch of a data block.
	dataFreeTag = 0xffff
	// maxDirEntries bounds one listing, whatever the image claims.
	maxDirEntries = 1 << 22
)

// dirEntryFunc is called for each entry of a directory but "." and "..";
// returning true stops the walk.
type dirEntryFunc func(name []byte, ino uint64, typ fs.FileMode) bool

// ReadDir implements fstree.Reader.
func (r *Reader) ReadDir(n fstree.Node) ([]fstree.Entry, error) {
	in, err := asInode(n)
	if err != nil {
		return nil, err
	}
	var out []fstree.Entry
	err = r.walkDir(in, func(name []byte, ino uint64, typ fs.FileMode) bool {
		out = append(out, fstree.Entry{Name: string(name), Type: typ, Load: r.load(ino)})
		return false
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// walkDir calls fn for each entry of a directory, in on-disk order.
func (r *Reader) walkDir(in *inode, fn dirEntryFunc) error {
	if !in.isDir() {
		return fmt.Errorf("inode %d is not a directory", in.ino)
	}
	count := 0
	counted := func(name []byte, ino uint64, typ fs.FileMode) bool {
		count++
		return fn(name, ino, typ)
	}
	if in.format == formatLocal {
		return r.walkShortform(in, counted)
	}
	if in.size > dirLeafOffset {
		return fmt.Errorf("directory inode %d of %d bytes: %w", in.ino, in.size, fstree.ErrCorrupt)
	}
	m := r.mapper(in)
	per := uint64(1) << r.sb.dirBlkLog // filesystem blocks per directory block
	limit := (uint64(in.size) + uint64(r.sb.blockSize) - 1) >> r.sb.blockLog
	seen := map[int64]bool{}
	for lb := uint64(0); lb < limit; {
		e, ok, err := m.find(lb)
		if err != nil {
			return err
		}
		if !ok || e.off >= limit {
			break
		}
		start, err := r.sb.blockOffset(e.block, e.count)
		if err != nil {
			return fmt.Errorf("directory inode %d: %w", in.ino, err)
		}
		for db := (max(lb, e.off) + per - 1) &^ (per - 1); db < e.end() && db < limit; db += per {
			// Extents mapping one block twice would repeat its
			// entries as often as the image cares to.
			phys := start + int64(db-e.off)<<r.sb.blockLog
			if seen[phys] {
				return fmt.Errorf("directory inode %d: block %d maps to the same place as an earlier one: %w", in.ino, db, fstree.ErrCorrupt)
			}
			seen[phys] = true
			b, err := r.dirBlock(in, m, db)
			if err != nil {
				return err
			}
			stop, err := r.walkDataBlock(in, db, b, counted)
			if err != nil || stop {
				return err
			}
			if count > maxDirEntries {
				return fmt.Errorf("directory inode %d: more than %d entries: %w", in.ino, maxDirEntries, fstree.ErrCorrupt)
			}
		}
		lb = e.end()
	}
	return nil
}

// dirBlock returns the directory block at logical block db, which may span
// several extents when directory blocks are larger than filesystem blocks.
func (r *Reader) dirBlock(in *inode, m mapper, db uint64) ([]byte, error) {
	key := cacheKey{kind: kindDirBlock, ino: in.ino, n: db}
	if v, ok := r.blocks.Get(key); ok {
		return v.([]byte), nil
	}
	b := make([]byte, r.sb.dirBlockSize())
	if err := r.readMapped(in.ino, m, b, int64(db<<r.sb.blockLog)); err != nil {
		return nil, fmt.Errorf("directory inode %d block %d: %w", in.ino, db, err)
	}
	r.blocks.Add(key, b, int64(len(b)))
	return b, nil
}

// walkShortform walks a directory kept in the inode: a header (count,
// whether inode numbers take 8 bytes, parent) and packed entries (name
// length, offset, name, file type when recorded, inode number).
func (r *Reader) walkShortform(in *inode, fn dirEntryFunc) error {
	b := in.fork[:in.size]
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("directory inode %d: short form: %s: %w", in.ino, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	if len(b) < 2 {
		return corrupt("%d bytes", len(b))
	}
	count, inoSize := int(b[0]), 4
	if b[1] != 0 {
		inoSize = 8
	}
	ft := 0
	if r.sb.ftype {
		ft = 1
	}
	pos := 2 + inoSize
	for i := range count {
		if pos+3 > len(b) {
			return corrupt("entry %d at %d past the end (%d)", i, pos, len(b))
		}
		nl := int(b[pos])
		if nl == 0 {
			return corrupt("entry %d has an empty name", i)
		}
		pos += 3
		if pos+nl+ft+inoSize > len(b) {
			return corrupt("entry %d at %d past the end (%d)", i, pos, len(b))
		}
		name := b[pos : pos+nl]
		pos += nl
		typ, err := fileType(r.sb.ftype, b[pos:])
		if err != nil {
			return fmt.Errorf("directory inode %d: entry %q: %w", in.ino, name, err)
		}
		pos += ft
		var ino uint64
		if inoSize == 8 {
			ino = binary.BigEndian.Uint64(b[pos:])
		} else {
			ino = uint64(binary.BigEndian.Uint32(b[pos:]))
		}
		pos += inoSize
		if fn(name, ino, typ) {
			return nil
		}
	}
	return nil
}

// walkDataBlock walks the entries of a directory data block.
func (r *Reader) walkDataBlock(in *inode, db uint64, b []byte, fn dirEntryFunc) (bool, error) {
	pos, end, err := r.dataBounds(in, db, b)
	if err != nil {
		return false, err
	}
	for pos < end {
		e, err := r.dataEntry(b, pos, end)
		if err != nil {
			return false, fmt.Errorf("directory inode %d block %d: %w", in.ino, db, err)
		}
		pos += e.size
		if e.name == nil || isDots(e.name) {
			continue
		}
		if fn(e.name, e.ino, e.typ) {
			return true, nil
		}
	}
	return false, nil
}

// dataBounds checks a directory data block's header and returns where its
// entries start and end.
func (r *Reader) dataBounds(in *inode, db uint64, b []byte) (start, end int, err error) {
	be := binary.BigEndian
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("directory inode %d block %d: %s: %w", in.ino, db, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	hdr, blockMagic, dataMagic := dataHdrV4, uint32(xd2bMagic), uint32(xd2dMagic)
	if r.sb.v5 {
		hdr, blockMagic, dataMagic = dataHdrV5, xdb3Magic, xdd3Magic
		if owner := be.Uint64(b[dataOwner:]); owner != in.ino {
			return 0, 0, corrupt("owned by inode %d", owner)
		}
	}
	end = len(b)
	switch m := be.Uint32(b); m {
	case blockMagic:
		// A single-block directory ends with its hash index: leaf
		// entries of 8 bytes, then their count and stale count.
		leaf := uint64(be.Uint32(b[end-8:]))*8 + 8
		if leaf > uint64(end-hdr) {
			return 0, 0, corrupt("%d index bytes", leaf)
		}
		end -= int(leaf)
	case dataMagic:
	default:
		return 0, 0, corrupt("bad magic %#x", m)
	}
	return hdr, end, nil
}

// dataEntry is one entry of a data block; name is nil for unused space.
type dataEntry struct {
	name []byte
	ino  uint64
	typ  fs.FileMode
	size int
}

// dataEntry parses the entry at pos of a data block whose entries end at
// end. An entry is an inode number, a name with its length, the file type
// when recorded, and its own offset, padded to 8 bytes; unused space is
// tagged 0xffff and says its length.
func (r *Reader) dataEntry(b []byte, pos, end int) (dataEntry, error) {
	be := binary.BigEndian
	if pos+4 > end {
		return dataEntry{}, fmt.Errorf("entry at %d past the end (%d): %w", pos, end, fstree.ErrCorrupt)
	}
	if be.Uint16(b[pos:]) == dataFreeTag {
		n := int(be.Uint16(b[pos+2:]))
		if n < 8 || n%8 != 0 || pos+n > end {
			return dataEntry{}, fmt.Errorf("unused space of %d bytes at %d: %w", n, pos, fstree.ErrCorrupt)
		}
		return dataEntry{size: n}, nil
	}
	ft := 0
	if r.sb.ftype {
		ft = 1
	}
	if pos+9 > end {
		return dataEntry{}, fmt.Errorf("entry at %d past the end (%d): %w", pos, end, fstree.ErrCorrupt)
	}
	nl := int(b[pos+8])
	size := (8 + 1 + nl + ft + 2 + 7) &^ 7
	if nl == 0 || pos+size > end {
		return dataEntry{}, fmt.Errorf("entry at %d with a name of %d bytes: %w", pos, nl, fstree.ErrCorrupt)
	}
	if tag := int(be.Uint16(b[pos+size-2:])); tag != pos {
		return dataEntry{}, fmt.Errorf("entry at %d tagged %d: %w", pos, tag, fstree.ErrCorrupt)
	}
	name := b[pos+9 : pos+9+nl]
	typ, err := fileType(r.sb.ftype, b[pos+9+nl:])
	if err != nil {
		return dataEntry{}, fmt.Errorf("entry %q: %w", name, err)
	}
	return dataEntry{name: name, ino: be.Uint64(b[pos:]), typ: typ, size: size}, nil
}

func isDots(name []byte) bool {
	return string(name) == "." || string(name) == ".."
}

// fileType decodes a directory entry's file type byte, b[0], when the
// filesystem records one.
func fileType(recorded bool, b []byte) (fs.FileMode, error) {
	if !recorded {
		return 0, nil
	}
	switch b[0] {
	case 0, 1: // unknown, regular
		return 0, nil
	case 2:
		return fs.ModeDir, nil
	case 3:
		return fs.ModeDevice | fs.ModeCharDevice, nil
	case 4:
		return fs.ModeDevice, nil
	case 5:
		return fs.ModeNamedPipe, nil
	case 6:
		return fs.ModeSocket, nil
	case 7:
		return fs.ModeSymlink, nil
	}
	return 0, fmt.Errorf("file type %d: %w", b[0], fstree.ErrCorrupt)
}
