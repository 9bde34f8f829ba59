package exfat

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const fatPage = 4096

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
	return binary.LittleEndian.Uint32(page[off%fatPage:]), nil
}

// chain walks a FAT chain one cluster at a time. It stops a chain that
// cycles (Brent's algorithm: constant memory, found within a few times
// the length of the cycle) or runs longer than max clusters.
type chain struct {
	r     *Reader
	cur   uint32 // the cluster next returns; 0 at the end
	n     uint32 // clusters returned
	max   uint32
	what  string
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
	case nxt == fatEnd:
		c.cur = 0
		return cur, false, nil
	case nxt == fatBad:
		return 0, false, fmt.Errorf("%s: bad cluster %d in the chain: %w", c.what, cur, fstree.ErrCorrupt)
	case nxt == c.mark:
		return 0, false, fmt.Errorf("%s: cluster chain loops at %d: %w", c.what, nxt, fstree.ErrCorrupt)
	}
	if c.lam++; c.lam == c.power {
		c.mark, c.power, c.lam = nxt, c.power*2, 0
	}
	c.cur = nxt // checked when it is returned
	return cur, true, nil
}
