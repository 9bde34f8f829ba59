package exfat

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// extent maps a file's (or directory's) cluster indexes to the volume.
// A contiguous file (NoFatChain) is one run; otherwise the FAT chain is
// walked only as far as a read needs, and kept as runs of contiguous
// clusters.
type extent struct {
	r    *Reader
	what string
	want uint32 // clusters of the data; for the root, the most it may have
	// open: the chain's end, not its length, ends the data (the root
	// directory has no length).
	open       bool
	contiguous bool
	first      uint32

	mu    sync.Mutex
	chain *chain
	runs  []run
	err   error // from walking the chain, for every later read
}

// run is n clusters from the data's cluster index start, stored
// contiguously from cluster disk.
type run struct {
	start, disk, n uint32
}

// errEnd is the end of an open chain.
var errEnd = errors.New("end of chain")

func (r *Reader) extent(first uint32, want uint32, contiguous, open bool, what string) (*extent, error) {
	e := &extent{r: r, what: what, want: want, open: open, contiguous: contiguous, first: first}
	if contiguous {
		if !r.vol.valid(first) || want > r.vol.clusters-(first-2) {
			return nil, fmt.Errorf("%s: %d contiguous clusters from %d beyond the %d of the volume: %w", what, want, first, r.vol.clusters, fstree.ErrCorrupt)
		}
		return e, nil
	}
	e.chain = r.chain(first, want, what)
	return e, nil
}

// locate returns the volume cluster of the data's cluster idx, and how
// many clusters follow it contiguously.
func (e *extent) locate(idx uint32) (disk, n uint32, err error) {
	if idx >= e.want {
		return 0, 0, errEnd
	}
	if e.contiguous {
		return e.first + idx, e.want - idx, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.err == nil && e.walked() <= idx {
		e.err = e.step()
	}
	if e.err != nil && e.walked() <= idx {
		return 0, 0, e.err
	}
	i := sort.Search(len(e.runs), func(i int) bool { return e.runs[i].start+e.runs[i].n > idx })
	ru := e.runs[i]
	return ru.disk + idx - ru.start, ru.n - (idx - ru.start), nil
}

func (e *extent) walked() uint32 {
	if len(e.runs) == 0 {
		return 0
	}
	last := e.runs[len(e.runs)-1]
	return last.start + last.n
}

// step adds the chain's next cluster to the runs.
func (e *extent) step() error {
	c, more, err := e.chain.next()
	if err != nil {
		return err
	}
	idx := e.walked()
	if c == 0 {
		if e.open {
			return errEnd
		}
		return fmt.Errorf("%s: chain of %d clusters for %d: %w", e.what, idx, e.want, fstree.ErrCorrupt)
	}
	if !e.open && idx+1 == e.want && more {
		return fmt.Errorf("%s: chain longer than its %d clusters: %w", e.what, e.want, fstree.ErrCorrupt)
	}
	if k := len(e.runs) - 1; k >= 0 && e.runs[k].disk+e.runs[k].n == c {
		e.runs[k].n++
	} else {
		e.runs = append(e.runs, run{start: idx, disk: c, n: 1})
	}
	return nil
}

// file is a regular file's data: size bytes, of which those from valid on
// were never written and read as zeros.
type file struct {
	ext         *extent
	size, valid int64
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("exfat: read at negative offset %d", off)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	var eof error
	if rem := f.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	cs := f.ext.r.vol.clusterSize
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= f.valid {
			clear(p[done:])
			break
		}
		disk, n, err := f.ext.locate(uint32(pos / cs))
		if err != nil {
			return done, err
		}
		within := pos % cs
		k := int(min(int64(len(p)-done), int64(n)*cs-within, f.valid-pos))
		m, err := f.ext.r.dev.ReadAt(p[done:done+k], f.ext.r.vol.offset(disk)+within)
		done += m
		if m < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("exfat: read %s: %w", f.ext.what, err)
		}
	}
	return len(p), eof
}
