package lvm

import (
	"cmp"
	"slices"
	"strings"
)

// vgMeta is a volume group as its metadata text describes it.
type vgMeta struct {
	name, id   string
	seqno      int64
	extentSize int64              // bytes
	pvs        map[string]*pvMeta // by the text's name: "pv0"
	lvs        map[string]*lvMeta
	lvOrder    []string // as the text lists them
}

type pvMeta struct {
	name, id string
	devSize  int64 // bytes
	peStart  int64 // bytes
	peCount  int64
}

type lvMeta struct {
	name, id string
	visible  bool
	extents  int64
	segs     []*segMeta
}

type segMeta struct {
	start, count int64 // extents
	typ          string
	stripeSize   int64 // bytes; raid0 and striped over more than one area
	areas        []areaMeta
	legs         bool // areas are mirror legs, not stripes
	s            *section
}

// areaMeta names a PV (by the text's name) or an LV, at an extent.
type areaMeta struct {
	name   string
	extent int64
}

// maxBytes bounds any size the metadata computes, well within int64.
const maxBytes = 1 << 62

// vgSection finds the one section of the top level: the VG.
func vgSection(root *section) (*section, error) {
	if len(root.sections) != 1 {
		return nil, corrupt("metadata text has %d volume groups", len(root.sections))
	}
	return root.sections[0], nil
}

// vgHeader says which VG a metadata text describes, and its sequence number.
func vgHeader(text []byte) (*vgMeta, error) {
	root, err := parseConfig(text)
	if err != nil {
		return nil, err
	}
	s, err := vgSection(root)
	if err != nil {
		return nil, err
	}
	id, _ := s.str("id")
	seqno, _ := s.int("seqno")
	return &vgMeta{name: s.name, id: id, seqno: seqno}, nil
}

// parseVG decodes a metadata text.
func parseVG(text []byte) (*vgMeta, error) {
	root, err := parseConfig(text)
	if err != nil {
		return nil, err
	}
	s, err := vgSection(root)
	if err != nil {
		return nil, err
	}
	vg := &vgMeta{name: s.name, pvs: map[string]*pvMeta{}, lvs: map[string]*lvMeta{}}
	vg.id, _ = s.str("id")
	vg.seqno, _ = s.int("seqno")
	ext, ok := s.int("extent_size")
	if !ok || ext < 1 || ext > 1<<32 {
		return nil, corrupt("VG %s: extent size %d sectors", vg.name, ext)
	}
	vg.extentSize = ext * sectorSize
	pvs := s.sub("physical_volumes")
	if pvs == nil {
		return nil, corrupt("VG %s: no physical_volumes", vg.name)
	}
	for _, p := range pvs.sections {
		pv, err := vg.parsePV(p)
		if err != nil {
			return nil, err
		}
		vg.pvs[pv.name] = pv
	}
	if lvs := s.sub("logical_volumes"); lvs != nil {
		for _, l := range lvs.sections {
			lv, err := vg.parseLV(l)
			if err != nil {
				return nil, err
			}
			vg.lvs[lv.name] = lv
			vg.lvOrder = append(vg.lvOrder, lv.name)
		}
	}
	return vg, nil
}

func (vg *vgMeta) parsePV(p *section) (*pvMeta, error) {
	pv := &pvMeta{name: p.name}
	pv.id, _ = p.str("id")
	devSize, _ := p.int("dev_size")
	peStart, _ := p.int("pe_start")
	peCount, _ := p.int("pe_count")
	if devSize < 0 || devSize > maxBytes/sectorSize || peStart < 0 || peStart > devSize ||
		peCount < 0 || peCount > (devSize-peStart)*sectorSize/vg.extentSize {
		return nil, corrupt("VG %s: PV %s: %d extents of %d bytes from sector %d on a device of %d sectors",
			vg.name, pv.name, peCount, vg.extentSize, peStart, devSize)
	}
	pv.devSize, pv.peStart, pv.peCount = devSize*sectorSize, peStart*sectorSize, peCount
	return pv, nil
}

func (vg *vgMeta) parseLV(l *section) (*lvMeta, error) {
	lv := &lvMeta{name: l.name}
	lv.id, _ = l.str("id")
	lv.visible = slices.Contains(l.strings("status"), "VISIBLE")
	maxExtents := maxBytes / vg.extentSize
	for _, s := range l.sections {
		if !strings.HasPrefix(s.name, "segment") {
			continue
		}
		seg, err := vg.parseSegment(lv, s)
		if err != nil {
			return nil, err
		}
		if seg.start < 0 || seg.count < 1 || seg.start > maxExtents-seg.count {
			return nil, corrupt("LV %s/%s: %s: extents %d+%d", vg.name, lv.name, s.name, seg.start, seg.count)
		}
		lv.segs = append(lv.segs, seg)
	}
	slices.SortFunc(lv.segs, func(a, b *segMeta) int { return cmp.Compare(a.start, b.start) })
	for _, seg := range lv.segs {
		if seg.start != lv.extents {
			return nil, corrupt("LV %s/%s: segment at extent %d, want %d", vg.name, lv.name, seg.start, lv.extents)
		}
		lv.extents += seg.count
	}
	return lv, nil
}

func (vg *vgMeta) parseSegment(lv *lvMeta, s *section) (*segMeta, error) {
	seg := &segMeta{s: s}
	seg.start, _ = s.int("start_extent")
	seg.count, _ = s.int("extent_count")
	seg.typ, _ = s.str("type")
	bad := func(what string, args ...any) error {
		return corrupt("LV %s/%s: %s of type %q: "+what, append([]any{vg.name, lv.name, s.name, seg.typ}, args...)...)
	}
	// pairs reads an array of (name, extent) pairs.
	pairs := func(key string, n int64) error {
		l, _ := s.list(key)
		if int64(len(l)) != 2*n {
			return bad("%d items in %s, want %d", len(l), key, 2*n)
		}
		for i := 0; i < len(l); i += 2 {
			name, ok1 := l[i].(string)
			ext, ok2 := l[i+1].(int64)
			if !ok1 || !ok2 || ext < 0 {
				return bad("%s item %d", key, i/2)
			}
			seg.areas = append(seg.areas, areaMeta{name, ext})
		}
		return nil
	}
	switch seg.typ {
	case "striped":
		n, _ := s.int("stripe_count")
		if n < 1 || n > 128 {
			return nil, bad("%d stripes", n)
		}
		if err := pairs("stripes", n); err != nil {
			return nil, err
		}
		if n > 1 {
			if err := seg.stripes(s, n, vg.extentSize, bad); err != nil {
				return nil, err
			}
		}
	case "mirror":
		n, _ := s.int("mirror_count")
		if n < 1 || n > 128 {
			return nil, bad("%d mirrors", n)
		}
		if err := pairs("mirrors", n); err != nil {
			return nil, err
		}
		seg.legs = true
	case "raid1", "raid0", "raid0_meta":
		// LVM writes raid0 as stripe_count and raid0_lvs (images only,
		// or raids when it has metadata sub-LVs), the others as
		// device_count and raids.
		n, ok := s.int("device_count")
		if !ok {
			n, _ = s.int("stripe_count")
		}
		if n < 1 || n > 128 {
			return nil, bad("%d devices", n)
		}
		l, ok := s.list("raids")
		if !ok {
			l, _ = s.list("raid0_lvs")
		}
		// With metadata sub-LVs the list pairs each image with its
		// metadata: rmeta, rimage, rmeta, rimage...
		step := 1
		switch int64(len(l)) {
		case 2 * n:
			step = 2
		case n:
		default:
			return nil, bad("%d sub-LVs for %d devices", len(l), n)
		}
		for i := step - 1; i < len(l); i += step {
			name, ok := l[i].(string)
			if !ok {
				return nil, bad("sub-LV %d", i)
			}
			// A RAID image maps the segment's extents from its own
			// extent 0.
			seg.areas = append(seg.areas, areaMeta{name, 0})
		}
		if seg.typ == "raid1" {
			seg.legs = true
		} else if n > 1 {
			if err := seg.stripes(s, n, vg.extentSize, bad); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range seg.areas {
		if vg.pvs[a.name] == nil && a.name == lv.name {
			return nil, bad("maps onto itself")
		}
	}
	return seg, nil
}

// stripes checks a striped segment's stripe size: a power of two that
// divides the extents each of the n areas holds, as device-mapper wants.
func (seg *segMeta) stripes(s *section, n, extentSize int64, bad func(string, ...any) error) error {
	size, _ := s.int("stripe_size")
	if size < 1 || size > 1<<32 || size&(size-1) != 0 {
		return bad("stripe size %d sectors", size)
	}
	seg.stripeSize = size * sectorSize
	if seg.count%n != 0 || (seg.count/n*extentSize)%seg.stripeSize != 0 {
		return bad("%d extents over %d stripes of %d bytes", seg.count, n, seg.stripeSize)
	}
	return nil
}
