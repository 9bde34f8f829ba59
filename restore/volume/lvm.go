package volume

import (
	"io"
	"strconv"

	"github.com/bulwarkbackup/bulwark/restore/lvm"
)

// assemble builds the logical volumes of the PVs found among vols, not yet
// probed. An error assembling a VG is set on the PVs that hold it.
func assemble(vols []Volume) []Volume {
	var pvs []*lvm.PV
	devices := map[string]io.ReaderAt{}
	for i := range vols {
		if pv := vols[i].pv; pv != nil {
			pvs = append(pvs, pv)
			devices[pv.UUID] = vols[i].ReaderAt
		}
	}
	if len(pvs) == 0 {
		return nil
	}
	lvs, err := lvm.Assemble(pvs, devices)
	if err != nil {
		for i := range vols {
			if vols[i].pv != nil && vols[i].Err == nil {
				vols[i].Err = err
			}
		}
	}
	var out []Volume
	seen := map[string]int{}
	for _, lv := range lvs {
		id := lv.VG + "/" + lv.Name
		// Two VGs of one name (clones of a template): tell them apart.
		if seen[id]++; seen[id] > 1 {
			id += "~" + strconv.Itoa(seen[id])
		}
		v := Volume{ID: id, Disk: -1, LV: lv, Kind: KindLV, Size: lv.Size, Err: lv.Err}
		if lv.ReaderAt != nil {
			v.ReaderAt = lv.ReaderAt
		}
		out = append(out, v)
	}
	return out
}
