package xfs

import (
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// fileData reads a file through its block map: each extent is one read of
// the volume; holes and unwritten extents are zeros, read from nowhere.
type fileData struct {
	r  *Reader
	in *inode
	m  mapper
}

func (f *fileData) ReadAt(p []byte, off int64) (int, error) {
	p, eof := fstree.ClipRead(p, off, f.in.size)
	if len(p) == 0 {
		return 0, eof
	}
	if err := f.r.readMapped(f.in.ino, f.m, p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// readMapped fills p with the bytes at logical offset off of a fork mapped
// by m.
func (r *Reader) readMapped(ino uint64, m mapper, p []byte, off int64) error {
	log := r.sb.blockLog
	for done := 0; done < len(p); {
		pos := uint64(off) + uint64(done)
		lb := pos >> log
		e, ok, err := m.find(lb)
		if err != nil {
			return err
		}
		rest := p[done:]
		switch {
		case !ok || e.off > lb: // a hole, up to the next extent
			n := len(rest)
			if ok {
				n = int(min(uint64(n), r.sb.bytes(e.off)-pos))
			}
			clear(rest[:n])
			done += n
		default:
			n := int(min(uint64(len(rest)), r.sb.bytes(e.end())-pos))
			if e.unwritten {
				clear(rest[:n])
			} else {
				start, err := r.sb.blockOffset(e.block, e.count)
				if err != nil {
					return fmt.Errorf("inode %d: %w", ino, err)
				}
				if err := r.readAt(rest[:n], start+int64(pos-e.off<<log)); err != nil {
					return fmt.Errorf("inode %d: %w", ino, err)
				}
			}
			done += n
		}
	}
	return nil
}
