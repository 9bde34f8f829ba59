package extfs

import (
	"container/list"
	"fmt"
	"io"
	"sync"
)

// cacheBytes bounds the metadata a Reader keeps: group descriptors, inode
// tables, extent and indirect blocks, small directories.
const cacheBytes = 4 << 20

// blockCache is an LRU of volume blocks. The blocks it hands out are shared
// and must not be written.
type blockCache struct {
	mu     sync.Mutex
	max    int
	lru    list.List // of *cachedBlock, most recent first
	blocks map[uint64]*list.Element
}

type cachedBlock struct {
	n    uint64
	data []byte
}

func newBlockCache(max int) *blockCache {
	return &blockCache{max: max, blocks: make(map[uint64]*list.Element)}
}

func (c *blockCache) get(n uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.blocks[n]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedBlock).data, true
}

func (c *blockCache) add(n uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.blocks[n]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.blocks[n] = c.lru.PushFront(&cachedBlock{n: n, data: data})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedBlock)
		delete(c.blocks, old.n)
	}
}

// block returns volume block n, from the cache when it is there.
func (r *Reader) block(n uint64) ([]byte, error) {
	if n >= r.limit {
		return nil, corrupt("block %d beyond the end (%d)", n, r.limit)
	}
	if b, ok := r.cache.get(n); ok {
		return b, nil
	}
	b := make([]byte, r.bs)
	if err := r.readAt(b, int64(n)*r.bs); err != nil {
		return nil, err
	}
	r.cache.add(n, b)
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
