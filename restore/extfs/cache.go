package extfs

import (
	"fmt"
	"io"
)

// cacheBytes bounds the metadata a Reader keeps: group descriptors, inode
// tables, extent and indirect blocks, small directories.
const cacheBytes = 4 << 20

// block returns volume block n, from the cache when it is there.
func (r *Reader) block(n uint64) ([]byte, error) {
	if n >= r.limit {
		return nil, corrupt("block %d beyond the end (%d)", n, r.limit)
	}
	if b, ok := r.cache.Get(n); ok {
		return b, nil
	}
	b := make([]byte, r.bs)
	if err := r.readAt(b, int64(n)*r.bs); err != nil {
		return nil, err
	}
	r.cache.Add(n, b, int64(len(b)))
	return b, nil
}

// readAt fills p from the volume. The callers have checked that the range
// lies inside it, so a short read means the volume shrank under us.
func (r *Reader) readAt(p []byte, off int64) error {
	n, err := r.vol.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}
