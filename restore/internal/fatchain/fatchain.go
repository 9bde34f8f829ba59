// Package fatchain follows cluster chains through a file allocation
// table, for the FAT and exFAT readers: reading the table a page at a
// time, walking a chain without being caught in a loop, and mapping a
// file's clusters to the volume's as far as its reads need.
//
// The two filesystems differ in what a FAT entry says beyond "the next
// cluster": which values end a chain or mark a bad cluster, and whether a
// free one is an error. Each reader says that in its Link.
package fatchain

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// PageSize is the unit in which a Table reads and caches the FAT.
const PageSize = 4096

// cachedPages bounds the pages a Table keeps.
const cachedPages = 64

// Table reads a FAT through a cache of its pages, because a walk reads
// its entries one at a time. It is safe for concurrent use.
type Table struct {
	dev    io.ReaderAt
	offset int64 // where the FAT starts on dev
	size   int64
	pages  *fstree.Cache[int64, []byte]
}

// NewTable returns a Table for the FAT of size bytes at offset of dev.
func NewTable(dev io.ReaderAt, offset, size int64) *Table {
	return &Table{dev: dev, offset: offset, size: size, pages: fstree.NewCache[int64, []byte](0, cachedPages)}
}

// Bytes returns the FAT's bytes from off, which the caller has checked
// lies inside it, to the end of the page that holds off.
func (t *Table) Bytes(off int64) ([]byte, error) {
	idx := off / PageSize
	page, ok := t.pages.Get(idx)
	if !ok {
		page = make([]byte, min(PageSize, t.size-idx*PageSize))
		n, err := t.dev.ReadAt(page, t.offset+idx*PageSize)
		if n < len(page) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read FAT at %d: %w", off, err)
		}
		t.pages.Add(idx, page, int64(len(page)))
	}
	return page[off%PageSize:], nil
}

// Link follows cluster c in the FAT: it returns the cluster after c, or
// end when c is the last of its chain. A value that is neither, such as
// a bad cluster, is an error.
type Link func(c uint32) (next uint32, end bool, err error)

// Volume is what the walk and the reads of a volume's clusters need.
type Volume struct {
	Dev         io.ReaderAt
	ClusterSize int64
	Heap        int64  // where cluster 2 starts on Dev
	Clusters    uint32 // numbered from 2 to Clusters+1
	Link        Link
}

func (v *Volume) valid(c uint32) bool { return c >= 2 && c-2 < v.Clusters }

func (v *Volume) offset(c uint32) int64 { return v.Heap + int64(c-2)*v.ClusterSize }

// Chain walks a cluster chain one cluster at a time. It stops a chain
// that cycles (Brent's algorithm: constant memory, found within a few
// times the length of the cycle) or runs longer than max clusters.
type Chain struct {
	v     *Volume
	cur   uint32 // the cluster Next returns; 0 at the end
	n     uint32 // clusters returned
	max   uint32
	what  string // for errors: "file at cluster 5"
	power uint32
	lam   uint32
	mark  uint32
}

// NewChain returns a walk of the chain from cluster first.
func (v *Volume) NewChain(first, max uint32, what string) *Chain {
	return &Chain{v: v, cur: first, max: max, what: what, power: 1, mark: first}
}

// Next returns the chain's next cluster, and whether another follows it.
// At the end it returns 0.
func (c *Chain) Next() (cluster uint32, more bool, err error) {
	cur := c.cur
	if cur == 0 {
		return 0, false, nil
	}
	if !c.v.valid(cur) {
		return 0, false, fmt.Errorf("%s: cluster %d after %d beyond the %d of the volume: %w", c.what, cur, c.n, c.v.Clusters, fstree.ErrCorrupt)
	}
	if c.n++; c.n > c.max {
		return 0, false, fmt.Errorf("%s: chain longer than %d clusters: %w", c.what, c.max, fstree.ErrCorrupt)
	}
	nxt, end, err := c.v.Link(cur)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", c.what, err)
	}
	if end {
		c.cur = 0
		return cur, false, nil
	}
	if nxt == c.mark {
		return 0, false, fmt.Errorf("%s: cluster chain loops at %d: %w", c.what, nxt, fstree.ErrCorrupt)
	}
	if c.lam++; c.lam == c.power {
		c.mark, c.power, c.lam = nxt, c.power*2, 0
	}
	c.cur = nxt // checked when it is returned
	return cur, true, nil
}

// ErrEnd is the end of a Map's data.
var ErrEnd = errors.New("end of chain")

// Map maps the cluster indexes of a file's (or a directory's) data to the
// volume. Contiguous data is one run; otherwise the chain is walked only
// as far as a read needs, and what was walked is kept as runs of
// contiguous clusters. It is safe for concurrent use.
type Map struct {
	v     *Volume
	what  string
	first uint32
	want  uint32 // clusters of the data; for an open chain, the most it may have
	// open: the chain's end, not its length, ends the data (a root
	// directory has no length).
	open bool

	mu    sync.Mutex
	chain *Chain // nil for contiguous data
	runs  []run
	err   error // from walking the chain, for every later read
}

// run is n clusters from the data's cluster index start, stored
// contiguously from cluster disk.
type run struct {
	start, disk, n uint32
}

// Contiguous maps want clusters from first, which the caller has checked
// lie inside the volume.
func (v *Volume) Contiguous(first, want uint32, what string) *Map {
	return &Map{v: v, what: what, first: first, want: want}
}

// Chained maps the chain from first: want clusters long, or, if open, as
// long as it is up to want.
func (v *Volume) Chained(first, want uint32, open bool, what string) *Map {
	return &Map{v: v, what: what, first: first, want: want, open: open, chain: v.NewChain(first, want, what)}
}

// What says what the data is, for errors.
func (m *Map) What() string { return m.what }

// Locate returns the volume cluster of the data's cluster idx, and how
// many clusters follow it contiguously.
func (m *Map) Locate(idx uint32) (disk, n uint32, err error) {
	if idx >= m.want {
		return 0, 0, ErrEnd
	}
	if m.chain == nil {
		return m.first + idx, m.want - idx, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.err == nil && m.walked() <= idx {
		m.err = m.step()
	}
	if m.err != nil && m.walked() <= idx {
		return 0, 0, m.err
	}
	i := sort.Search(len(m.runs), func(i int) bool { return m.runs[i].start+m.runs[i].n > idx })
	ru := m.runs[i]
	return ru.disk + idx - ru.start, ru.n - (idx - ru.start), nil
}

func (m *Map) walked() uint32 {
	if len(m.runs) == 0 {
		return 0
	}
	last := m.runs[len(m.runs)-1]
	return last.start + last.n
}

// step adds the chain's next cluster to the runs.
func (m *Map) step() error {
	c, more, err := m.chain.Next()
	if err != nil {
		return err
	}
	idx := m.walked()
	if c == 0 {
		if m.open {
			return ErrEnd
		}
		return fmt.Errorf("%s: chain of %d clusters, short of %d: %w", m.what, idx, m.want, fstree.ErrCorrupt)
	}
	if !m.open && idx+1 == m.want && more {
		return fmt.Errorf("%s: chain longer than the %d clusters it needs: %w", m.what, m.want, fstree.ErrCorrupt)
	}
	if k := len(m.runs) - 1; k >= 0 && m.runs[k].disk+m.runs[k].n == c {
		m.runs[k].n++
	} else {
		m.runs = append(m.runs, run{start: idx, disk: c, n: 1})
	}
	return nil
}

// Read fills p with the data's bytes from off; p lies inside the data,
// and its bytes from valid on read as zeros without reading the volume.
// It returns how many bytes it filled.
func (m *Map) Read(p []byte, off, valid int64) (int, error) {
	cs := m.v.ClusterSize
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= valid {
			clear(p[done:])
			return len(p), nil
		}
		disk, n, err := m.Locate(uint32(pos / cs))
		if err != nil {
			return done, err
		}
		within := pos % cs
		k := int(min(int64(len(p)-done), int64(n)*cs-within, valid-pos))
		got, err := m.v.Dev.ReadAt(p[done:done+k], m.v.offset(disk)+within)
		done += got
		if got < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("read %s: %w", m.what, err)
		}
	}
	return done, nil
}

// File is a file's data: size bytes, of which those from valid on were
// never written and read as zeros (exFAT's valid data length; on FAT it
// is the size).
type File struct {
	m           *Map
	size, valid int64
}

// File returns the data m maps as a file.
func (m *Map) File(size, valid int64) *File {
	return &File{m: m, size: size, valid: valid}
}

func (f *File) ReadAt(p []byte, off int64) (int, error) {
	p, eof := fstree.ClipRead(p, off, f.size)
	if len(p) == 0 {
		return 0, eof
	}
	n, err := f.m.Read(p, off, f.valid)
	if err != nil {
		return n, err
	}
	return n, eof
}

// Size returns the file's length in bytes.
func (f *File) Size() int64 { return f.size }

// Runs returns how many runs of contiguous clusters the reads so far have
// found the file in; contiguous data is one.
func (f *File) Runs() int {
	if f.m.chain == nil {
		return 1
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return len(f.m.runs)
}
