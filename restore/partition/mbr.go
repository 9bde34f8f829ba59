package partition

import (
	"encoding/binary"
	"fmt"
	"io"
)

// maxLogical bounds an extended partition's chain of boot records; Linux
// numbers at most 256 partitions per disk.
const maxLogical = 256

// mbrEntry is one of the four slots of an MBR or an extended boot record.
type mbrEntry struct {
	status  byte
	typ     byte
	lba     uint32 // first sector
	sectors uint32
}

type mbrSector struct {
	diskID  uint32
	entries [4]mbrEntry
}

// parseMBR decodes a boot sector's partition slots. ok is false when the
// sector is no partition table: no 0x55AA signature, or a status byte that
// is neither 0 nor 0x80 (the code of a filesystem's boot sector, which also
// ends with 0x55AA, fills these bytes).
func parseMBR(b []byte) (m mbrSector, ok bool) {
	if b[510] != 0x55 || b[511] != 0xAA {
		return m, false
	}
	m.diskID = binary.LittleEndian.Uint32(b[440:])
	for i := range m.entries {
		e := b[446+16*i:]
		m.entries[i] = mbrEntry{
			status:  e[0],
			typ:     e[4],
			lba:     binary.LittleEndian.Uint32(e[8:]),
			sectors: binary.LittleEndian.Uint32(e[12:]),
		}
		if e[0] != 0 && e[0] != 0x80 {
			return m, false
		}
	}
	return m, true
}

func (m *mbrSector) protective() bool {
	for _, e := range m.entries {
		if e.typ == 0xEE {
			return true
		}
	}
	return false
}

func (m *mbrSector) unused() bool {
	for _, e := range m.entries {
		if !e.empty() {
			return false
		}
	}
	return true
}

func (e mbrEntry) empty() bool { return e.typ == 0 || e.sectors == 0 }

func isExtended(typ byte) bool { return typ == 0x05 || typ == 0x0F || typ == 0x85 }

func readMBR(r io.ReaderAt, size int64, m mbrSector, ss int) (*Table, error) {
	t := &Table{Kind: KindMBR, SectorSize: ss, DiskID: m.diskID}
	sectors := size / int64(ss)
	next := 5
	for i, e := range m.entries {
		if e.empty() {
			continue
		}
		start, n := int64(e.lba), int64(e.sectors)
		if start == 0 || start+n > sectors {
			return nil, corrupt("MBR partition %d: sectors %d-%d of %d-byte sectors beyond a disk of %d", i+1, start, start+n-1, ss, sectors)
		}
		p := mbrPartition(i+1, e, start, n, ss)
		t.Partitions = append(t.Partitions, p)
		if !p.Extended {
			continue
		}
		logical, err := readEBRs(r, start, n, ss, next)
		if err != nil {
			return nil, err
		}
		next += len(logical)
		t.Partitions = append(t.Partitions, logical...)
	}
	return t, nil
}

func mbrPartition(num int, e mbrEntry, start, n int64, ss int) Partition {
	p := Partition{
		Number:   num,
		Start:    start * int64(ss),
		Length:   n * int64(ss),
		Type:     fmt.Sprintf("%02x", e.typ),
		TypeName: mbrTypeName(e.typ),
		Bootable: e.status == 0x80,
		Extended: isExtended(e.typ),
	}
	return p
}

// readEBRs follows the chain of extended boot records of the extended
// partition at sectors [ext, ext+n). Each record holds a logical partition,
// placed relative to the record, and a link to the next record, placed
// relative to the extended partition.
func readEBRs(r io.ReaderAt, ext, n int64, ss, num int) ([]Partition, error) {
	var out []Partition
	seen := map[int64]bool{}
	b := make([]byte, 512)
	for cur := ext; ; {
		if seen[cur] {
			return nil, corrupt("extended boot record chain loops at sector %d", cur)
		}
		if len(seen) >= maxLogical {
			return nil, corrupt("extended partition at sector %d: more than %d boot records", ext, maxLogical)
		}
		seen[cur] = true
		if err := readFull(r, b, cur*int64(ss)); err != nil {
			return nil, fmt.Errorf("partition: read extended boot record at sector %d: %w", cur, err)
		}
		m, ok := parseMBR(b)
		if !ok {
			return nil, corrupt("extended boot record at sector %d: no signature", cur)
		}
		if e := m.entries[0]; !e.empty() {
			start, count := cur+int64(e.lba), int64(e.sectors)
			if e.lba == 0 || start+count > ext+n {
				return nil, corrupt("logical partition %d: sectors %d-%d outside its extended partition %d-%d", num, start, start+count-1, ext, ext+n-1)
			}
			out = append(out, mbrPartition(num, e, start, count, ss))
			num++
		}
		link := m.entries[1]
		if link.empty() {
			return out, nil
		}
		if !isExtended(link.typ) {
			return nil, corrupt("extended boot record at sector %d: link of type %02x", cur, link.typ)
		}
		nxt := ext + int64(link.lba)
		if link.lba == 0 || nxt >= ext+n {
			return nil, corrupt("extended boot record at sector %d: link to sector %d outside its extended partition %d-%d", cur, nxt, ext, ext+n-1)
		}
		cur = nxt
	}
}
