package fat

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// file maps a file's offsets to the volume through its cluster chain. The
// chain is walked only as far as a read needs, and what was walked is kept
// as runs of contiguous clusters.
type file struct {
	r    *Reader
	size int64
	want uint32 // clusters the size needs

	mu    sync.Mutex
	chain *chain
	runs  []run
	err   error // from walking the chain, for every later read
}

// run is n clusters of a file, from its cluster index start, stored
// contiguously from cluster disk.
type run struct {
	start, disk, n uint32
}

func (r *Reader) newFile(first uint32, size int64) *file {
	want := uint32((size + r.vol.clusterSize - 1) / r.vol.clusterSize)
	what := fmt.Sprintf("file at cluster %d", first)
	return &file{r: r, size: size, want: want, chain: r.chain(first, want, what)}
}

// locate returns the volume cluster of the file's cluster idx, and how
// many clusters follow it contiguously.
func (f *file) locate(idx uint32) (disk, n uint32, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.err == nil && f.walked() <= idx {
		f.err = f.step()
	}
	if f.err != nil && f.walked() <= idx {
		return 0, 0, f.err
	}
	i := sort.Search(len(f.runs), func(i int) bool { return f.runs[i].start+f.runs[i].n > idx })
	ru := f.runs[i]
	return ru.disk + idx - ru.start, ru.n - (idx - ru.start), nil
}

func (f *file) walked() uint32 {
	if len(f.runs) == 0 {
		return 0
	}
	last := f.runs[len(f.runs)-1]
	return last.start + last.n
}

// step adds the chain's next cluster to the runs.
func (f *file) step() error {
	c, more, err := f.chain.next()
	if err != nil {
		return err
	}
	if c == 0 {
		return fmt.Errorf("%s: chain of %d clusters for %d bytes: %w", f.chain.what, f.walked(), f.size, fstree.ErrCorrupt)
	}
	idx := f.walked()
	if idx+1 == f.want && more {
		return fmt.Errorf("%s: chain longer than the %d clusters of %d bytes: %w", f.chain.what, f.want, f.size, fstree.ErrCorrupt)
	}
	if k := len(f.runs) - 1; k >= 0 && f.runs[k].disk+f.runs[k].n == c {
		f.runs[k].n++
	} else {
		f.runs = append(f.runs, run{start: idx, disk: c, n: 1})
	}
	return nil
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fat: read at negative offset %d", off)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	var eof error
	if rem := f.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	cs := f.r.vol.clusterSize
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		disk, n, err := f.locate(uint32(pos / cs))
		if err != nil {
			return done, err
		}
		within := pos % cs
		k := int(min(int64(len(p)-done), int64(n)*cs-within))
		m, err := f.r.dev.ReadAt(p[done:done+k], f.r.vol.offset(disk)+within)
		done += m
		if m < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("fat: read %s: %w", f.chain.what, err)
		}
	}
	return done, eof
}
