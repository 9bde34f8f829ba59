package exfat

import (
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
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

func (n *node) Meta() fstree.Meta {
	return fatchain.Meta(n.attr, int64(n.size), n.mtime, n.atime, n.btime)
}
