package partition

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"unicode/utf16"
)

// errNoGPT says that no GPT header was found at all, as opposed to one
// that was found damaged.
var errNoGPT = errors.New("no GPT header")

// maxEntryArray bounds the partition entry array read: the usual one is 128
// entries of 128 bytes, 16 KiB.
const maxEntryArray = 1 << 20

type gptHeader struct {
	lba, altLBA                  uint64
	firstUsable, lastUsable      uint64
	diskGUID                     string
	entryLBA                     uint64
	numEntries, entrySize, array uint32 // array is the entry array's CRC32
}

// readGPT reads the primary GPT header at LBA 1 or, when it is missing or
// damaged, the backup one at the last LBA. ss is the sector size, or 0 to
// try 512 and 4096.
func readGPT(r io.ReaderAt, size int64, ss int) (*Table, error) {
	sizes := []int{512, 4096}
	if ss != 0 {
		sizes = []int{ss}
	}
	var damaged error // why a primary header found was not used
	for _, ss := range sizes {
		t, err := readGPTAt(r, size, ss, 1)
		if err == nil {
			return t, nil
		}
		if errors.Is(err, errNoGPT) {
			continue
		}
		damaged = err
		// A header that says where its backup is may be right about it
		// even when its checksum is wrong, as when the disk was grown
		// and the backup is no longer at the last LBA.
		for _, lba := range backupLBAs(r, size, ss) {
			if t, err := readGPTAt(r, size, ss, lba); err == nil {
				t.Warning = join(t.Warning, fmt.Sprintf("primary GPT damaged (%v); using the backup at LBA %d", err0(damaged), lba))
				return t, nil
			}
		}
		return nil, damaged
	}
	for _, ss := range sizes {
		last := uint64(size/int64(ss)) - 1
		t, err := readGPTAt(r, size, ss, last)
		if err == nil {
			t.Warning = join(t.Warning, fmt.Sprintf("no primary GPT header; using the backup at LBA %d", last))
			return t, nil
		}
		if !errors.Is(err, errNoGPT) {
			damaged = err
		}
	}
	if damaged != nil {
		return nil, damaged
	}
	return nil, errNoGPT
}

// err0 is an error's message without the "partition: " prefix and the
// ErrCorrupt suffix, for a warning.
func err0(err error) string {
	s := strings.TrimPrefix(err.Error(), "partition: ")
	return strings.TrimSuffix(s, ": corrupt filesystem")
}

// backupLBAs returns where the backup header may be: the last LBA and
// where the primary header says, if it says something else.
func backupLBAs(r io.ReaderAt, size int64, ss int) []uint64 {
	last := uint64(size/int64(ss)) - 1
	out := []uint64{last}
	b := make([]byte, 512)
	if readFull(r, b, int64(ss)) == nil {
		if alt := binary.LittleEndian.Uint64(b[32:]); alt > 1 && alt < last {
			out = append(out, alt)
		}
	}
	return out
}

// readGPTAt reads and checks the GPT header at lba and its entry array.
func readGPTAt(r io.ReaderAt, size int64, ss int, lba uint64) (*Table, error) {
	sectors := uint64(size / int64(ss))
	if lba < 1 || lba >= sectors {
		return nil, errNoGPT
	}
	b := make([]byte, ss)
	if err := readFull(r, b, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("partition: read GPT header at LBA %d: %w", lba, err)
	}
	if !bytes.Equal(b[:8], []byte("EFI PART")) {
		return nil, errNoGPT
	}
	h, err := parseGPTHeader(b, lba, sectors)
	if err != nil {
		return nil, err
	}
	arrayLen := int64(h.numEntries) * int64(h.entrySize)
	array := make([]byte, arrayLen)
	if err := readFull(r, array, int64(h.entryLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("partition: read GPT entries at LBA %d: %w", h.entryLBA, err)
	}
	if sum := crc32.ChecksumIEEE(array); sum != h.array {
		return nil, corrupt("GPT header at LBA %d: entry array CRC32 %08x, header says %08x", lba, sum, h.array)
	}
	t := &Table{Kind: KindGPT, SectorSize: ss, DiskGUID: h.diskGUID}
	for i := range h.numEntries {
		e := array[i*h.entrySize:][:h.entrySize]
		p, used, err := parseGPTEntry(e, int(i)+1, sectors, ss)
		if err != nil {
			return nil, err
		}
		if !used {
			continue
		}
		if p.Start < int64(h.firstUsable)*int64(ss) || p.Start+p.Length > int64(h.lastUsable+1)*int64(ss) {
			t.Warning = join(t.Warning, fmt.Sprintf("partition %d lies outside the usable sectors %d-%d", p.Number, h.firstUsable, h.lastUsable))
		}
		t.Partitions = append(t.Partitions, p)
	}
	if w := overlaps(t.Partitions); w != "" {
		t.Warning = join(t.Warning, w)
	}
	return t, nil
}

func parseGPTHeader(b []byte, lba, sectors uint64) (gptHeader, error) {
	le := binary.LittleEndian
	hsize := le.Uint32(b[12:])
	if hsize < 92 || int(hsize) > len(b) {
		return gptHeader{}, corrupt("GPT header at LBA %d: size %d", lba, hsize)
	}
	hdr := slices.Clone(b[:hsize])
	clear(hdr[16:20])
	if sum, want := crc32.ChecksumIEEE(hdr), le.Uint32(b[16:]); sum != want {
		return gptHeader{}, corrupt("GPT header at LBA %d: CRC32 %08x, header says %08x", lba, sum, want)
	}
	h := gptHeader{
		lba:         le.Uint64(b[24:]),
		altLBA:      le.Uint64(b[32:]),
		firstUsable: le.Uint64(b[40:]),
		lastUsable:  le.Uint64(b[48:]),
		diskGUID:    guid(b[56:72]),
		entryLBA:    le.Uint64(b[72:]),
		numEntries:  le.Uint32(b[80:]),
		entrySize:   le.Uint32(b[84:]),
		array:       le.Uint32(b[88:]),
	}
	switch {
	case h.lba != lba:
		return h, corrupt("GPT header at LBA %d says it is at LBA %d", lba, h.lba)
	case h.firstUsable > h.lastUsable || h.lastUsable >= sectors:
		return h, corrupt("GPT header at LBA %d: usable sectors %d-%d on a disk of %d", lba, h.firstUsable, h.lastUsable, sectors)
	case h.entrySize < 128 || h.entrySize%8 != 0:
		return h, corrupt("GPT header at LBA %d: entry size %d", lba, h.entrySize)
	case uint64(h.numEntries)*uint64(h.entrySize) > maxEntryArray:
		return h, corrupt("GPT header at LBA %d: %d entries of %d bytes", lba, h.numEntries, h.entrySize)
	}
	arraySectors := (uint64(h.numEntries)*uint64(h.entrySize) + uint64(len(b)) - 1) / uint64(len(b))
	if h.entryLBA < 1 || h.entryLBA >= sectors || h.entryLBA+arraySectors > sectors {
		return h, corrupt("GPT header at LBA %d: entry array at LBA %d beyond a disk of %d sectors", lba, h.entryLBA, sectors)
	}
	return h, nil
}

func parseGPTEntry(e []byte, num int, sectors uint64, ss int) (Partition, bool, error) {
	le := binary.LittleEndian
	typ := e[:16]
	if bytes.Equal(typ, make([]byte, 16)) {
		return Partition{}, false, nil
	}
	first, last := le.Uint64(e[32:]), le.Uint64(e[40:])
	if first == 0 || first > last || last >= sectors {
		return Partition{}, false, corrupt("GPT partition %d: sectors %d-%d on a disk of %d", num, first, last, sectors)
	}
	name := make([]uint16, 0, 36)
	for i := 56; i+1 < min(len(e), 128); i += 2 {
		c := le.Uint16(e[i:])
		if c == 0 {
			break
		}
		name = append(name, c)
	}
	t := guid(typ)
	p := Partition{
		Number:     num,
		Start:      int64(first) * int64(ss),
		Length:     int64(last-first+1) * int64(ss),
		Type:       t,
		TypeName:   gptTypeName(t),
		GUID:       guid(e[16:32]),
		Attributes: le.Uint64(e[48:]),
		Name:       string(utf16.Decode(name)),
	}
	return p, true, nil
}

// guid formats a GUID as it is stored: the first three fields little-endian.
func guid(b []byte) string {
	le, be := binary.LittleEndian, binary.BigEndian
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:]), be.Uint16(b[8:]), b[10:16])
}

// overlaps says which partitions share sectors, if any.
func overlaps(ps []Partition) string {
	s := slices.Clone(ps)
	slices.SortFunc(s, func(a, b Partition) int { return cmp.Compare(a.Start, b.Start) })
	var w []string
	for i := 1; i < len(s); i++ {
		if s[i].Start < s[i-1].Start+s[i-1].Length {
			w = append(w, fmt.Sprintf("partitions %d and %d overlap", s[i-1].Number, s[i].Number))
		}
	}
	return strings.Join(w, "; ")
}
