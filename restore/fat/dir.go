package fat

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// A FAT directory holds at most 65536 entries of 32 bytes.
const maxDirSize = 65536 * 32

// Directory entry attributes.
const (
	attrVolumeID = 0x08
	attrDir      = fatchain.AttrDir
	attrLongName = 0x0F // read-only, hidden, system and volume ID at once
)

// dirent is a parsed directory entry.
type dirent struct {
	name                string
	label               bool // the volume label, in the root directory
	attr                byte
	cluster             uint32
	size                uint32
	mtime, atime, btime time.Time
}

// list returns a directory's entries, from the cache or the volume.
func (r *Reader) list(d *node) ([]dirent, error) {
	key := d.cluster
	if d.root && r.vol.bits != 32 {
		key = 0
	}
	if list, ok := r.dirs.Get(key); ok {
		return list, nil
	}
	it := &dirIter{r: r}
	if key == 0 {
		it.fixed, it.left = r.vol.rootOffset, r.vol.rootSize
	} else {
		it.chain = r.chains.NewChain(d.cluster, uint32(max(maxDirSize/r.vol.clusterSize, 1)), fmt.Sprintf("directory at cluster %d", d.cluster))
	}
	list, err := parseDir(it, d.root)
	if err != nil {
		return nil, err
	}
	r.dirs.Add(key, list, int64(len(list)+1))
	return list, nil
}

// dirIter returns a directory's 32-byte entries one after the other,
// reading a cluster (or a piece of the fixed root directory) at a time.
type dirIter struct {
	r     *Reader
	chain *fatchain.Chain // nil for the fixed root directory
	fixed int64           // fixed root: where the unread part starts
	left  int64           // and its size
	buf   []byte
	pos   int
}

// next returns the next entry, or nil after the last.
func (it *dirIter) next() ([]byte, error) {
	if it.pos+32 <= len(it.buf) {
		e := it.buf[it.pos : it.pos+32]
		it.pos += 32
		return e, nil
	}
	var off, n int64
	if it.chain == nil {
		if it.left < 32 {
			return nil, nil
		}
		off, n = it.fixed, min(it.left, 32<<10)
		it.fixed += n
		it.left -= n
	} else {
		c, _, err := it.chain.Next()
		if err != nil || c == 0 {
			return nil, err
		}
		off, n = it.r.vol.offset(c), it.r.vol.clusterSize
	}
	if it.buf == nil {
		it.buf = make([]byte, n)
	}
	it.buf = it.buf[:n]
	if m, err := it.r.chains.Dev.ReadAt(it.buf, off); int64(m) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("fat: read directory at %d: %w", off, err)
	}
	it.pos = 0
	return it.next()
}

// parseDir reads a directory's entries up to its end marker, joining long
// names to the short entries they belong to.
func parseDir(it *dirIter, root bool) ([]dirent, error) {
	var (
		list []dirent
		long longName
	)
	for {
		e, err := it.next()
		if err != nil {
			return nil, err
		}
		if e == nil || e[0] == 0x00 {
			return list, nil
		}
		attr := e[11]
		switch {
		case e[0] == 0xE5: // deleted
			long.reset()
		case attr&0x3F == attrLongName:
			long.add(e)
		case attr&attrVolumeID != 0:
			// The label, or a stray volume entry outside the root.
			if root && attr&attrDir == 0 {
				list = append(list, dirent{name: oemString(e[:11]), label: true})
			}
			long.reset()
		case e[0] == '.' && (string(e[:11]) == ".          " || string(e[:11]) == "..         "):
			long.reset()
		default:
			d := entry(e)
			if it.r.vol.bits != 32 {
				d.cluster &= 0xFFFF // the high half is OS/2's, not a cluster's
			}
			if name, ok := long.name(e[:11]); ok {
				d.name = name
			}
			long.reset()
			list = append(list, d)
		}
	}
}

// entry parses a short directory entry.
func entry(e []byte) dirent {
	le := func(i int) uint16 { return uint16(e[i]) | uint16(e[i+1])<<8 }
	d := dirent{
		name:    shortName(e[:11], e[12]),
		attr:    e[11],
		cluster: uint32(le(26)) | uint32(le(20))<<16,
		size:    uint32(le(28)) | uint32(le(30))<<16,
		mtime:   dosTime(le(24), le(22), 0),
		btime:   dosTime(le(16), le(14), e[13]),
		atime:   dosTime(le(18), 0, 0),
	}
	return d
}

// longName collects a VFAT long name: entries with ordinals n|0x40, n-1,
// ..., 1, each with 13 UTF-16 units and the checksum of the short name
// that follows them.
type longName struct {
	units [20 * 13]uint16
	want  byte // ordinal of the next entry; 0: none expected
	count byte // entries in the name
	sum   byte
	ok    bool // entries so far fit together
}

func (l *longName) reset() { *l = longName{} }

func (l *longName) add(e []byte) {
	ord := e[0] & 0x1F
	if e[0]&0x40 != 0 {
		l.reset()
		if ord == 0 || ord > 20 {
			return
		}
		l.count, l.want, l.sum, l.ok = ord, ord, e[13], true
	}
	if !l.ok || ord != l.want || e[13] != l.sum {
		l.ok = false
		return
	}
	at := int(ord-1) * 13
	for i, off := range [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
		l.units[at+i] = uint16(e[off]) | uint16(e[off+1])<<8
	}
	l.want--
}

// name returns the long name if one complete and matching the short name
// was collected; else the short name stands, as Windows and Linux do.
func (l *longName) name(short []byte) (string, bool) {
	if !l.ok || l.count == 0 || l.want != 0 || l.sum != checksum(short) {
		return "", false
	}
	u := l.units[:int(l.count)*13]
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	if len(u) == 0 {
		return "", false
	}
	return string(utf16.Decode(u)), true
}

func checksum(short []byte) byte {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// shortName returns an 8.3 name. Windows NT marks a name whose base or
// extension is all lower case in the entry's reserved byte rather than
// writing a long name for it.
func shortName(b []byte, ntCase byte) string {
	base := []byte(strings.TrimRight(string(b[:8]), " "))
	ext := []byte(strings.TrimRight(string(b[8:11]), " "))
	if len(base) > 0 && base[0] == 0x05 { // a real 0xE5, escaped from "deleted"
		base[0] = 0xE5
	}
	if ntCase&0x08 != 0 {
		lower(base)
	}
	if ntCase&0x10 != 0 {
		lower(ext)
	}
	name := oemString(base)
	if len(ext) > 0 {
		name += "." + oemString(ext)
	}
	return name
}

// lower makes the capitals of code page 437 small, as Windows and Linux
// do for a name whose case bits say so.
func lower(b []byte) {
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 0x80:
			if l, ok := cp437Lower[c]; ok {
				b[i] = l
			}
		}
	}
}

var cp437Lower = map[byte]byte{
	0x80: 0x87, 0x8E: 0x84, 0x8F: 0x86, 0x90: 0x82, 0x92: 0x91, 0x99: 0x94, 0x9A: 0x81, 0xA5: 0xA4,
}

// oemString decodes a short name or label in code page 437, the OEM code
// page that Linux and mtools assume, and trims its padding.
func oemString(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if c < 0x80 {
			s.WriteByte(c)
		} else {
			s.WriteRune(cp437[c-0x80])
		}
	}
	return strings.TrimRight(s.String(), " ")
}

// dosTime decodes a FAT date and time with its count of 10 ms. FAT stores
// local time without a zone; a reader cannot know the zone of the machine
// that wrote it, so the time is taken as UTC, as Linux does by default.
// An invalid date is the zero time.
func dosTime(date, tm uint16, centis byte) time.Time {
	day, month, year := int(date&0x1F), int(date>>5&0x0F), 1980+int(date>>9)
	sec, minute, hour := int(tm&0x1F)*2, int(tm>>5&0x3F), int(tm>>11)
	if day == 0 || month == 0 || month > 12 || hour > 23 || minute > 59 || sec > 59 || centis > 199 {
		return time.Time{}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, int(centis)*10e6, time.UTC)
}

var cp437 = [128]rune{
	'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
	'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ',
	'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»',
	'░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐',
	'└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
	'╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀',
	'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩',
	'≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u00a0',
}
