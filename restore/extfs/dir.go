package extfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const (
	// maxDirSize bounds the directories this package reads whole: a
	// hostile image may claim any size and map every block to the same
	// few. Larger ones can still be searched through their htree.
	maxDirSize = 256 << 20
	// maxDirEntries bounds the entries of one listing, and so its memory.
	maxDirEntries = 2 << 20
	// smallDirBlocks is the size up to which directory blocks go through
	// the block cache; larger directories are read in long stretches.
	smallDirBlocks = 16
	// maxReadBytes bounds one read of a large directory.
	maxReadBytes = 1 << 20
)

// Directory entry file types, with the filetype feature.
const (
	ftUnknown = iota
	ftRegular
	ftDir
	ftCharDev
	ftBlockDev
	ftFIFO
	ftSocket
	ftSymlink
)

// dirent is one live entry of a directory block.
type dirent struct {
	ino   uint32
	name  string
	ftype uint8
}

// ReadDir lists a directory.
func (r *Reader) ReadDir(dir fstree.Node) ([]fstree.Entry, error) {
	n, err := r.dirNode(dir)
	if err != nil {
		return nil, err
	}
	var out []fstree.Entry
	var subdirs map[uint32]bool // with the filetype feature: each subdirectory once
	if r.sb.incompat&incompatFiletype != 0 {
		subdirs = make(map[uint32]bool)
	}
	err = r.scanDir(n, func(d dirent) (bool, error) {
		if len(out) >= maxDirEntries {
			return true, fmt.Errorf("directory inode %d: more than %d entries to list: %w", n.ino, maxDirEntries, errors.ErrUnsupported)
		}
		if subdirs != nil && d.ftype == ftDir {
			// A directory listed twice makes the tree a graph whose walk
			// grows exponentially with depth.
			if subdirs[d.ino] {
				return true, corrupt("directory inode %d lists directory inode %d twice", n.ino, d.ino)
			}
			subdirs[d.ino] = true
		}
		out = append(out, r.entry(n, d))
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Lookup finds one name in a directory, through its htree index when it
// has one.
func (r *Reader) Lookup(dir fstree.Node, name string) (fstree.Entry, bool, error) {
	n, err := r.dirNode(dir)
	if err != nil {
		return fstree.Entry{}, false, err
	}
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fstree.Entry{}, false, nil
	}
	lookup := r.linearLookup
	if r.indexed(n) {
		lookup = r.htreeLookup
	}
	d, found, err := lookup(n, name)
	if err != nil || !found {
		return fstree.Entry{}, false, err
	}
	return r.entry(n, d), true, nil
}

func (r *Reader) dirNode(dir fstree.Node) (*inode, error) {
	n, err := r.node(dir)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, fmt.Errorf("inode %d is %v, not a directory", n.ino, n.meta.Mode.Type())
	}
	if n.flags&flagEncrypt != 0 {
		return nil, fmt.Errorf("directory inode %d is encrypted: %w", n.ino, errors.ErrUnsupported)
	}
	return n, nil
}

// entry makes the fstree entry of a directory entry of dir.
func (r *Reader) entry(dir *inode, d dirent) fstree.Entry {
	e := fstree.Entry{Name: d.name, Load: func() (fstree.Node, error) { return r.child(dir, d) }}
	if r.sb.incompat&incompatFiletype != 0 {
		e.Type = direntType(d.ftype)
	}
	return e
}

// child loads the inode that entry d of dir names, and checks it against
// the entry: the same type, and for a directory, dir as its parent. Since
// every directory then has one parent, the tree has no cycles.
func (r *Reader) child(dir *inode, d dirent) (fstree.Node, error) {
	n, err := r.inode(d.ino)
	if err != nil {
		return nil, fmt.Errorf("entry %q of directory inode %d: %w", d.name, dir.ino, err)
	}
	if r.sb.incompat&incompatFiletype != 0 &&
		(d.ftype == ftUnknown || d.ftype > ftSymlink || direntType(d.ftype) != n.meta.Mode.Type()) {
		return nil, corrupt("entry %q of directory inode %d: type %d, but inode %d is %v", d.name, dir.ino, d.ftype, d.ino, n.meta.Mode.Type())
	}
	if n.isDir() {
		if n.ino == dir.ino {
			return nil, corrupt("entry %q of directory inode %d is the directory itself", d.name, dir.ino)
		}
		parent, err := r.dotdot(n)
		if err != nil {
			return nil, err
		}
		if parent != dir.ino {
			return nil, corrupt("directory inode %d: entry %q of directory inode %d, but its parent is inode %d", n.ino, d.name, dir.ino, parent)
		}
	}
	return n, nil
}

// dotdot returns the inode of a directory's parent, as its ".." says.
func (r *Reader) dotdot(n *inode) (uint32, error) {
	if n.flags&flagInlineData != 0 {
		return binary.LittleEndian.Uint32(n.block[:]), nil
	}
	b, err := r.dirBlock(n, 0)
	if err != nil {
		return 0, err
	}
	var parent uint32
	i := 0
	_, err = r.parseDirBlock(n, 0, b, true, func(d dirent) (bool, error) {
		switch {
		case i == 0 && d.name == ".":
		case i == 1 && d.name == "..":
			parent = d.ino
			return true, nil
		default:
			return true, corrupt("directory inode %d does not begin with . and ..", n.ino)
		}
		i++
		return false, nil
	})
	if err == nil && parent == 0 {
		err = corrupt("directory inode %d has no .. entry", n.ino)
	}
	return parent, err
}

// dirBlock returns logical block lblk of a directory, through the cache.
func (r *Reader) dirBlock(n *inode, lblk uint64) ([]byte, error) {
	if lblk*uint64(r.bs) >= n.size {
		return nil, corrupt("directory inode %d: block %d past its size %d", n.ino, lblk, n.size)
	}
	m, _ := r.mapper(n)
	rn, err := m.mapBlock(lblk)
	if err != nil {
		return nil, err
	}
	if rn.zero {
		return nil, corrupt("directory inode %d: block %d is a hole", n.ino, lblk)
	}
	return r.block(rn.phys)
}

// scanDir calls fn with each live entry of a directory but "." and "..",
// until fn says to stop.
func (r *Reader) scanDir(n *inode, fn func(dirent) (stop bool, err error)) error {
	if n.flags&flagInlineData != 0 {
		// i_block holds the parent's inode number, then entries; the
		// system.data attribute holds more entries.
		stop, err := r.parseDirBlock(n, 0, n.block[4:], false, fn)
		if stop || err != nil {
			return err
		}
		ea, err := r.inlineEA(n)
		if err != nil || len(ea) == 0 {
			return err
		}
		_, err = r.parseDirBlock(n, 1, ea, false, fn)
		return err
	}
	if n.size > r.limit*uint64(r.bs) {
		return corrupt("directory inode %d: size %d past the end of the volume", n.ino, n.size)
	}
	if n.size > maxDirSize {
		return fmt.Errorf("directory inode %d: %d bytes to read: %w", n.ino, n.size, errors.ErrUnsupported)
	}
	m, _ := r.mapper(n)
	bs := uint64(r.bs)
	nblocks := (n.size + bs - 1) / bs
	var buf []byte
	for lblk := uint64(0); lblk < nblocks; {
		rn, err := m.mapBlock(lblk)
		if err != nil {
			return err
		}
		count := min(rn.n, nblocks-lblk)
		if rn.zero { // Linux allows holes in directories: nothing there
			lblk += count
			continue
		}
		for i := uint64(0); i < count; {
			// Small directories are read block by block through the
			// cache, large ones in long reads past it.
			k := uint64(1)
			var data []byte
			if nblocks <= smallDirBlocks {
				if data, err = r.block(rn.phys + i); err != nil {
					return err
				}
			} else {
				k = min(count-i, maxReadBytes/bs)
				if buf == nil {
					buf = make([]byte, min(nblocks, maxReadBytes/bs)*bs)
				}
				data = buf[:k*bs]
				if err := r.readAt(data, int64((rn.phys+i)*bs)); err != nil {
					return fmt.Errorf("directory inode %d: %w", n.ino, err)
				}
			}
			for j := range k {
				stop, err := r.parseDirBlock(n, lblk+i+j, data[j*bs:(j+1)*bs], false, fn)
				if stop || err != nil {
					return err
				}
			}
			i += k
		}
		lblk += count
	}
	return nil
}

// parseDirBlock calls fn with each live entry of one directory block (or
// inline area), "." and ".." included only when dots is set.
func (r *Reader) parseDirBlock(n *inode, lblk uint64, b []byte, dots bool, fn func(dirent) (bool, error)) (stop bool, err error) {
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return true, corrupt("directory inode %d, block %d: entry at %d cut short", n.ino, lblk, off)
		}
		e := b[off:]
		ino := le.Uint32(e)
		recLen := r.recLen(le.Uint16(e[4:]))
		nameLen := int(e[6])
		ftype := e[7]
		if r.sb.incompat&incompatFiletype == 0 {
			ftype = ftUnknown
		} else if r.sb.incompat&incompatDirData != 0 {
			ftype &= 0xf // the high bits say what data follows the name
		}
		if recLen < 8 || recLen%4 != 0 || recLen < (8+nameLen+3)&^3 || recLen > len(b)-off {
			return true, corrupt("directory inode %d, block %d: entry at %d of length %d", n.ino, lblk, off, recLen)
		}
		off += recLen
		if ino == 0 { // unused, or a checksum tail or an htree node
			continue
		}
		if ino > r.sb.inodesCount || nameLen == 0 {
			return true, corrupt("directory inode %d, block %d: entry for inode %d with a name of %d bytes", n.ino, lblk, ino, nameLen)
		}
		name := e[8 : 8+nameLen]
		if !dots && (string(name) == "." || string(name) == "..") {
			continue
		}
		if stop, err := fn(dirent{ino: ino, name: string(name), ftype: ftype}); stop || err != nil {
			return true, err
		}
	}
	return false, nil
}

// recLen decodes a directory entry's length: 64 KiB blocks store a length
// of 65536 as 65535 (or 0) and use the low bits for bits 16 and 17.
func (r *Reader) recLen(v uint16) int {
	if r.bs < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return 65536
	}
	return int(v&65532) | int(v&3)<<16
}

// direntType converts a directory entry's file type to fs.FileMode bits.
func direntType(t uint8) fs.FileMode {
	switch t {
	case ftDir:
		return fs.ModeDir
	case ftCharDev:
		return fs.ModeDevice | fs.ModeCharDevice
	case ftBlockDev:
		return fs.ModeDevice
	case ftFIFO:
		return fs.ModeNamedPipe
	case ftSocket:
		return fs.ModeSocket
	case ftSymlink:
		return fs.ModeSymlink
	}
	return 0
}
