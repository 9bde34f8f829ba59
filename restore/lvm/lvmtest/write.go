package lvmtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// segment is a row of `lvs --segments`: where LVM says an LV's bytes are.
type segment struct {
	start, size int64
	typ         string
	stripes     int64
	stripeSize  int64
	areas       []area
}

// area is one of a segment's PE ranges: "/dev/loop0:8-11" or
// "lv_rimage_0:0-3".
type area struct {
	name  string
	first int64 // extent
}

// WriteLV writes data at offset off of an LV, through the images of its
// PVs, where LVM's own report (lvs --segments, pvs, vgs) says the LV's
// extents are. Mirror and raid1 legs all get the data.
func (e *Env) WriteLV(vg, lv string, off int64, data []byte) {
	e.t.Helper()
	extent, err := strconv.ParseInt(e.Report("vgs", "-o", "vg_extent_size", vg)[0]["vg_extent_size"], 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	peStart := map[string]int64{}
	for _, row := range e.Report("pvs", "-o", "pv_name,pe_start") {
		peStart[row["pv_name"]], _ = strconv.ParseInt(row["pe_start"], 10, 64)
	}
	segs := map[string][]segment{}
	for _, row := range e.Report("lvs", "-a", "--segments", "-o", "lv_name,seg_start,seg_size,segtype,stripes,stripe_size,seg_pe_ranges", vg) {
		s := segment{typ: row["segtype"]}
		s.start, _ = strconv.ParseInt(row["seg_start"], 10, 64)
		s.size, _ = strconv.ParseInt(row["seg_size"], 10, 64)
		s.stripes, _ = strconv.ParseInt(row["stripes"], 10, 64)
		s.stripeSize, _ = strconv.ParseInt(row["stripe_size"], 10, 64)
		for _, r := range strings.Fields(row["seg_pe_ranges"]) {
			i := strings.LastIndexByte(r, ':')
			first, _, _ := strings.Cut(r[i+1:], "-")
			a := area{name: r[:i]}
			a.first, _ = strconv.ParseInt(first, 10, 64)
			s.areas = append(s.areas, a)
		}
		name := strings.Trim(row["lv_name"], "[]")
		segs[name] = append(segs[name], s)
	}
	w := &writer{e: e, extent: extent, peStart: peStart, segs: segs}
	if err := w.write(lv, off, data); err != nil {
		e.t.Fatalf("write %s/%s: %v", vg, lv, err)
	}
}

type writer struct {
	e       *Env
	extent  int64
	peStart map[string]int64
	segs    map[string][]segment
}

func (w *writer) write(lv string, off int64, data []byte) error {
	for len(data) > 0 {
		var seg *segment
		for i := range w.segs[lv] {
			if s := &w.segs[lv][i]; off >= s.start && off < s.start+s.size {
				seg = s
			}
		}
		if seg == nil {
			return fmt.Errorf("LV %s has no segment at %d", lv, off)
		}
		o := off - seg.start
		n := min(int64(len(data)), seg.size-o)
		var err error
		switch seg.typ {
		case "mirror", "raid1":
			for _, a := range seg.areas {
				if err = w.area(a, o, data[:n]); err != nil {
					break
				}
			}
		default: // linear, striped, raid0
			err = w.striped(seg, o, data[:n])
		}
		if err != nil {
			return err
		}
		off, data = off+n, data[n:]
	}
	return nil
}

func (w *writer) striped(seg *segment, o int64, data []byte) error {
	stripe := seg.stripeSize
	if seg.stripes <= 1 {
		stripe = seg.size
	}
	for len(data) > 0 {
		chunk, in := o/stripe, o%stripe
		n := min(int64(len(data)), stripe-in)
		if err := w.area(seg.areas[chunk%seg.stripes], chunk/seg.stripes*stripe+in, data[:n]); err != nil {
			return err
		}
		o, data = o+n, data[n:]
	}
	return nil
}

// area writes at offset o of an area: a PV's extents or a sub-LV's.
func (w *writer) area(a area, o int64, data []byte) error {
	if !strings.HasPrefix(a.name, "/dev/") {
		return w.write(a.name, a.first*w.extent+o, data)
	}
	img, ok := w.e.images[a.name]
	if !ok {
		return fmt.Errorf("no image for %s", a.name)
	}
	f, err := os.OpenFile(img.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(data, img.offset+w.peStart[a.name]+a.first*w.extent+o)
	return err
}
