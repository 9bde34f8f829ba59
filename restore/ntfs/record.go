package ntfs

import (
	"encoding/binary"
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Attribute types.
const (
	attrStandardInformation = 0x10
	attrAttributeList       = 0x20
	attrFileName            = 0x30
	attrVolumeName          = 0x60
	attrData                = 0x80
	attrIndexRoot           = 0x90
	attrIndexAllocation     = 0xa0
	attrReparsePoint        = 0xc0
	attrEnd                 = 0xffffffff
)

// Attribute flags.
const (
	attrFlagCompressed = 0x0001
	attrFlagEncrypted  = 0x4000
	attrFlagSparse     = 0x8000
)

// MFT record header flags.
const (
	recordInUse     = 0x0001
	recordDirectory = 0x0002
)

// fixupBlock is the stride of update-sequence fixups, whatever the sector
// size.
const fixupBlock = 512

// record is one parsed MFT record.
type record struct {
	num   uint64
	seq   uint16
	flags uint16
	base  uint64 // record number of the base record; 0 in a base record
	attrs []attr
}

// attr is one attribute of a record, or one extent of a non-resident
// attribute that several records share.
type attr struct {
	typ   uint32
	name  string
	flags uint16

	resident bool
	value    []byte

	lowVCN, highVCN    int64
	runs               []run
	compUnit           uint8 // log2 of clusters per compression unit
	dataSize, initSize int64
}

// fixup checks a multi-sector record's update sequence and puts back the
// bytes it replaced at the end of every 512-byte block.
func fixup(b []byte, magic string, where string) error {
	if string(b[:4]) != magic {
		return fmt.Errorf("%s: magic %q, want %q: %w", where, b[:4], magic, fstree.ErrCorrupt)
	}
	off := int(binary.LittleEndian.Uint16(b[4:]))
	count := int(binary.LittleEndian.Uint16(b[6:]))
	blocks := len(b) / fixupBlock
	if count != blocks+1 || off%2 != 0 || off < 8 || off+2*count > fixupBlock-2 {
		return fmt.Errorf("%s: update sequence of %d at %d for %d blocks: %w", where, count, off, blocks, fstree.ErrCorrupt)
	}
	usn := b[off : off+2]
	for i := 1; i <= blocks; i++ {
		end := b[i*fixupBlock-2 : i*fixupBlock]
		if end[0] != usn[0] || end[1] != usn[1] {
			return fmt.Errorf("%s: block %d torn (update sequence %x, want %x): %w", where, i-1, end, usn, fstree.ErrCorrupt)
		}
		copy(end, b[off+2*i:off+2*i+2])
	}
	return nil
}

// loadRecord reads and parses MFT record num.
func (r *Reader) loadRecord(num uint64) (*record, error) {
	count := uint64(r.mft.size) / uint64(r.recordSize)
	if num >= count {
		return nil, fmt.Errorf("MFT record %d of %d: %w", num, count, fstree.ErrCorrupt)
	}
	buf := make([]byte, r.recordSize)
	if _, err := r.mft.ReadAt(buf, int64(num)*int64(r.recordSize)); err != nil {
		return nil, fmt.Errorf("MFT record %d: %w", num, err)
	}
	return r.parseRecord(num, buf)
}

// parseRecord checks the fixups and header of a record and splits it into
// attributes.
func (r *Reader) parseRecord(num uint64, b []byte) (*record, error) {
	where := fmt.Sprintf("MFT record %d", num)
	if err := fixup(b, "FILE", where); err != nil {
		return nil, err
	}
	rec := &record{
		num:   num,
		seq:   binary.LittleEndian.Uint16(b[0x10:]),
		flags: binary.LittleEndian.Uint16(b[0x16:]),
		base:  binary.LittleEndian.Uint64(b[0x20:]) & refMask,
	}
	if rec.flags&recordInUse == 0 {
		return nil, fmt.Errorf("%s is not in use: %w", where, fstree.ErrCorrupt)
	}
	first := int(binary.LittleEndian.Uint16(b[0x14:]))
	used := int(binary.LittleEndian.Uint32(b[0x18:]))
	if used > len(b) || first < 0x30 || first+4 > used || first%8 != 0 {
		return nil, fmt.Errorf("%s: attributes at %d, %d bytes in use: %w", where, first, used, fstree.ErrCorrupt)
	}
	for off := first; ; {
		if off+4 > used {
			return nil, fmt.Errorf("%s: attribute at %d runs past the %d bytes in use: %w", where, off, used, fstree.ErrCorrupt)
		}
		typ := binary.LittleEndian.Uint32(b[off:])
		if typ == attrEnd {
			break
		}
		if off+16 > used {
			return nil, fmt.Errorf("%s: attribute header at %d runs past the %d bytes in use: %w", where, off, used, fstree.ErrCorrupt)
		}
		length := int(binary.LittleEndian.Uint32(b[off+4:]))
		if length < 24 || length%8 != 0 || length > used-off {
			return nil, fmt.Errorf("%s: attribute 0x%x at %d of %d bytes: %w", where, typ, off, length, fstree.ErrCorrupt)
		}
		a, err := r.parseAttr(b[off : off+length])
		if err != nil {
			return nil, fmt.Errorf("%s: attribute 0x%x at %d: %w", where, typ, off, err)
		}
		rec.attrs = append(rec.attrs, a)
		off += length
	}
	return rec, nil
}

// parseAttr parses one attribute of exactly len(b) bytes. Resident values
// are copied, so that a record's buffer can go.
func (r *Reader) parseAttr(b []byte) (attr, error) {
	a := attr{
		typ:      binary.LittleEndian.Uint32(b),
		resident: b[8] == 0,
		flags:    binary.LittleEndian.Uint16(b[0x0c:]),
	}
	nameLen := int(b[9])
	nameOff := int(binary.LittleEndian.Uint16(b[0x0a:]))
	if nameLen > 0 {
		if nameOff+2*nameLen > len(b) {
			return a, fmt.Errorf("name of %d characters at %d: %w", nameLen, nameOff, fstree.ErrCorrupt)
		}
		a.name = decodeName(b[nameOff : nameOff+2*nameLen])
	}
	if a.resident {
		size := int(binary.LittleEndian.Uint32(b[0x10:]))
		off := int(binary.LittleEndian.Uint16(b[0x14:]))
		if off < 24 || size > len(b) || off > len(b)-size {
			return a, fmt.Errorf("resident value of %d bytes at %d: %w", size, off, fstree.ErrCorrupt)
		}
		a.value = append([]byte(nil), b[off:off+size]...)
		a.dataSize, a.initSize = int64(size), int64(size)
		return a, nil
	}
	if len(b) < 0x40 {
		return a, fmt.Errorf("non-resident header of %d bytes: %w", len(b), fstree.ErrCorrupt)
	}
	a.lowVCN = int64(binary.LittleEndian.Uint64(b[0x10:]))
	a.highVCN = int64(binary.LittleEndian.Uint64(b[0x18:]))
	runsOff := int(binary.LittleEndian.Uint16(b[0x20:]))
	a.compUnit = b[0x22]
	a.dataSize = int64(binary.LittleEndian.Uint64(b[0x30:]))
	a.initSize = int64(binary.LittleEndian.Uint64(b[0x38:]))
	if runsOff < 0x40 || runsOff > len(b) {
		return a, fmt.Errorf("mapping pairs at %d: %w", runsOff, fstree.ErrCorrupt)
	}
	if a.lowVCN < 0 || a.highVCN < a.lowVCN-1 || a.dataSize < 0 || a.initSize < 0 {
		return a, fmt.Errorf("VCNs %d-%d, data size %d, initialized size %d: %w",
			a.lowVCN, a.highVCN, a.dataSize, a.initSize, fstree.ErrCorrupt)
	}
	runs, err := decodeRuns(b[runsOff:], a.lowVCN, r.clusters)
	if err != nil {
		return a, err
	}
	if next := a.lowVCN + runLength(runs); next != a.highVCN+1 {
		return a, fmt.Errorf("runs end at VCN %d, header says %d: %w", next-1, a.highVCN, fstree.ErrCorrupt)
	}
	a.runs = runs
	return a, nil
}
