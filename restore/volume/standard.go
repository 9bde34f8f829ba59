package volume

import (
	"io"

	"github.com/bulwarkbackup/bulwark/restore/exfat"
	"github.com/bulwarkbackup/bulwark/restore/extfs"
	"github.com/bulwarkbackup/bulwark/restore/fat"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/ntfs"
	"github.com/bulwarkbackup/bulwark/restore/xfs"
)

// Standard lists the filesystems Bulwark reads, in the order a volume is
// probed: those with strong signatures first, FAT (whose boot sector has
// no magic of its own) last.
func Standard() []Filesystem {
	return []Filesystem{
		{Name: "ext", Open: adapt(extfs.Open)},
		{Name: "xfs", Open: adapt(xfs.Open)},
		{Name: "ntfs", Open: adapt(ntfs.Open)},
		{Name: "exfat", Open: adapt(exfat.Open)},
		{Name: "fat", Open: adapt(fat.Open)},
	}
}

// adapt turns a reader package's Open into Filesystem.Open.
func adapt[R fstree.Reader](open func(io.ReaderAt, int64) (R, error)) func(io.ReaderAt, int64) (fstree.Reader, error) {
	return func(r io.ReaderAt, size int64) (fstree.Reader, error) {
		fr, err := open(r, size)
		if err != nil {
			return nil, err
		}
		return fr, nil
	}
}
