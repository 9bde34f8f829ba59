package files

import (
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// fileMeta is the metadata that restores and archives keep, from
// fstree.Meta when the filesystem is a reader's, else from the host's stat.
type fileMeta struct {
	id       fileID
	hasID    bool
	nlink    uint64
	uid, gid uint32
	hasOwner bool
	mtime    time.Time
	atime    time.Time // zero when unknown
	ctime    time.Time // zero when unknown
}

// fileID identifies a file within the filesystems walked: hard links and
// a directory met again below itself share it.
type fileID struct{ dev, ino uint64 }

func metaOf(info fs.FileInfo) fileMeta {
	m := fileMeta{mtime: info.ModTime()}
	if fm, ok := fstree.MetaOf(info); ok {
		m.atime, m.ctime = fm.Atime, fm.Ctime
		if fm.Inode != 0 {
			m.id, m.hasID = fileID{dev: 0, ino: fm.Inode}, true
		}
		m.nlink = uint64(fm.Nlink)
		m.uid, m.gid, m.hasOwner = fm.UID, fm.GID, fm.HasOwner
		return m
	}
	hostMeta(info, &m)
	return m
}

// linked reports whether a regular file may have other names in the tree.
func (m *fileMeta) linked() bool { return m.hasID && m.nlink > 1 }

// specialBits are the mode bits that mean something only with the owner.
const specialBits = fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
