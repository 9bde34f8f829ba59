package extfs

import (
	"bytes"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// run is a stretch of a file's blocks that map alike: to consecutive
// volume blocks from phys, or, when zero, to nothing (a hole or an
// unwritten extent, which read as zeros).
type run struct {
	phys uint64
	n    uint64
	zero bool
}

// mapper finds where a file's logical blocks are.
type mapper interface {
	// mapBlock returns the run that starts at logical block lblk.
	mapBlock(lblk uint64) (run, error)
}

// mapper returns how inode n maps its blocks and how many logical blocks
// that mapping can address.
func (r *Reader) mapper(n *inode) (mapper, uint64) {
	if n.flags&flagExtents != 0 {
		return extentMapper{r: r, n: n}, 1 << 32
	}
	p := uint64(r.bs / 4)
	return blockMapper{r: r, n: n}, min(directBlocks+p+p*p+p*p*p, 1<<32)
}

// checkRun reports an error when a mapped run leaves the volume or covers
// the superblock.
func (r *Reader) checkRun(ino uint32, phys, n uint64) error {
	if phys <= uint64(r.sb.firstDataBlock) || phys >= r.limit || n > r.limit-phys {
		return corrupt("inode %d: blocks %d+%d outside the filesystem (%d blocks)", ino, phys, n, r.limit)
	}
	return nil
}

// contents returns a reader of a regular file's data.
func (r *Reader) contents(n *inode) (io.ReaderAt, error) {
	if n.flags&flagInlineData != 0 {
		data, err := r.inlineFile(n)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(data), nil
	}
	m, maxBlocks := r.mapper(n)
	if n.size > maxBlocks*uint64(r.bs) {
		return nil, corrupt("inode %d: size %d past the %d blocks its map can address", n.ino, n.size, maxBlocks)
	}
	return &fileReader{r: r, m: m, ino: n.ino, size: int64(n.size)}, nil
}

// fileReader reads a file through its block map. It reads the volume only
// for mapped blocks, one ReadAt per stretch of consecutive blocks.
type fileReader struct {
	r    *Reader
	m    mapper
	ino  uint32
	size int64
}

func (f *fileReader) ReadAt(p []byte, off int64) (int, error) {
	p, eof := fstree.ClipRead(p, off, f.size)
	if len(p) == 0 {
		return 0, eof
	}
	bs := f.r.bs
	for done := 0; done < len(p); {
		pos := off + int64(done)
		lblk := uint64(pos / bs)
		rn, err := f.m.mapBlock(lblk)
		if err != nil {
			return done, err
		}
		if rn.n == 0 { // a mapper bug, not the image's: never loop on it
			return done, fmt.Errorf("inode %d: empty run at block %d", f.ino, lblk)
		}
		in := pos % bs
		avail := uint64(len(p) - done)
		if rn.n < (avail+uint64(in)+uint64(bs)-1)/uint64(bs) {
			avail = rn.n*uint64(bs) - uint64(in)
		}
		chunk := p[done : done+int(avail)]
		if rn.zero {
			clear(chunk)
		} else if err := f.r.readAt(chunk, int64(rn.phys)*bs+in); err != nil {
			return done, fmt.Errorf("inode %d: %w", f.ino, err)
		}
		done += len(chunk)
	}
	return len(p), eof
}
