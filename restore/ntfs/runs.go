package ntfs

import (
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// maxVCN bounds virtual cluster numbers so that sums and byte offsets of
// clusters up to 2 MiB cannot overflow.
const maxVCN = 1 << 40

// run maps n clusters from vcn on to the volume's clusters from lcn on, or
// to nothing (lcn < 0) in a sparse run.
type run struct {
	vcn, lcn, n int64
}

func (r run) sparse() bool { return r.lcn < 0 }

// decodeRuns decodes mapping pairs, which start at lowVCN, checking that
// every allocated cluster lies within the volume's clusters. The runs'
// number is bounded by len(b).
func decodeRuns(b []byte, lowVCN, clusters int64) ([]run, error) {
	var runs []run
	vcn, lcn := lowVCN, int64(0)
	for i := 0; ; {
		if i >= len(b) {
			return nil, fmt.Errorf("mapping pairs without an end: %w", fstree.ErrCorrupt)
		}
		h := b[i]
		if h == 0 {
			return runs, nil
		}
		lenSize, offSize := int(h&0xf), int(h>>4)
		if lenSize == 0 || lenSize > 8 || offSize > 8 || i+1+lenSize+offSize > len(b) {
			return nil, fmt.Errorf("mapping pair header 0x%02x at %d: %w", h, i, fstree.ErrCorrupt)
		}
		n := signedLE(b[i+1 : i+1+lenSize])
		if n <= 0 || n > maxVCN-vcn {
			return nil, fmt.Errorf("run of %d clusters at VCN %d: %w", n, vcn, fstree.ErrCorrupt)
		}
		r := run{vcn: vcn, lcn: -1, n: n}
		if offSize > 0 {
			delta := signedLE(b[i+1+lenSize : i+1+lenSize+offSize])
			if (delta > 0 && lcn > clusters-delta) || lcn+delta < 0 {
				return nil, fmt.Errorf("run at VCN %d moves LCN %d by %d: %w", vcn, lcn, delta, fstree.ErrCorrupt)
			}
			lcn += delta
			if n > clusters-lcn {
				return nil, fmt.Errorf("run of %d clusters at LCN %d beyond the volume's %d clusters: %w",
					n, lcn, clusters, fstree.ErrCorrupt)
			}
			r.lcn = lcn
		}
		runs = append(runs, r)
		vcn += n
		i += 1 + lenSize + offSize
	}
}

// signedLE decodes a little-endian two's-complement number of 1 to 8 bytes.
func signedLE(b []byte) int64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if shift := 64 - 8*uint(len(b)); shift > 0 {
		return int64(v<<shift) >> shift
	}
	return int64(v)
}

// runLength is the number of clusters runs map.
func runLength(runs []run) int64 {
	var n int64
	for _, r := range runs {
		n += r.n
	}
	return n
}
