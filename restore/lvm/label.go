package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const (
	labelID    = "LABELONE"
	labelType  = "LVM2 001"
	mdaMagic   = " LVM2 x[5A%r0N*>"
	mdaHeader  = 512 // the metadata area's header, before its ring of text
	initialCRC = 0xf597a6cf
	// rawLocnIgnored marks a metadata copy LVM was told to ignore.
	rawLocnIgnored = 1
)

// lvmCRC is LVM's checksum: CRC-32 (IEEE) from its own initial value and
// without the final inversion.
func lvmCRC(b ...[]byte) uint32 {
	crc := ^uint32(initialCRC)
	for _, b := range b {
		crc = crc32.Update(crc, crc32.IEEETable, b)
	}
	return ^crc
}

// ReadPV reads the label of the physical volume on a device of the given
// size, and the metadata text of its first readable metadata area. A
// device without an LVM label gives an error wrapping
// fstree.ErrUnrecognized.
func ReadPV(r io.ReaderAt, size int64) (*PV, error) {
	if size < 4*sectorSize {
		return nil, fmt.Errorf("lvm: device of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	head := make([]byte, 4*sectorSize)
	if err := readFull(r, head, 0); err != nil {
		return nil, fmt.Errorf("lvm: read label: %w", err)
	}
	for i := range 4 {
		s := head[i*sectorSize:][:sectorSize]
		if string(s[:8]) != labelID {
			continue
		}
		pv, err := parseLabel(s, i, size)
		if err != nil {
			return nil, err
		}
		pv.readMetadata(r)
		return pv, nil
	}
	return nil, fmt.Errorf("lvm: no LVM label: %w", fstree.ErrUnrecognized)
}

func parseLabel(s []byte, sector int, size int64) (*PV, error) {
	le := binary.LittleEndian
	if got := le.Uint64(s[8:]); got != uint64(sector) {
		return nil, corrupt("label in sector %d says it is in sector %d", sector, got)
	}
	if sum, want := lvmCRC(s[20:]), le.Uint32(s[16:]); sum != want {
		return nil, corrupt("label in sector %d: checksum %08x, label says %08x", sector, sum, want)
	}
	if string(s[24:32]) != labelType {
		return nil, corrupt("label in sector %d: type %q", sector, s[24:32])
	}
	off := le.Uint32(s[20:])
	if off < 32 || off+32+8+16 > sectorSize {
		return nil, corrupt("label in sector %d: PV header at %d", sector, off)
	}
	h := s[off:]
	pv := &PV{
		UUID:        formatUUID(h[:32]),
		Size:        size,
		DeviceSize:  int64(le.Uint64(h[32:]) & (1<<63 - 1)),
		LabelSector: sector,
	}
	// Two lists of (offset, size), each ended by a zero pair: data
	// areas, then metadata areas.
	rest := h[40:]
	for _, list := range []*[]Area{&pv.DataAreas, &pv.MetadataAreas} {
		for {
			if len(rest) < 16 {
				return nil, corrupt("PV %s: area list runs past its label", pv.UUID)
			}
			a := Area{Offset: int64(le.Uint64(rest)), Size: int64(le.Uint64(rest[8:]))}
			rest = rest[16:]
			if a.Offset == 0 && a.Size == 0 {
				break
			}
			if a.Offset < 0 || a.Size < 0 || a.Offset >= size || a.Size > size-a.Offset {
				return nil, corrupt("PV %s: area %d+%d beyond a device of %d bytes", pv.UUID, a.Offset, a.Size, size)
			}
			*list = append(*list, a)
		}
	}
	return pv, nil
}

// formatUUID puts LVM's dashes into a 32-character UUID: 6-4-4-4-4-4-6.
func formatUUID(b []byte) string {
	var out []byte
	for i, c := range b {
		if i == 6 || i == 10 || i == 14 || i == 18 || i == 22 || i == 26 {
			out = append(out, '-')
		}
		out = append(out, c)
	}
	return string(out)
}

// readMetadata reads the first metadata area whose text is whole. LVM
// writes the same text to each area, so the first good one will do.
func (pv *PV) readMetadata(r io.ReaderAt) {
	var errs []error
	for _, a := range pv.MetadataAreas {
		text, err := readArea(r, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if text == nil { // a PV in no VG
			continue
		}
		vg, err := vgHeader(text)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pv.Metadata, pv.VGName, pv.VGID, pv.Seqno = text, vg.name, vg.id, vg.seqno
		return
	}
	pv.MetadataErr = errors.Join(errs...)
}

// readArea reads the current metadata text of a metadata area; nil when it
// holds none.
func readArea(r io.ReaderAt, a Area) ([]byte, error) {
	le := binary.LittleEndian
	if a.Size < 2*mdaHeader {
		return nil, corrupt("metadata area at %d: %d bytes", a.Offset, a.Size)
	}
	h := make([]byte, mdaHeader)
	if err := readFull(r, h, a.Offset); err != nil {
		return nil, fmt.Errorf("lvm: read metadata area header at %d: %w", a.Offset, err)
	}
	if string(h[4:20]) != mdaMagic {
		return nil, corrupt("metadata area at %d: no magic", a.Offset)
	}
	if sum, want := lvmCRC(h[4:]), le.Uint32(h); sum != want {
		return nil, corrupt("metadata area at %d: checksum %08x, header says %08x", a.Offset, sum, want)
	}
	if start, size := int64(le.Uint64(h[24:])), int64(le.Uint64(h[32:])); start != a.Offset || size != a.Size {
		return nil, corrupt("metadata area at %d+%d says it is at %d+%d", a.Offset, a.Size, start, size)
	}
	// The first raw location is the committed text.
	loc := h[40:]
	off, size := le.Uint64(loc), le.Uint64(loc[8:])
	sum, flags := le.Uint32(loc[16:]), le.Uint32(loc[20:])
	if off == 0 || size == 0 || flags&rawLocnIgnored != 0 {
		return nil, nil
	}
	ring := uint64(a.Size - mdaHeader)
	if off < mdaHeader || off >= uint64(a.Size) || size > ring || size > MaxMetadata {
		return nil, corrupt("metadata area at %d: text at %d+%d in an area of %d bytes", a.Offset, off, size, a.Size)
	}
	text := make([]byte, size)
	// The text is in a ring after the header: it may wrap to its start.
	first := min(size, uint64(a.Size)-off)
	if err := readFull(r, text[:first], a.Offset+int64(off)); err != nil {
		return nil, fmt.Errorf("lvm: read metadata at %d: %w", a.Offset+int64(off), err)
	}
	if first < size {
		if err := readFull(r, text[first:], a.Offset+mdaHeader); err != nil {
			return nil, fmt.Errorf("lvm: read metadata at %d: %w", a.Offset+mdaHeader, err)
		}
	}
	if got := lvmCRC(text); got != sum {
		return nil, corrupt("metadata area at %d: text checksum %08x, header says %08x", a.Offset, got, sum)
	}
	return bytes.TrimRight(text, "\x00"), nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
