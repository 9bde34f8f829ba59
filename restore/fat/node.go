package fat

import (
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
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

func (n *node) Meta() fstree.Meta {
	return fatchain.Meta(uint16(n.attr), int64(n.size), n.mtime, n.atime, n.btime)
}
