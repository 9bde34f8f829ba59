package extfs

import (
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// readLink returns a symlink's target: inline data, or in i_block for a
// fast symlink, or in the symlink's one data block.
func (r *Reader) readLink(n *inode) (string, error) {
	if n.size == 0 || n.size > fstree.MaxPath || n.size > uint64(r.bs) {
		return "", corrupt("symlink inode %d: size %d", n.ino, n.size)
	}
	if n.flags&flagInlineData != 0 {
		data, err := r.inlineFile(n)
		return string(data), err
	}
	if r.fastSymlink(n) {
		if n.size >= uint64(len(n.block)) {
			return "", corrupt("fast symlink inode %d: size %d", n.ino, n.size)
		}
		return string(n.block[:n.size]), nil
	}
	ra, err := r.contents(n)
	if err != nil {
		return "", err
	}
	buf := make([]byte, n.size)
	if _, err := ra.ReadAt(buf, 0); err != nil {
		return "", fmt.Errorf("symlink inode %d: %w", n.ino, err)
	}
	return string(buf), nil
}

// fastSymlink reports whether a symlink keeps its target in i_block, as
// Linux decides it: when the symlink owns no blocks but its attribute block.
func (r *Reader) fastSymlink(n *inode) bool {
	sectors := n.blocks
	if r.sb.roCompat&roCompatHugeFile != 0 && n.flags&flagHugeFile != 0 {
		sectors *= uint64(r.bs / 512)
	}
	if n.fileACL != 0 {
		cluster := uint64(r.bs)
		if r.sb.roCompat&roCompatBigalloc != 0 {
			cluster = 1024 << min(r.sb.logClusterSize, 32)
		}
		sectors -= min(sectors, cluster/512)
	}
	return sectors == 0
}
