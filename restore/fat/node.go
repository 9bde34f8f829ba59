package fat

import (
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// node is a file or directory: what its directory entry says, and the
// directory it was found in, to catch directories that contain their own
// ancestors.
type node struct {
	attr                byte
	cluster             uint32
	size                uint32
	mtime, atime, btime time.Time
	root                bool
	parent              *node
}

func (n *node) isDir() bool { return n.attr&attrDir != 0 }

// Meta gives FAT's attributes and times. FAT has no owners nor
// permissions: files read as 0644 and directories as 0755, less the write
// bits when the read-only attribute is set.
func (n *node) Meta() fstree.Meta {
	m := fstree.Meta{
		Mode:       0o644,
		Size:       int64(n.size),
		Mtime:      n.mtime,
		Atime:      n.atime,
		Btime:      n.btime,
		Nlink:      1,
		Attributes: uint32(n.attr & attrMask),
	}
	if n.isDir() {
		m.Mode, m.Size = fs.ModeDir|0o755, 0
	}
	if n.attr&attrReadOnly != 0 {
		m.Mode &^= 0o222
	}
	return m
}
