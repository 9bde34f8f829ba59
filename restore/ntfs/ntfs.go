// Package ntfs reads an NTFS volume: its MFT, directory indexes, resident,
// non-resident, sparse and LZNT1-compressed data, alternate data streams,
// hard links and symlinks (Windows symlinks and junctions, WSL and Interix
// links as ntfs-3g writes them).
//
// Only what a request needs is read from the volume: the boot sector, the
// MFT records of the files walked, the index blocks of the directories
// listed and the clusters of the data read.
package ntfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Well-known MFT record numbers.
const (
	recMFT    = 0
	recVolume = 3
	recRoot   = 5
	// Records below firstUserRecord are the metafiles ($MFT, $Bitmap,
	// $Extend, ...), which the root's index lists and the reader hides.
	firstUserRecord = 16
)

// Cache sizes: enough for the working set of a browse or a restore.
const (
	nodeCacheBytes    = 16 << 20 // of MFT records, as parsed nodes
	dirCacheEntries   = 1 << 18
	maxDirEntries     = 1 << 21 // entries of one directory
	maxAttrListSize   = 1 << 20 // bytes of one $ATTRIBUTE_LIST
	maxExtensionRecs  = 4096    // extension records of one file
	maxIndexTreeDepth = 64
)

// Reader reads one NTFS volume. It is safe for concurrent use.
type Reader struct {
	vol         io.ReaderAt
	size        int64 // bytes of the volume the boot sector describes
	clusterSize int64
	clusters    int64
	recordSize  int
	mft         *stream // $MFT's $DATA: where record n lives
	label       string
	root        *node

	nodes *fstree.Cache[uint64, *node]
	dirs  *fstree.Cache[uint64, []fstree.Entry]
}

var (
	_ fstree.Reader       = (*Reader)(nil)
	_ fstree.StreamReader = (*Reader)(nil)
)

// Open reads the boot sector, the MFT's own record, the volume label and
// the root directory's record of the NTFS volume of size bytes in r.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	boot := make([]byte, 512)
	if size < int64(len(boot)) {
		return nil, fmt.Errorf("ntfs: volume of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	if n, err := r.ReadAt(boot, 0); n < len(boot) {
		return nil, fmt.Errorf("ntfs: read boot sector: %w", err)
	}
	if !bytes.Equal(boot[3:11], []byte("NTFS    ")) {
		return nil, fmt.Errorf("ntfs: no NTFS signature: %w", fstree.ErrUnrecognized)
	}
	rd, err := newReader(r, size, boot)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	return rd, nil
}

func newReader(vol io.ReaderAt, size int64, boot []byte) (*Reader, error) {
	bps := int64(binary.LittleEndian.Uint16(boot[0x0b:]))
	if bps < 256 || bps > 4096 || bits.OnesCount64(uint64(bps)) != 1 {
		return nil, fmt.Errorf("boot sector: %d bytes per sector: %w", bps, fstree.ErrCorrupt)
	}
	// Sectors per cluster is a count up to 128, or a negative power of
	// two for clusters of 64 KiB and more.
	spc := int64(boot[0x0d])
	if spc > 0x80 {
		spc = 1 << (256 - spc)
	}
	cs := bps * spc
	if spc == 0 || bits.OnesCount64(uint64(spc)) != 1 || cs > 2<<20 {
		return nil, fmt.Errorf("boot sector: %d sectors per cluster: %w", boot[0x0d], fstree.ErrCorrupt)
	}
	sectors := binary.LittleEndian.Uint64(boot[0x28:])
	if sectors == 0 || sectors > uint64(size/bps) {
		return nil, fmt.Errorf("boot sector: %d sectors of %d bytes on a volume of %d bytes: %w",
			sectors, bps, size, fstree.ErrCorrupt)
	}
	rd := &Reader{
		vol:         vol,
		size:        int64(sectors) * bps,
		clusterSize: cs,
		clusters:    int64(sectors) * bps / cs,
		nodes:       fstree.NewCache[uint64, *node](nodeCacheBytes, 0),
		dirs:        fstree.NewCache[uint64, []fstree.Entry](dirCacheEntries, 0),
	}
	rs, err := recordSizeOf(int8(boot[0x40]), cs)
	if err != nil {
		return nil, fmt.Errorf("boot sector: MFT record size: %w", err)
	}
	rd.recordSize = rs
	mftLCN := binary.LittleEndian.Uint64(boot[0x30:])
	if mftLCN >= uint64(rd.clusters) || int64(mftLCN)*cs > rd.size-int64(rs) {
		return nil, fmt.Errorf("boot sector: MFT at cluster %d of %d: %w", mftLCN, rd.clusters, fstree.ErrCorrupt)
	}
	if err := rd.loadMFT(int64(mftLCN) * cs); err != nil {
		return nil, err
	}
	root, err := rd.node(recRoot)
	if err != nil {
		return nil, fmt.Errorf("root directory: %w", err)
	}
	if !root.dir {
		return nil, fmt.Errorf("root directory: record %d is not a directory: %w", recRoot, fstree.ErrCorrupt)
	}
	rd.root = root
	vol3, err := rd.node(recVolume)
	if err != nil {
		return nil, fmt.Errorf("$Volume: %w", err)
	}
	if a := vol3.find(attrVolumeName, ""); a != nil && a.resident {
		rd.label = decodeName(a.value)
	}
	return rd, nil
}

// recordSizeOf decodes the boot sector's "clusters per record": a count of
// clusters, or a negative power of two in bytes.
func recordSizeOf(v int8, cs int64) (int, error) {
	size := int64(v) * cs
	if v < 0 {
		if v < -30 {
			return 0, fmt.Errorf("2^%d bytes: %w", -v, fstree.ErrCorrupt)
		}
		size = 1 << -v
	}
	// Fixups protect every 512 bytes, so a record holds whole blocks.
	if size < 512 || size > 64<<10 || bits.OnesCount64(uint64(size)) != 1 {
		return 0, fmt.Errorf("%d bytes: %w", size, fstree.ErrCorrupt)
	}
	return int(size), nil
}

// loadMFT reads $MFT's record, found at off through the boot sector, to
// learn where every other record lives.
func (r *Reader) loadMFT(off int64) error {
	buf := make([]byte, r.recordSize)
	if err := r.readVolume(buf, off); err != nil {
		return fmt.Errorf("$MFT record: %w", err)
	}
	rec, err := r.parseRecord(recMFT, buf)
	if err != nil {
		return err
	}
	// The first extent of $MFT's data, which this record holds, is
	// enough to reach the extension records that hold the rest.
	var first *attr
	for i := range rec.attrs {
		a := &rec.attrs[i]
		if a.typ == attrData && a.name == "" && !a.resident && a.lowVCN == 0 {
			first = a
			break
		}
	}
	if first == nil {
		return fmt.Errorf("$MFT record has no non-resident $DATA: %w", fstree.ErrCorrupt)
	}
	boot := &dataAttr{runs: first.runs, size: first.dataSize, init: first.initSize}
	if err := r.checkData(boot, "$MFT"); err != nil {
		return err
	}
	r.mft = r.newStream(boot)
	n, err := r.buildNode(rec)
	if err != nil {
		return fmt.Errorf("$MFT: %w", err)
	}
	if n.data == nil || n.data.resident || n.data.compressed() || n.data.encrypted {
		return fmt.Errorf("$MFT data is resident, compressed or encrypted: %w", fstree.ErrCorrupt)
	}
	r.mft = r.newStream(n.data)
	return nil
}

// readVolume reads len(p) bytes at off, all of which must lie within the
// volume.
func (r *Reader) readVolume(p []byte, off int64) error {
	if off < 0 || off > r.size || int64(len(p)) > r.size-off {
		return fmt.Errorf("read of %d bytes at %d beyond the volume of %d bytes: %w", len(p), off, r.size, fstree.ErrCorrupt)
	}
	n, err := r.vol.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read volume at %d: %w", off, err)
}

// Type is "ntfs".
func (r *Reader) Type() string { return "ntfs" }

// Label is the volume name of $Volume.
func (r *Reader) Label() string { return r.label }

// Root returns the root directory.
func (r *Reader) Root() (fstree.Node, error) { return r.root, nil }
