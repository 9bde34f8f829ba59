package exfat

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
	"unicode/utf16"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// Limits of a directory: the specification's largest, and a bound on the
// files one listing may hold in memory.
const (
	maxDirSize  = 256 << 20
	maxDirFiles = 1 << 18
	dirChunk    = 64 << 10 // read at a time, whatever the cluster size
)

// Directory entry types: bit 7 says in use, bit 6 secondary, bit 5
// benign (a driver may ignore what it does not know).
const (
	typeEnd       = 0x00
	typeInUse     = 0x80
	typeSecondary = 0x40
	typeBenign    = 0x20
	typeLabel     = 0x83
	typeFile      = 0x85
	typeStream    = 0xC0
	typeName      = 0xC1
)

const attrDir = fatchain.AttrDir

// dirent is a parsed file entry set.
type dirent struct {
	name  string
	label bool
	// err is set when the set's checksum does not match: the name is
	// listed, but the file cannot be trusted and does not load.
	err                 error
	attr                uint16
	flags               byte // of the stream extension
	first               uint32
	valid, size         uint64
	mtime, atime, btime time.Time
}

// dirIter returns a directory's 32-byte entries one after the other.
type dirIter struct {
	r   *Reader
	ext *fatchain.Map
	idx uint32 // cluster index being read
	in  int64  // offset in it
	buf []byte
	pos int
}

// next returns the next entry, or nil after the last.
func (it *dirIter) next() ([]byte, error) {
	if it.pos+32 <= len(it.buf) {
		e := it.buf[it.pos : it.pos+32]
		it.pos += 32
		return e, nil
	}
	cs := it.r.vol.clusterSize
	if it.in == cs {
		it.idx, it.in = it.idx+1, 0
	}
	disk, _, err := it.ext.Locate(it.idx)
	if err == fatchain.ErrEnd {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n := min(cs-it.in, dirChunk)
	if it.buf == nil {
		it.buf = make([]byte, n)
	}
	it.buf = it.buf[:n]
	off := it.r.vol.offset(disk) + it.in
	if m, err := it.r.chains.Dev.ReadAt(it.buf, off); int64(m) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("exfat: read %s at %d: %w", it.ext.What(), off, err)
	}
	it.in += n
	it.pos = 0
	return it.next()
}

// parseDir reads a directory's entry sets up to its end.
func parseDir(it *dirIter, root bool) ([]dirent, error) {
	var list []dirent
	for {
		e, err := it.next()
		if err != nil {
			return nil, err
		}
		if e == nil || e[0] == typeEnd {
			return list, nil
		}
		typ := e[0]
		switch {
		case typ&typeInUse == 0: // deleted
		case typ == typeLabel:
			if root {
				n := min(int(e[1]), 11)
				list = append(list, dirent{name: utf16String(e[2 : 2+2*n]), label: true})
			}
		case typ == typeFile:
			d, err := parseSet(it, e)
			if err != nil {
				return nil, err
			}
			if len(list) >= maxDirFiles {
				return nil, fmt.Errorf("%s: more than %d files: %w", it.ext.What(), maxDirFiles, fstree.ErrCorrupt)
			}
			list = append(list, d)
		case typ&typeSecondary != 0:
			// A secondary entry without its primary: left over.
		case typ&typeBenign != 0 || typ == 0x81 || typ == 0x82:
			// The allocation bitmap, the up-case table, the volume
			// GUID, padding: nothing a reader needs. Their secondary
			// entries, if any, are skipped as leftovers.
		default:
			return nil, fmt.Errorf("%s: unknown critical entry type %#x: %w", it.ext.What(), typ, fstree.ErrCorrupt)
		}
	}
}

// parseSet reads the secondary entries of the file entry e: a stream
// extension, then the name entries, then any others.
func parseSet(it *dirIter, e []byte) (dirent, error) {
	count := int(e[1])
	if count < 2 || count > 18 {
		return dirent{}, fmt.Errorf("%s: file entry with %d secondary entries: %w", it.ext.What(), count, fstree.ErrCorrupt)
	}
	var set [19 * 32]byte
	copy(set[:], e)
	for i := 1; i <= count; i++ {
		s, err := it.next()
		if err != nil {
			return dirent{}, err
		}
		if s == nil {
			return dirent{}, fmt.Errorf("%s: file entry set cut short: %w", it.ext.What(), fstree.ErrCorrupt)
		}
		copy(set[i*32:], s)
	}
	stream := set[32:64]
	nameLen := int(stream[3])
	names := (nameLen + 14) / 15
	if stream[0] != typeStream || nameLen == 0 || 1+names > count {
		return dirent{}, fmt.Errorf("%s: file entry set without a stream extension and name (type %#x, %d units): %w", it.ext.What(), stream[0], nameLen, fstree.ErrCorrupt)
	}
	units := make([]uint16, 0, names*15)
	for i := range names {
		ne := set[(2+i)*32:][:32]
		if ne[0] != typeName {
			return dirent{}, fmt.Errorf("%s: entry %#x where a name entry belongs: %w", it.ext.What(), ne[0], fstree.ErrCorrupt)
		}
		for j := 2; j < 32; j += 2 {
			units = append(units, binary.LittleEndian.Uint16(ne[j:]))
		}
	}
	for i := 2 + names; i <= count; i++ {
		if typ := set[i*32]; typ&typeInUse == 0 || typ&typeSecondary == 0 || typ&typeBenign == 0 {
			return dirent{}, fmt.Errorf("%s: entry %#x in a file entry set: %w", it.ext.What(), typ, fstree.ErrCorrupt)
		}
	}
	le32 := func(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
	d := dirent{
		name:  string(utf16.Decode(units[:nameLen])),
		attr:  binary.LittleEndian.Uint16(e[4:]),
		flags: stream[1],
		valid: binary.LittleEndian.Uint64(stream[8:]),
		first: le32(stream[20:]),
		size:  binary.LittleEndian.Uint64(stream[24:]),
		btime: timestamp(le32(e[8:]), e[20], e[22]),
		mtime: timestamp(le32(e[12:]), e[21], e[23]),
		atime: timestamp(le32(e[16:]), 0, e[24]),
	}
	set32 := set[:(1+count)*32]
	if sum := setChecksum(set32); it.r.verify && sum != binary.LittleEndian.Uint16(e[2:]) {
		d.err = fmt.Errorf("%s: file %q: entry set checksum %#04x, want %#04x: %w", it.ext.What(), d.name, binary.LittleEndian.Uint16(e[2:]), sum, fstree.ErrCorrupt)
	}
	return d, nil
}

// setChecksum is the checksum of an entry set, less its own two bytes.
func setChecksum(set []byte) uint16 {
	var sum uint16
	for i, c := range set {
		if i == 2 || i == 3 {
			continue
		}
		sum = (sum&1)<<15 + sum>>1 + uint16(c)
	}
	return sum
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// timestamp decodes an exFAT time: a FAT date and time, a count of 10 ms
// and the offset from UTC in 15-minute steps. A time without a valid
// offset is local time of an unknown zone and is taken as UTC, as Linux
// does by default. An invalid date is the zero time.
func timestamp(ts uint32, centis, utcOffset byte) time.Time {
	date, tm := ts>>16, ts&0xFFFF
	day, month, year := int(date&0x1F), int(date>>5&0x0F), 1980+int(date>>9)
	sec, minute, hour := int(tm&0x1F)*2, int(tm>>5&0x3F), int(tm>>11)
	if day == 0 || month == 0 || month > 12 || hour > 23 || minute > 59 || sec > 59 || centis > 199 {
		return time.Time{}
	}
	zone := time.UTC
	if utcOffset&0x80 != 0 {
		quarters := int(int8(utcOffset<<1) >> 1) // seven bits, signed
		zone = time.FixedZone("", quarters*15*60)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, int(centis)*10e6, zone)
}
