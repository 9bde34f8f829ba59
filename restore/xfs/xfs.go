// Package xfs reads XFS filesystems, version 4 and version 5 (CRC), from
// an io.ReaderAt, for file-level restore through fstree.
//
// It reads only what a request needs: the superblock, the inodes on the
// path, the extent tree blocks and directory blocks it walks, and the
// blocks of the file data asked for. The log is not replayed: a
// crash-consistent image is read as its metadata blocks stand. Metadata
// checksums are not verified; structures are checked for consistency
// instead (magics, owners, levels, ranges), which also catches damage the
// checksums could not, on version 4 filesystems.
package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Cache sizes: parsed inodes and metadata blocks (extent tree, directory
// and directory index blocks), by bytes held.
const (
	inodeCacheBytes = 2 << 20
	blockCacheBytes = 8 << 20
)

// Reader is an XFS filesystem. It implements fstree.Reader and
// fstree.Lookuper, and is safe for concurrent use.
type Reader struct {
	vol    io.ReaderAt
	sb     *super
	inodes *fstree.Cache[uint64, *inode]
	blocks *fstree.Cache[cacheKey, any]
}

var (
	_ fstree.Reader   = (*Reader)(nil)
	_ fstree.Lookuper = (*Reader)(nil)
)

// cacheKey names a cached metadata block: what it is, whose it is, and
// where.
type cacheKey struct {
	kind uint8
	ino  uint64
	n    uint64
}

const (
	kindBmbt     = iota // n is the filesystem block number
	kindDirBlock        // n is the directory block's logical block
)

// Open reads the superblock of the XFS filesystem on vol, a volume of size
// bytes.
func Open(vol io.ReaderAt, size int64) (*Reader, error) {
	b := make([]byte, 512)
	if size < int64(len(b)) {
		return nil, fmt.Errorf("xfs: volume of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	if n, err := vol.ReadAt(b, 0); n < len(b) {
		return nil, fmt.Errorf("xfs: read superblock: %w", err)
	}
	sb, err := parseSuper(b, size)
	if err != nil {
		return nil, err
	}
	return &Reader{
		vol:    vol,
		sb:     sb,
		inodes: fstree.NewCache[uint64, *inode](inodeCacheBytes, 0),
		blocks: fstree.NewCache[cacheKey, any](blockCacheBytes, 0),
	}, nil
}

// Type implements fstree.Reader.
func (r *Reader) Type() string { return "xfs" }

// Label implements fstree.Reader.
func (r *Reader) Label() string { return r.sb.label }

// Root implements fstree.Reader.
func (r *Reader) Root() (fstree.Node, error) {
	in, err := r.inode(r.sb.rootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs root: %w", err)
	}
	if !in.isDir() {
		return nil, fmt.Errorf("xfs root inode %d is not a directory: %w", in.ino, fstree.ErrCorrupt)
	}
	return in, nil
}

// readAt fills b from the volume at off.
func (r *Reader) readAt(b []byte, off int64) error {
	n, err := r.vol.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(b), off, err)
}

// inode loads inode ino, from the cache if it is there.
func (r *Reader) inode(ino uint64) (*inode, error) {
	if in, ok := r.inodes.Get(ino); ok {
		return in, nil
	}
	off, err := r.sb.inodeOffset(ino)
	if err != nil {
		return nil, err
	}
	b := make([]byte, r.sb.inodeSize)
	if err := r.readAt(b, off); err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	in, err := r.sb.parseInode(ino, b)
	if err != nil {
		return nil, err
	}
	r.inodes.Add(ino, in, int64(len(b)+64*len(in.extents)))
	return in, nil
}

// load returns an Entry's loader for inode ino.
func (r *Reader) load(ino uint64) func() (fstree.Node, error) {
	return func() (fstree.Node, error) {
		in, err := r.inode(ino)
		if err != nil {
			return nil, err
		}
		return in, nil
	}
}

func asInode(n fstree.Node) (*inode, error) {
	in, ok := n.(*inode)
	if !ok || in == nil {
		return nil, fmt.Errorf("xfs: node %T is not from this reader", n)
	}
	return in, nil
}

// mapper returns the block map of an inode's data fork.
func (r *Reader) mapper(in *inode) mapper {
	switch in.format {
	case formatExtents:
		return in.extents
	case formatBtree:
		return &btreeMap{r: r, ino: in.ino, root: in.root}
	}
	return noExtents{}
}

// Contents implements fstree.Reader.
func (r *Reader) Contents(n fstree.Node) (io.ReaderAt, error) {
	in, err := asInode(n)
	if err != nil {
		return nil, err
	}
	if in.mode&sIFMT != sIFREG {
		return nil, fmt.Errorf("inode %d is not a regular file", in.ino)
	}
	if in.flags&diflagRealtime != 0 {
		return nil, fmt.Errorf("inode %d: data on the realtime device is not supported", in.ino)
	}
	if in.format == formatLocal {
		return bytes.NewReader(in.fork[:in.size]), nil
	}
	return &fileData{r: r, in: in, m: r.mapper(in)}, nil
}

// ReadLink implements fstree.Reader.
func (r *Reader) ReadLink(n fstree.Node) (string, error) {
	in, err := asInode(n)
	if err != nil {
		return "", err
	}
	if in.mode&sIFMT != sIFLNK {
		return "", errors.New("xfs: not a symlink")
	}
	return r.readLink(in)
}
