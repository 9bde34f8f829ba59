package exfat

import (
	"encoding/binary"
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// FAT entries that are not cluster numbers.
const (
	fatBad = 0xFFFFFFF7
	fatEnd = 0xFFFFFFFF
)

// next returns the FAT entry of cluster c.
func (r *Reader) next(c uint32) (uint32, error) {
	off := int64(c) * 4
	if off+4 > r.vol.fatSize {
		return 0, fmt.Errorf("FAT entry %d beyond the FAT: %w", c, fstree.ErrCorrupt)
	}
	b, err := r.fat.Bytes(off)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// link follows cluster c in the FAT. A free cluster (0) ends the chain
// early, which the file's length, or a directory's end marker, catches.
func (r *Reader) link(c uint32) (uint32, bool, error) {
	nxt, err := r.next(c)
	if err != nil {
		return 0, false, err
	}
	switch nxt {
	case fatEnd:
		return 0, true, nil
	case fatBad:
		return 0, false, fmt.Errorf("bad cluster %d in the chain: %w", c, fstree.ErrCorrupt)
	}
	return nxt, false, nil
}
