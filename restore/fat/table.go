package fat

import (
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// fatByte returns byte off of the FAT in use.
func (r *Reader) fatByte(off int64) (byte, error) {
	if off < 0 || off >= r.vol.fatSize {
		return 0, fmt.Errorf("FAT offset %d of %d: %w", off, r.vol.fatSize, fstree.ErrCorrupt)
	}
	b, err := r.fat.Bytes(off)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// next returns the FAT entry of cluster c: the cluster that follows it,
// or a value at or above eoc.
func (r *Reader) next(c uint32) (uint32, error) {
	var off int64
	switch r.vol.bits {
	case 12:
		off = int64(c) + int64(c)/2
	case 16:
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	var v uint32
	for i := range max(r.vol.bits/8, 2) {
		b, err := r.fatByte(off + int64(i))
		if err != nil {
			return 0, err
		}
		v |= uint32(b) << (8 * i)
	}
	switch r.vol.bits {
	case 12:
		// Two 12-bit entries share three bytes: an odd cluster has the
		// high 12 bits of its pair.
		if c&1 != 0 {
			v >>= 4
		}
		v &= 0xFFF
	case 32:
		v &= 0x0FFFFFFF // the top four bits are reserved
	}
	return v, nil
}

// eoc is the least FAT value that ends a chain; the value below it marks
// a bad cluster.
func (v *volume) eoc() uint32 {
	switch v.bits {
	case 12:
		return 0xFF8
	case 16:
		return 0xFFF8
	}
	return 0x0FFFFFF8
}

// link follows cluster c in the FAT.
func (r *Reader) link(c uint32) (uint32, bool, error) {
	nxt, err := r.next(c)
	if err != nil {
		return 0, false, err
	}
	switch eoc := r.vol.eoc(); {
	case nxt >= eoc:
		return 0, true, nil
	case nxt == eoc-1:
		return 0, false, fmt.Errorf("bad cluster %d in the chain: %w", c, fstree.ErrCorrupt)
	case nxt < 2:
		return 0, false, fmt.Errorf("cluster %d links to %d: %w", c, nxt, fstree.ErrCorrupt)
	}
	return nxt, false, nil
}
