package chunkstore

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// chunkCache keeps recently read chunks, least recently used out first, and
// makes concurrent readers of one chunk share a single load.
type chunkCache struct {
	max int64

	mu      sync.Mutex
	size    int64
	lru     *list.List // of *cacheEntry, front most recent
	entries map[blob.ID]*cacheEntry
}

type cacheEntry struct {
	id    blob.ID
	data  []byte
	err   error
	ready chan struct{}
	elem  *list.Element
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, lru: list.New(), entries: make(map[blob.ID]*cacheEntry)}
}

// get returns the chunk, loading it with load unless cached or loading.
func (c *chunkCache) get(ctx context.Context, id blob.ID, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
			return e.data, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := &cacheEntry{id: id, ready: make(chan struct{})}
	c.entries[id] = e
	c.mu.Unlock()

	e.data, e.err = load()
	close(e.ready)

	c.mu.Lock()
	defer c.mu.Unlock()
	if e.err != nil {
		delete(c.entries, id) // the next reader tries again
		return nil, e.err
	}
	e.elem = c.lru.PushFront(e)
	c.size += int64(len(e.data))
	for c.size > c.max && c.lru.Len() > 1 {
		old := c.lru.Remove(c.lru.Back()).(*cacheEntry)
		delete(c.entries, old.id)
		c.size -= int64(len(old.data))
	}
	return e.data, nil
}

// chunk returns a data chunk's plaintext through the cache.
func (s *Store) chunk(ctx context.Context, id blob.ID) ([]byte, error) {
	return s.cache.get(ctx, id, func() ([]byte, error) { return s.loadBlob(ctx, id) })
}

// DiskReader reads a disk of a point. It is an io.ReaderAt, safe for
// concurrent use, that loads only the chunks a read touches, and reads
// ahead when reads are sequential.
type DiskReader struct {
	s       *Store
	ctx     context.Context
	point   blob.ID
	disk    Disk
	extents []diskmap.Extent

	mu      sync.Mutex
	lastEnd int64
	ahead   chan struct{} // bounds read-ahead loads
}

// readAhead is how many chunks a sequential reader loads ahead of itself.
const readAhead = 8

// OpenDisk returns a reader of one disk of a point. ctx bounds its reads.
func (s *Store) OpenDisk(ctx context.Context, point blob.ID, disk int) (*DiskReader, error) {
	p, err := s.LoadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	d, err := p.Disk(disk)
	if err != nil {
		return nil, err
	}
	extents, err := s.loadMap(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("point %s: %w", point.Short(), err)
	}
	return &DiskReader{s: s, ctx: ctx, point: point, disk: *d, extents: extents,
		ahead: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// Size is the disk's capacity.
func (r *DiskReader) Size() int64 { return r.disk.Capacity }

// Disk describes the disk.
func (r *DiskReader) Disk() Disk { return r.disk }

// Extents returns the disk's map; bytes outside every extent are zero.
func (r *DiskReader) Extents() []diskmap.Extent { return r.extents }

// ReadAt implements io.ReaderAt.
func (r *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= r.disk.Capacity {
		return 0, io.EOF
	}
	var err error
	if rem := r.disk.Capacity - off; int64(len(p)) > rem {
		p, err = p[:rem], io.EOF
	}
	r.mu.Lock()
	sequential := off == r.lastEnd
	r.lastEnd = off + int64(len(p))
	r.mu.Unlock()

	i := diskmap.Find(r.extents, off)
	if sequential {
		r.prefetch(i)
	}
	pos := off
	end := off + int64(len(p))
	for pos < end {
		if i >= len(r.extents) || r.extents[i].Offset >= end {
			clear(p[pos-off:])
			break
		}
		e := r.extents[i]
		if e.Offset > pos {
			clear(p[pos-off : e.Offset-off])
			pos = e.Offset
		}
		data, lerr := r.s.chunk(r.ctx, e.ID)
		if lerr != nil {
			return int(pos - off), fmt.Errorf("point %s disk %d at offset %d: %w", r.point.Short(), r.disk.Index, pos, lerr)
		}
		if int64(len(data)) != e.Length {
			return int(pos - off), fmt.Errorf("point %s disk %d at offset %d: chunk %s has %d bytes, map says %d", r.point.Short(), r.disk.Index, e.Offset, e.ID.Short(), len(data), e.Length)
		}
		n := copy(p[pos-off:], data[pos-e.Offset:])
		pos += int64(n)
		i++
	}
	return len(p), err
}

// prefetch loads the chunks after extent i in the background, as many at a
// time as there are cores.
func (r *DiskReader) prefetch(i int) {
	for j := i + 1; j < min(i+1+readAhead, len(r.extents)); j++ {
		select {
		case r.ahead <- struct{}{}:
		default:
			return // enough loads under way
		}
		id := r.extents[j].ID
		go func() {
			defer func() { <-r.ahead }()
			_, _ = r.s.chunk(r.ctx, id)
		}()
	}
}
