package exfat

import (
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Stream extension flags.
const flagNoFatChain = 0x02 // the clusters are contiguous and not in the FAT

// node is a file or directory: what its entry set says, and the directory
// it was found in, to catch directories that contain their own ancestors.
type node struct {
	attr                uint16
	flags               byte
	first               uint32
	valid, size         uint64
	mtime, atime, btime time.Time
	root                bool
	parent              *node
}

func (n *node) isDir() bool { return n.attr&attrDir != 0 }

// Meta gives exFAT's attributes and times. exFAT has no owners nor
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
		Attributes: uint32(n.attr & 0x37),
	}
	if n.isDir() {
		m.Mode, m.Size = fs.ModeDir|0o755, 0
	}
	if n.attr&attrReadOnly != 0 {
		m.Mode &^= 0o222
	}
	return m
}
