package fatchain

import (
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Attributes that FAT's directory entries and exFAT's file entries share.
const (
	AttrReadOnly = 0x01
	AttrDir      = 0x10
	attrWindows  = 0x37 // the bits that are Windows file attributes
)

// Meta gives a file's attributes and times. Neither FAT nor exFAT has
// owners nor permissions: files read as 0644 and directories as 0755,
// less the write bits when the read-only attribute is set.
func Meta(attr uint16, size int64, mtime, atime, btime time.Time) fstree.Meta {
	m := fstree.Meta{
		Mode:       0o644,
		Size:       size,
		Mtime:      mtime,
		Atime:      atime,
		Btime:      btime,
		Nlink:      1,
		Attributes: uint32(attr & attrWindows),
	}
	if attr&AttrDir != 0 {
		m.Mode, m.Size = fs.ModeDir|0o755, 0
	}
	if attr&AttrReadOnly != 0 {
		m.Mode &^= 0o222
	}
	return m
}
