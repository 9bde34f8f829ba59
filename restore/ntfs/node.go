package ntfs

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io/fs"
	"slices"
	"time"
	"unicode/utf16"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// refMask keeps the record number of a file reference, whose top 16 bits
// are the record's sequence number.
const refMask = 1<<48 - 1

// File name namespaces.
const (
	namePOSIX = 0
	nameWin32 = 1
	nameDOS   = 2
)

// Bits of $STANDARD_INFORMATION's file attributes that are NTFS's own,
// not FILE_ATTRIBUTE_*.
const (
	dupFileNameIndexPresent = 0x10000000
	dupViewIndexPresent     = 0x20000000
)

// node is one file: its base MFT record with the extension records its
// attribute list names, parsed.
type node struct {
	num     uint64
	seq     uint16
	dir     bool
	meta    fstree.Meta
	parents []uint64 // the directories its names are in
	attrs   []attr   // every attribute but the non-resident extents merged below
	data    *dataAttr
	streams map[string]*dataAttr
	alloc   *dataAttr // the $I30 index allocation of a directory
	link    string    // symlink target, when meta says symlink
	records int       // MFT records read for it: its cost in the cache
}

func (n *node) Meta() fstree.Meta { return n.meta }

// find returns a node's first attribute of a type and name, nil if none.
func (n *node) find(typ uint32, name string) *attr {
	for i := range n.attrs {
		if n.attrs[i].typ == typ && n.attrs[i].name == name {
			return &n.attrs[i]
		}
	}
	return nil
}

// dataAttr is one whole data attribute: resident bytes, or the runs of all
// its extents.
type dataAttr struct {
	resident  bool
	value     []byte
	runs      []run
	size      int64
	init      int64
	compUnit  uint8
	encrypted bool
}

func (d *dataAttr) compressed() bool { return d.compUnit != 0 }

// node returns record num as a node, from the cache or the volume.
func (r *Reader) node(num uint64) (*node, error) {
	if n, ok := r.nodes.Get(num); ok {
		return n, nil
	}
	rec, err := r.loadRecord(num)
	if err != nil {
		return nil, err
	}
	if rec.base != 0 {
		return nil, fmt.Errorf("MFT record %d is an extension of record %d: %w", num, rec.base, fstree.ErrCorrupt)
	}
	n, err := r.buildNode(rec)
	if err != nil {
		return nil, fmt.Errorf("MFT record %d: %w", num, err)
	}
	r.nodes.Add(num, n, int64(n.records*r.recordSize))
	return n, nil
}

// buildNode gathers a base record's attributes, from its extension records
// too, and reads what Meta needs.
func (r *Reader) buildNode(rec *record) (*node, error) {
	attrs := rec.attrs
	records := 1
	if i := slices.IndexFunc(attrs, func(a attr) bool { return a.typ == attrAttributeList }); i >= 0 {
		ext, n, err := r.extensionAttrs(rec, &attrs[i])
		if err != nil {
			return nil, err
		}
		attrs = append(slices.Clip(attrs), ext...)
		records += n
	}
	n := &node{num: rec.num, seq: rec.seq, dir: rec.flags&recordDirectory != 0, streams: map[string]*dataAttr{}, records: records}
	// Group the extents of each non-resident attribute.
	type key struct {
		typ  uint32
		name string
	}
	extents := map[key][]attr{}
	for _, a := range attrs {
		if !a.resident && (a.typ == attrData || a.typ == attrIndexAllocation) {
			k := key{a.typ, a.name}
			extents[k] = append(extents[k], a)
			continue
		}
		n.attrs = append(n.attrs, a)
		if a.typ == attrData {
			d := &dataAttr{resident: true, value: a.value, size: a.dataSize, init: a.initSize, encrypted: a.flags&attrFlagEncrypted != 0}
			if err := n.addData(a.name, d); err != nil {
				return nil, err
			}
		}
	}
	for k, ext := range extents {
		d, err := mergeExtents(ext)
		if err == nil {
			err = r.checkData(d, k.name)
		}
		if err != nil {
			return nil, fmt.Errorf("attribute 0x%x %q: %w", k.typ, k.name, err)
		}
		if k.typ == attrIndexAllocation {
			if k.name == "$I30" {
				n.alloc = d
			}
			continue
		}
		if err := n.addData(k.name, d); err != nil {
			return nil, err
		}
	}
	if err := r.fillMeta(n); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *node) addData(name string, d *dataAttr) error {
	if name == "" {
		if n.data != nil {
			return fmt.Errorf("two unnamed $DATA attributes: %w", fstree.ErrCorrupt)
		}
		n.data = d
		return nil
	}
	if _, dup := n.streams[name]; dup {
		return fmt.Errorf("two $DATA attributes named %q: %w", name, fstree.ErrCorrupt)
	}
	n.streams[name] = d
	return nil
}

// mergeExtents joins the extents of one non-resident attribute, which the
// records of an attribute list may hold in any order.
func mergeExtents(ext []attr) (*dataAttr, error) {
	slices.SortFunc(ext, func(a, b attr) int { return cmp.Compare(a.lowVCN, b.lowVCN) })
	first := ext[0]
	d := &dataAttr{
		size:      first.dataSize,
		init:      min(first.initSize, first.dataSize),
		encrypted: first.flags&attrFlagEncrypted != 0,
	}
	if first.flags&attrFlagCompressed != 0 {
		if first.compUnit == 0 {
			return nil, fmt.Errorf("compressed without a compression unit: %w", fstree.ErrCorrupt)
		}
		d.compUnit = first.compUnit
	}
	next := int64(0)
	for _, a := range ext {
		if a.lowVCN != next {
			return nil, fmt.Errorf("extent at VCN %d, want %d: %w", a.lowVCN, next, fstree.ErrCorrupt)
		}
		d.runs = append(d.runs, a.runs...)
		next = a.highVCN + 1
	}
	return d, nil
}

// checkData checks what a data attribute's readers rely on: the size lies
// within its clusters, and compression units are whole runs of clusters
// LZNT1 can fill.
func (r *Reader) checkData(d *dataAttr, name string) error {
	if d.resident {
		return nil
	}
	vcns := runLength(d.runs)
	if d.size > vcns*r.clusterSize {
		return fmt.Errorf("%q: %d bytes in %d clusters: %w", name, d.size, vcns, fstree.ErrCorrupt)
	}
	if d.compressed() {
		if d.compUnit > 8 || r.clusterSize<<d.compUnit > maxCompressionUnit {
			return fmt.Errorf("%q: compression unit of 2^%d clusters of %d bytes: %w", name, d.compUnit, r.clusterSize, fstree.ErrCorrupt)
		}
	}
	return nil
}

// extensionAttrs returns the attributes that rec's attribute list places
// in other records, and how many records it read.
func (r *Reader) extensionAttrs(rec *record, list *attr) ([]attr, int, error) {
	value := list.value
	if !list.resident {
		if list.dataSize > maxAttrListSize || list.lowVCN != 0 {
			return nil, 0, fmt.Errorf("attribute list of %d bytes from VCN %d: %w", list.dataSize, list.lowVCN, fstree.ErrCorrupt)
		}
		d := &dataAttr{runs: list.runs, size: list.dataSize, init: min(list.initSize, list.dataSize)}
		if err := r.checkData(d, "$ATTRIBUTE_LIST"); err != nil {
			return nil, 0, err
		}
		value = make([]byte, d.size)
		if _, err := r.newStream(d).ReadAt(value, 0); err != nil {
			return nil, 0, fmt.Errorf("attribute list: %w", err)
		}
	}
	seen := map[uint64]bool{rec.num: true}
	var out []attr
	for off := 0; off+0x1a <= len(value); {
		length := int(binary.LittleEndian.Uint16(value[off+4:]))
		if length < 0x1a || length > len(value)-off {
			return nil, 0, fmt.Errorf("attribute list entry at %d of %d bytes: %w", off, length, fstree.ErrCorrupt)
		}
		num := binary.LittleEndian.Uint64(value[off+0x10:]) & refMask
		off += length
		if seen[num] {
			continue
		}
		if seen[num] = true; len(seen) > maxExtensionRecs {
			return nil, 0, fmt.Errorf("attribute list names more than %d records: %w", maxExtensionRecs, fstree.ErrCorrupt)
		}
		ext, err := r.loadRecord(num)
		if err != nil {
			return nil, 0, fmt.Errorf("extension record: %w", err)
		}
		if ext.base != rec.num {
			return nil, 0, fmt.Errorf("extension record %d belongs to record %d: %w", num, ext.base, fstree.ErrCorrupt)
		}
		for _, a := range ext.attrs {
			if a.typ == attrAttributeList {
				return nil, 0, fmt.Errorf("extension record %d holds an attribute list: %w", num, fstree.ErrCorrupt)
			}
		}
		out = append(out, ext.attrs...)
	}
	return out, len(seen) - 1, nil
}

// fillMeta reads a node's times, attributes and names, and decides its
// type: directory, symlink or regular file.
func (r *Reader) fillMeta(n *node) error {
	m := &n.meta
	m.Inode = n.num
	si := n.find(attrStandardInformation, "")
	if si == nil || !si.resident || len(si.value) < 0x24 {
		return fmt.Errorf("no $STANDARD_INFORMATION: %w", fstree.ErrCorrupt)
	}
	v := si.value
	m.Btime = ntfsTime(binary.LittleEndian.Uint64(v[0x00:]))
	m.Mtime = ntfsTime(binary.LittleEndian.Uint64(v[0x08:]))
	m.Ctime = ntfsTime(binary.LittleEndian.Uint64(v[0x10:]))
	m.Atime = ntfsTime(binary.LittleEndian.Uint64(v[0x18:]))
	m.Attributes = binary.LittleEndian.Uint32(v[0x20:]) &^ (dupFileNameIndexPresent | dupViewIndexPresent)

	for _, a := range n.attrs {
		if a.typ != attrFileName {
			continue
		}
		fn, err := parseFileName(a.value)
		if err != nil {
			return err
		}
		n.parents = append(n.parents, fn.parent)
		if fn.namespace != nameDOS {
			m.Nlink++
		}
	}
	if m.Nlink == 0 {
		return fmt.Errorf("no $FILE_NAME: %w", fstree.ErrCorrupt)
	}
	if n.dir && m.Nlink != 1 && n.num != recRoot {
		return fmt.Errorf("directory with %d names: %w", m.Nlink, fstree.ErrCorrupt)
	}
	for name, s := range n.streams {
		m.Streams = append(m.Streams, fstree.Stream{Name: name, Size: s.size})
	}
	slices.SortFunc(m.Streams, func(a, b fstree.Stream) int { return cmp.Compare(a.Name, b.Name) })

	link, isLink, err := r.symlink(n)
	if err != nil {
		return err
	}
	switch {
	case isLink:
		n.dir = false
		n.link = link
		m.Mode = fs.ModeSymlink | 0o777
		m.Size = int64(len(link))
	case n.dir:
		m.Mode = fs.ModeDir | 0o755
		m.Attributes |= fstree.AttrDirectory
	default:
		m.Mode = 0o644
		if m.Attributes&fstree.AttrReadOnly != 0 {
			m.Mode = 0o444
		}
		if n.data != nil {
			m.Size = n.data.size
		}
	}
	return nil
}

// fileName is a $FILE_NAME attribute's value, as records and index keys
// hold it.
type fileName struct {
	parent    uint64 // record number
	flags     uint32
	namespace byte
	name      string
}

func parseFileName(v []byte) (fileName, error) {
	if len(v) < 0x42 || len(v) < 0x42+2*int(v[0x40]) {
		return fileName{}, fmt.Errorf("$FILE_NAME of %d bytes: %w", len(v), fstree.ErrCorrupt)
	}
	return fileName{
		parent:    binary.LittleEndian.Uint64(v) & refMask,
		flags:     binary.LittleEndian.Uint32(v[0x38:]),
		namespace: v[0x41],
		name:      decodeName(v[0x42 : 0x42+2*int(v[0x40])]),
	}, nil
}

// decodeName decodes UTF-16LE; unpaired surrogates become U+FFFD.
func decodeName(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// ntfsTime converts 100-nanosecond intervals since 1601 to a time.
func ntfsTime(t uint64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	const unixEpoch = 116444736000000000 // 1970 in intervals since 1601
	v := int64(t) - unixEpoch
	return time.Unix(v/1e7, v%1e7*100)
}
