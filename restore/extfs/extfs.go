// Package extfs reads ext2, ext3 and ext4 filesystems straight from a
// volume, for file-level restore.
//
// It reads only what a request needs: the superblock when opened, then per
// file its group descriptor, its inode and the blocks that map its
// contents. Metadata blocks are cached; file data is not. Journal replay is
// not done: a volume that was in use when it was copied reads as the last
// checkpoint left it.
package extfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Reader is an ext2, ext3 or ext4 filesystem. It implements fstree.Reader
// and fstree.Lookuper and is safe for concurrent use.
type Reader struct {
	vol   io.ReaderAt
	sb    superblock
	bs    int64  // block size in bytes
	limit uint64 // first block number past both the filesystem and the volume
	// cache holds volume blocks by number. They are shared: none may be
	// written.
	cache *fstree.Cache[uint64, []byte]
	root  *inode
}

var (
	_ fstree.Reader   = (*Reader)(nil)
	_ fstree.Lookuper = (*Reader)(nil)
)

// rootIno is the inode of the root directory.
const rootIno = 2

// Open reads the filesystem on a volume of size bytes. It returns an error
// wrapping fstree.ErrUnrecognized when the volume holds no ext filesystem.
func Open(vol io.ReaderAt, size int64) (*Reader, error) {
	if size < superOffset+superSize {
		return nil, fmt.Errorf("ext: volume of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	buf := make([]byte, superSize)
	if _, err := vol.ReadAt(buf, superOffset); err != nil && err != io.EOF {
		return nil, fmt.Errorf("ext: read superblock: %w", err)
	}
	sb, err := parseSuperblock(buf)
	if err != nil {
		return nil, fmt.Errorf("ext: superblock: %w", err)
	}
	r := &Reader{vol: vol, sb: sb, bs: sb.blockSize()}
	r.limit = min(sb.blocksCount, uint64(size/r.bs))
	r.cache = fstree.NewCache[uint64, []byte](cacheBytes, 0)
	if r.root, err = r.inode(rootIno); err != nil {
		return nil, fmt.Errorf("ext: root directory: %w", err)
	}
	if !r.root.meta.Mode.IsDir() {
		return nil, fmt.Errorf("ext: root inode is %v, not a directory: %w", r.root.meta.Mode.Type(), fstree.ErrCorrupt)
	}
	return r, nil
}

// Type is "ext2", "ext3" or "ext4", as blkid names them: ext4 when the
// filesystem uses a feature ext3 lacks, else ext3 when it has a journal.
func (r *Reader) Type() string {
	const (
		ext3Incompat = incompatFiletype | incompatRecover | incompatMetaBG
		ext3ROCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir
	)
	switch {
	case r.sb.incompat&^ext3Incompat != 0 || r.sb.roCompat&^ext3ROCompat != 0:
		return "ext4"
	case r.sb.compat&compatHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// Label is the volume name.
func (r *Reader) Label() string { return r.sb.label }

// Root returns the root directory.
func (r *Reader) Root() (fstree.Node, error) { return r.root, nil }

// Contents returns a regular file's data.
func (r *Reader) Contents(file fstree.Node) (io.ReaderAt, error) {
	n, err := r.node(file)
	if err != nil {
		return nil, err
	}
	if !n.meta.Mode.IsRegular() {
		return nil, fmt.Errorf("inode %d is %v, not a regular file", n.ino, n.meta.Mode.Type())
	}
	if err := r.readable(n); err != nil {
		return nil, err
	}
	return r.contents(n)
}

// ReadLink returns a symlink's target.
func (r *Reader) ReadLink(link fstree.Node) (string, error) {
	n, err := r.node(link)
	if err != nil {
		return "", err
	}
	if n.meta.Mode.Type() != fs.ModeSymlink {
		return "", fmt.Errorf("inode %d is %v, not a symlink", n.ino, n.meta.Mode.Type())
	}
	if err := r.readable(n); err != nil {
		return "", err
	}
	return r.readLink(n)
}

// node returns the inode behind a node of this reader.
func (r *Reader) node(n fstree.Node) (*inode, error) {
	in, ok := n.(*inode)
	if !ok || in == nil {
		return nil, fmt.Errorf("ext: node %T is not from this reader", n)
	}
	return in, nil
}

// readable refuses the inodes whose data is transformed in a way this
// package does not undo.
func (r *Reader) readable(n *inode) error {
	switch {
	case n.flags&flagEncrypt != 0:
		return fmt.Errorf("inode %d is encrypted: %w", n.ino, errors.ErrUnsupported)
	case n.flags&flagCompressed != 0 && r.sb.incompat&incompatCompression != 0:
		return fmt.Errorf("inode %d is compressed: %w", n.ino, errors.ErrUnsupported)
	}
	return nil
}

// corrupt returns an error wrapping fstree.ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, fstree.ErrCorrupt)...)
}
