package ntfs

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// maxCompressionUnit bounds the bytes of one compression unit (64 KiB on
// every volume Windows makes).
const maxCompressionUnit = 1 << 20

// unitCacheSize is how many decompressed units a stream keeps, so that
// reads smaller than a unit do not decompress it again and again.
const unitCacheSize = 2

// stream reads a data attribute: resident bytes, or clusters through its
// runs. Sparse runs and bytes past the initialized size read as zeros
// without reading the volume. It is safe for concurrent use.
type stream struct {
	r    *Reader
	d    *dataAttr
	size int64
	unit int64 // bytes per compression unit; 0 when not compressed

	mu    sync.Mutex
	units []cachedUnit // most recent last
}

type cachedUnit struct {
	index int64
	data  []byte
}

var _ io.ReaderAt = (*stream)(nil)

func (r *Reader) newStream(d *dataAttr) *stream {
	s := &stream{r: r, d: d, size: d.size}
	if d.compressed() {
		s.unit = r.clusterSize << d.compUnit
	}
	return s
}

// ReadAt reads the attribute's bytes at off.
func (s *stream) ReadAt(p []byte, off int64) (int, error) {
	p, eof := fstree.ClipRead(p, off, s.size)
	if len(p) == 0 {
		return 0, eof
	}
	n := len(p)
	if end := off + int64(n); end > s.d.init {
		valid := max(0, s.d.init-off)
		clear(p[valid:])
		p = p[:valid]
	}
	var err error
	switch {
	case s.d.resident:
		copy(p, s.d.value[off:])
	case s.unit > 0:
		err = s.readCompressed(p, off)
	default:
		err = s.readClusters(p, off)
	}
	if err != nil {
		return 0, err
	}
	return n, eof
}

// runAt returns the index of the run that maps vcn, or len(runs).
func (s *stream) runAt(vcn int64) int {
	runs := s.d.runs
	i := sort.Search(len(runs), func(i int) bool { return runs[i].vcn+runs[i].n > vcn })
	if i < len(runs) && runs[i].vcn > vcn {
		return len(runs)
	}
	return i
}

// readClusters reads p at off through the runs, as stored.
func (s *stream) readClusters(p []byte, off int64) error {
	cs := s.r.clusterSize
	for len(p) > 0 {
		i := s.runAt(off / cs)
		if i == len(s.d.runs) {
			return fmt.Errorf("offset %d is in no run: %w", off, fstree.ErrCorrupt)
		}
		rn := s.d.runs[i]
		within := off - rn.vcn*cs
		k := min(int64(len(p)), rn.n*cs-within)
		if rn.sparse() {
			clear(p[:k])
		} else if err := s.r.readVolume(p[:k], rn.lcn*cs+within); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// readCompressed reads p at off, unit by unit.
func (s *stream) readCompressed(p []byte, off int64) error {
	for len(p) > 0 {
		u, within := off/s.unit, off%s.unit
		k := min(int64(len(p)), s.unit-within)
		if err := s.readUnit(p[:k], u, within); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// readUnit reads p at within of compression unit u. A unit whose last
// cluster is allocated is stored as is; one with no allocated cluster is
// zeros; any other holds LZNT1 data in its clusters up to the first hole,
// which may lie in several runs.
func (s *stream) readUnit(p []byte, u, within int64) error {
	cs := s.r.clusterSize
	clusters := s.unit / cs
	first := u * clusters
	var packed int64 // allocated clusters before the first hole
	for vcn := first; vcn < first+clusters; {
		i := s.runAt(vcn)
		if i == len(s.d.runs) || s.d.runs[i].sparse() {
			break
		}
		rn := s.d.runs[i]
		n := min(rn.vcn+rn.n, first+clusters) - vcn
		packed += n
		vcn += n
	}
	last := s.runAt(first + clusters - 1)
	if last < len(s.d.runs) && !s.d.runs[last].sparse() {
		return s.readClusters(p, first*cs+within)
	}
	if packed == 0 {
		clear(p)
		return nil
	}
	data, err := s.unitData(u, first*cs, packed*cs)
	if err != nil {
		return err
	}
	copy(p, data[within:])
	return nil
}

// unitData returns compression unit u decompressed, from the cache or
// from the n bytes at off.
func (s *stream) unitData(u, off, n int64) ([]byte, error) {
	s.mu.Lock()
	for _, c := range s.units {
		if c.index == u {
			s.mu.Unlock()
			return c.data, nil
		}
	}
	s.mu.Unlock()
	packed := make([]byte, n)
	if err := s.readClusters(packed, off); err != nil {
		return nil, err
	}
	data := make([]byte, s.unit)
	if err := decompressLZNT1(data, packed); err != nil {
		return nil, fmt.Errorf("compression unit %d: %w", u, err)
	}
	s.mu.Lock()
	if len(s.units) == unitCacheSize {
		s.units = append(s.units[:0], s.units[1:]...)
	}
	s.units = append(s.units, cachedUnit{u, data})
	s.mu.Unlock()
	return data, nil
}
