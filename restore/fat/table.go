package fat

import (
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const fatPage = 4096

// fatByte returns byte off of the FAT in use, through the page cache.
func (r *Reader) fatByte(off int64) (byte, error) {
	if off < 0 || off >= r.vol.fatSize {
		return 0, fmt.Errorf("FAT offset %d of %d: %w", off, r.vol.fatSize, fstree.ErrCorrupt)
	}
	idx := off / fatPage
	page, ok := r.fat.get(idx)
	if !ok {
		page = make([]byte, min(fatPage, r.vol.fatSize-idx*fatPage))
		n, err := r.dev.ReadAt(page, r.vol.fatOffset+idx*fatPage)
		if n < len(page) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read FAT at %d: %w", off, err)
		}
		r.fat.add(idx, page, 1)
	}
	return page[off%fatPage], nil
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

// chain walks a cluster chain one cluster at a time. It stops a chain
// that cycles (Brent's algorithm: constant memory, found within a few
// times the length of the cycle) or runs longer than max clusters.
type chain struct {
	r     *Reader
	cur   uint32 // the cluster next returns; 0 at the end
	n     uint32 // clusters returned
	max   uint32
	what  string // for errors: "file at cluster 5"
	power uint32
	lam   uint32
	mark  uint32
}

func (r *Reader) chain(first, max uint32, what string) *chain {
	return &chain{r: r, cur: first, max: max, what: what, power: 1, mark: first}
}

// next returns the chain's next cluster, and whether another follows it.
// At the end it returns 0.
func (c *chain) next() (cluster uint32, more bool, err error) {
	cur := c.cur
	if cur == 0 {
		return 0, false, nil
	}
	v := &c.r.vol
	if !v.valid(cur) {
		return 0, false, fmt.Errorf("%s: cluster %d after %d beyond the %d of the volume: %w", c.what, cur, c.n, v.clusters, fstree.ErrCorrupt)
	}
	if c.n++; c.n > c.max {
		return 0, false, fmt.Errorf("%s: chain longer than %d clusters: %w", c.what, c.max, fstree.ErrCorrupt)
	}
	nxt, err := c.r.next(cur)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", c.what, err)
	}
	switch {
	case nxt >= v.eoc():
		c.cur = 0
		return cur, false, nil
	case nxt == v.eoc()-1:
		return 0, false, fmt.Errorf("%s: bad cluster %d in the chain: %w", c.what, cur, fstree.ErrCorrupt)
	case nxt < 2:
		return 0, false, fmt.Errorf("%s: cluster %d links to %d: %w", c.what, cur, nxt, fstree.ErrCorrupt)
	case nxt == c.mark:
		return 0, false, fmt.Errorf("%s: cluster chain loops at %d: %w", c.what, nxt, fstree.ErrCorrupt)
	}
	if c.lam++; c.lam == c.power {
		c.mark, c.power, c.lam = nxt, c.power*2, 0
	}
	c.cur = nxt
	return cur, true, nil
}
