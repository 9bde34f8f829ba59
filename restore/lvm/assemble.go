package lvm

import (
	"errors"
	"fmt"
	"io"
)

// Why an LV cannot be read, besides a corrupt image.
var (
	// ErrUnsupported marks an LV whose segment type is not read: thin,
	// snapshot, cache, parity RAID.
	ErrUnsupported = errors.New("not supported")
	// ErrMissingPV marks an LV with extents on a PV that was not given.
	ErrMissingPV = errors.New("physical volume missing")
)

// maxNesting bounds how deep LVs may stack on sub-LVs (a raid1 on its
// images is one level).
const maxNesting = 8

// Assemble returns the visible logical volumes of the volume groups the
// PVs describe. Each VG is read from the most recent metadata among its
// PVs (a PV without metadata areas still lends its extents); devices gives
// each PV's reader by UUID. A VG whose metadata is corrupt is left out and
// named in the error; an LV that cannot be read is returned with its Err.
func Assemble(pvs []*PV, devices map[string]io.ReaderAt) ([]*LV, error) {
	newest := map[string]*PV{}
	var order []string
	sizes := map[string]int64{}
	for _, pv := range pvs {
		sizes[pv.UUID] = pv.Size
		if pv.Metadata == nil {
			continue
		}
		key := pv.VGID + "/" + pv.VGName
		cur, seen := newest[key]
		if !seen {
			order = append(order, key)
		}
		if !seen || pv.Seqno > cur.Seqno {
			newest[key] = pv
		}
	}
	var out []*LV
	var errs []error
	for _, key := range order {
		pv := newest[key]
		vg, err := parseVG(pv.Metadata)
		if err != nil {
			errs = append(errs, fmt.Errorf("VG %s (metadata of PV %s): %w", pv.VGName, pv.UUID, err))
			continue
		}
		b := &builder{vg: vg, devices: devices, sizes: sizes,
			built: map[string]*lvReader{}, building: map[string]bool{}, cow: map[string]string{}}
		out = append(out, b.assemble()...)
	}
	return out, errors.Join(errs...)
}

// builder maps the LVs of one VG.
type builder struct {
	vg       *vgMeta
	devices  map[string]io.ReaderAt
	sizes    map[string]int64
	built    map[string]*lvReader
	building map[string]bool   // LVs being built: a cycle if met again
	cow      map[string]string // a snapshot's store LV -> its origin
}

func (b *builder) assemble() []*LV {
	for _, name := range b.vg.lvOrder {
		for _, seg := range b.vg.lvs[name].segs {
			if seg.typ != "snapshot" {
				continue
			}
			cow, _ := seg.s.str("cow_store")
			origin, _ := seg.s.str("origin")
			b.cow[cow] = origin
		}
	}
	var out []*LV
	for _, name := range b.vg.lvOrder {
		m := b.vg.lvs[name]
		// LVM keeps a snapshot's store hidden and shows it as the
		// snapshot when its origin is visible.
		origin, isCOW := b.cow[name]
		if !m.visible && !(isCOW && b.vg.lvs[origin] != nil && b.vg.lvs[origin].visible) {
			continue
		}
		lv := &LV{
			VG: b.vg.name, VGID: b.vg.id, Name: m.name, UUID: m.id,
			Size:     m.extents * b.vg.extentSize,
			Segments: b.segments(m),
		}
		r, err := b.build(m, 0)
		if err != nil {
			lv.Err = err
		} else {
			lv.ReaderAt = r
		}
		out = append(out, lv)
	}
	return out
}

func (b *builder) segments(m *lvMeta) []Segment {
	ext := b.vg.extentSize
	var out []Segment
	for _, s := range m.segs {
		seg := Segment{Start: s.start * ext, Length: s.count * ext, Type: s.typ, StripeSize: s.stripeSize}
		if s.typ == "striped" || s.typ == "raid0" || s.typ == "raid0_meta" {
			seg.Stripes = len(s.areas)
		}
		for _, a := range s.areas {
			if pv := b.vg.pvs[a.name]; pv != nil {
				seg.Areas = append(seg.Areas, SegmentArea{PV: pv.id, Extent: a.extent})
			} else {
				seg.Areas = append(seg.Areas, SegmentArea{LV: a.name, Extent: a.extent})
			}
		}
		out = append(out, seg)
	}
	return out
}

// build maps an LV's extents onto PVs, through its sub-LVs.
func (b *builder) build(m *lvMeta, depth int) (*lvReader, error) {
	if r := b.built[m.name]; r != nil {
		return r, nil
	}
	if b.building[m.name] || depth > maxNesting {
		return nil, corrupt("LV %s/%s: sub-LVs loop or nest more than %d deep", b.vg.name, m.name, maxNesting)
	}
	b.building[m.name] = true
	defer delete(b.building, m.name)
	if origin, ok := b.cow[m.name]; ok {
		return nil, fmt.Errorf("lvm: LV %s/%s: snapshot of %s: %w", b.vg.name, m.name, origin, ErrUnsupported)
	}
	ext := b.vg.extentSize
	r := &lvReader{size: m.extents * ext}
	for _, s := range m.segs {
		seg := mappedSeg{start: s.start * ext, length: s.count * ext}
		switch s.typ {
		case "striped", "raid0", "raid0_meta":
			per := seg.length / int64(len(s.areas))
			for _, a := range s.areas {
				sp, err := b.area(m, a, per, depth)
				if err != nil {
					return nil, err
				}
				seg.areas = append(seg.areas, sp)
			}
			seg.stripe = s.stripeSize
			if len(s.areas) == 1 {
				seg.stripe = seg.length
			}
		case "mirror", "raid1":
			// Every leg holds the same data: read the first that can
			// be read.
			var errs []error
			for _, a := range s.areas {
				sp, err := b.area(m, a, seg.length, depth)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				seg.areas, seg.stripe = []span{sp}, seg.length
				break
			}
			if seg.areas == nil {
				return nil, fmt.Errorf("lvm: LV %s/%s: no leg of its %s segment can be read: %w", b.vg.name, m.name, s.typ, errors.Join(errs...))
			}
		default:
			return nil, fmt.Errorf("lvm: LV %s/%s: segment type %q: %w", b.vg.name, m.name, s.typ, ErrUnsupported)
		}
		r.segs = append(r.segs, seg)
	}
	b.built[m.name] = r
	return r, nil
}

// area returns where n bytes of an area are: on a PV, or in a sub-LV.
func (b *builder) area(m *lvMeta, a areaMeta, n int64, depth int) (span, error) {
	ext := b.vg.extentSize
	if pv := b.vg.pvs[a.name]; pv != nil {
		if a.extent > pv.peCount || n/ext > pv.peCount-a.extent {
			return span{}, corrupt("LV %s/%s: extents %d+%d beyond the %d of PV %s", b.vg.name, m.name, a.extent, n/ext, pv.peCount, pv.id)
		}
		dev := b.devices[pv.id]
		if dev == nil {
			return span{}, fmt.Errorf("lvm: LV %s/%s: PV %s (%s): %w", b.vg.name, m.name, pv.id, pv.name, ErrMissingPV)
		}
		if size, ok := b.sizes[pv.id]; ok && pv.peStart+pv.peCount*ext > size {
			return span{}, corrupt("PV %s: %d extents from %d beyond its device of %d bytes", pv.id, pv.peCount, pv.peStart, size)
		}
		return span{r: dev, base: pv.peStart + a.extent*ext}, nil
	}
	sub := b.vg.lvs[a.name]
	if sub == nil {
		return span{}, corrupt("LV %s/%s: maps onto %q, neither a PV nor an LV", b.vg.name, m.name, a.name)
	}
	if a.extent > sub.extents || n/ext > sub.extents-a.extent {
		return span{}, corrupt("LV %s/%s: extents %d+%d beyond the %d of LV %s", b.vg.name, m.name, a.extent, n/ext, sub.extents, sub.name)
	}
	r, err := b.build(sub, depth+1)
	if err != nil {
		return span{}, err
	}
	return span{r: r, base: a.extent * ext}, nil
}
