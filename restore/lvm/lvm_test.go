package lvm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/lvm"
	"github.com/bulwarkbackup/bulwark/restore/lvm/lvmtest"
)

const mib = 1 << 20

// pattern is an LV's known contents.
func pattern(name string, n int) []byte {
	var seed [32]byte
	copy(seed[:], name)
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// uuids are made-up LV UUIDs for the LVs the test writes into the
// metadata text by hand.
func uuid(n int) string {
	s := fmt.Sprintf("Test%028d", n)
	return strings.Join([]string{s[:6], s[6:10], s[10:14], s[14:18], s[18:22], s[22:26], s[26:]}, "-")
}

// lvText is an LV of one segment in LVM's metadata text.
func lvText(n int, name string, visible bool, extents int, body string) string {
	status := `"READ", "WRITE"`
	if visible {
		status += `, "VISIBLE"`
	}
	return fmt.Sprintf(`
%s {
id = "%s"
status = [%s]
flags = []
segment_count = 1
segment1 {
start_extent = 0
extent_count = %d
%s
}
}
`, name, uuid(n), status, extents, body)
}

func linear(pv string, pe int) string {
	return fmt.Sprintf("type = \"striped\"\nstripe_count = 1\nstripes = [\"%s\", %d]", pv, pe)
}

// handMade are LVs that lvcreate makes only with device-mapper: written
// into the metadata text and restored with vgcfgrestore. pv0 is the first
// disk, pv1 the second; extents from 20 up are free on both.
var handMade = lvText(1, "r1", true, 4, `type = "raid1"
device_count = 2
region_size = 1024
raids = ["r1_rmeta_0", "r1_rimage_0", "r1_rmeta_1", "r1_rimage_1"]`) +
	lvText(2, "r1_rmeta_0", false, 1, linear("pv0", 20)) +
	lvText(3, "r1_rimage_0", false, 4, linear("pv0", 21)) +
	lvText(4, "r1_rmeta_1", false, 1, linear("pv1", 20)) +
	lvText(5, "r1_rimage_1", false, 4, linear("pv1", 21)) +
	lvText(6, "mi", true, 3, `type = "mirror"
mirror_count = 2
mirror_log = "mi_mlog"
region_size = 1024
mirrors = ["mi_mimage_0", 0, "mi_mimage_1", 0]`) +
	lvText(7, "mi_mlog", false, 1, linear("pv0", 30)) +
	lvText(8, "mi_mimage_0", false, 3, linear("pv0", 31)) +
	lvText(9, "mi_mimage_1", false, 3, linear("pv1", 31)) +
	lvText(10, "r0", true, 4, `type = "raid0"
stripe_count = 2
stripe_size = 128
raid0_lvs = ["r0_rimage_0", "r0_rimage_1"]`) +
	lvText(11, "r0_rimage_0", false, 2, linear("pv0", 35)) +
	lvText(12, "r0_rimage_1", false, 2, linear("pv1", 35)) +
	lvText(13, "snap", false, 2, linear("pv0", 40)) +
	lvText(14, "snapshot0", false, 8, `type = "snapshot"
chunk_size = 8
origin = "lin"
cow_store = "snap"`) +
	lvText(15, "pool", true, 4, `type = "thin-pool"
metadata = "pool_tmeta"
pool = "pool_tdata"
transaction_id = 1
chunk_size = 128
discards = "passdown"
zero_new_blocks = 1`) +
	lvText(16, "pool_tmeta", false, 1, linear("pv1", 40)) +
	lvText(17, "pool_tdata", false, 4, linear("pv1", 41)) +
	lvText(18, "lvol0_pmspare", false, 1, linear("pv1", 45)) +
	lvText(19, "thin", true, 8, `type = "thin"
thin_pool = "pool"
transaction_id = 0
device_id = 1`) +
	lvText(20, "r5", true, 2, `type = "raid5_ls"
device_count = 3
stripe_size = 128
region_size = 1024
raids = ["r5_rmeta_0", "r5_rimage_0", "r5_rmeta_1", "r5_rimage_1", "r5_rmeta_2", "r5_rimage_2"]`) +
	lvText(21, "r5_rmeta_0", false, 1, linear("pv0", 50)) +
	lvText(22, "r5_rimage_0", false, 1, linear("pv0", 51)) +
	lvText(23, "r5_rmeta_1", false, 1, linear("pv1", 50)) +
	lvText(24, "r5_rimage_1", false, 1, linear("pv1", 51)) +
	lvText(25, "r5_rmeta_2", false, 1, linear("pv0", 52)) +
	lvText(26, "r5_rimage_2", false, 1, linear("pv1", 52))

// fixture is a VG on two disks as setup makes it, and LVM's report of it.
type fixture struct {
	env  *lvmtest.Env
	vg   string
	imgs []string
	lvs  map[string]map[string]string // lvs -o report by name
	pvs  []map[string]string
}

var readable = []string{"lin", "str", "grow", "r1", "mi", "r0"}

// setup makes a VG on two disks with linear, striped, two-segment, raid1,
// mirror, raid0, snapshot, thin, pool and raid5 LVs, and writes a pattern
// into each readable one.
func setup(t testing.TB) *fixture {
	e := lvmtest.New(t)
	img0, d0 := e.Image(64 * mib)
	img1, d1 := e.Image(64 * mib)
	vg := fmt.Sprintf("bwt%d", os.Getpid())
	e.LVM("pvcreate", "--pvmetadatacopies", "2", d0)
	e.LVM("pvcreate", d1)
	e.VGCreate(vg, d0, d1)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "8m", "-n", "lin", vg, d0)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "8m", "-i", "2", "-I", "64k", "-n", "str", vg, d0, d1)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "4m", "-n", "grow", vg, d1)
	e.LVM("lvextend", "-L", "8m", vg+"/grow", d0)
	backup := filepath.Join(t.TempDir(), "vg.txt")
	e.LVM("vgcfgbackup", "-f", backup, vg)
	text, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	// The logical_volumes section closes at the last "\t}" line.
	s := string(text)
	i := strings.LastIndex(s, "\n\t}\n")
	s = s[:i] + handMade + s[i:]
	if err := os.WriteFile(backup, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	e.LVM("vgcfgrestore", "--force", "-f", backup, vg)
	f := &fixture{env: e, vg: vg, imgs: []string{img0, img1}, lvs: map[string]map[string]string{}}
	for _, row := range e.Report("lvs", "-o", "lv_name,lv_uuid,lv_size,lv_attr,segtype", vg) {
		f.lvs[row["lv_name"]] = row
	}
	f.pvs = e.Report("pvs", "-o", "pv_name,pv_uuid,pe_start,dev_size,vg_name,pv_mda_count", "-S", "vg_name="+vg)
	for _, name := range readable {
		size, _ := strconv.Atoi(f.lvs[name]["lv_size"])
		e.WriteLV(vg, name, 0, pattern(name, size))
	}
	return f
}

// open reads the PVs of the fixture's images.
func (f *fixture) open(t *testing.T) ([]*lvm.PV, map[string]io.ReaderAt) {
	var pvs []*lvm.PV
	devices := map[string]io.ReaderAt{}
	for _, img := range f.imgs {
		file, size := openImage(t, img)
		pv, err := lvm.ReadPV(file, size)
		if err != nil {
			t.Fatalf("ReadPV %s: %v", img, err)
		}
		pvs = append(pvs, pv)
		devices[pv.UUID] = file
	}
	return pvs, devices
}

// openImage opens an image file for reading until the test ends.
func openImage(t testing.TB, img string) (*os.File, int64) {
	file, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	st, err := file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return file, st.Size()
}

func TestLVM(t *testing.T) {
	f := setup(t)
	pvs, devices := f.open(t)

	for i, pv := range pvs {
		want := f.pvs[i]
		peStart, _ := strconv.ParseInt(want["pe_start"], 10, 64)
		devSize, _ := strconv.ParseInt(want["dev_size"], 10, 64)
		mdas, _ := strconv.Atoi(want["pv_mda_count"])
		if pv.UUID != want["pv_uuid"] || pv.VGName != f.vg || pv.DeviceSize != devSize ||
			len(pv.DataAreas) != 1 || pv.DataAreas[0].Offset != peStart || len(pv.MetadataAreas) != mdas ||
			pv.Metadata == nil || pv.MetadataErr != nil {
			t.Errorf("PV %+v, pvs says %v", pv, want)
		}
	}
	if len(pvs[0].MetadataAreas) != 2 {
		t.Errorf("PV made with 2 metadata copies has %d areas", len(pvs[0].MetadataAreas))
	}

	lvs, err := lvm.Assemble(pvs, devices)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lv := range lvs {
		names = append(names, lv.Name)
		want := f.lvs[lv.Name]
		if want == nil || lv.VG != f.vg || lv.UUID != want["lv_uuid"] || strconv.FormatInt(lv.Size, 10) != want["lv_size"] {
			t.Errorf("LV %s/%s %s of %d bytes, lvs says %v", lv.VG, lv.Name, lv.UUID, lv.Size, want)
		}
	}
	// The visible LVs, as lvs lists them without -a.
	var visible []string
	for name := range f.lvs {
		visible = append(visible, name)
	}
	slices.Sort(visible)
	slices.Sort(names)
	if !slices.Equal(names, visible) {
		t.Errorf("LVs %v, lvs lists %v", names, visible)
	}

	byName := map[string]*lvm.LV{}
	for _, lv := range lvs {
		byName[lv.Name] = lv
	}
	for _, name := range readable {
		lv := byName[name]
		if lv == nil || lv.Err != nil {
			t.Errorf("LV %s: %+v", name, lv)
			continue
		}
		checkData(t, lv, pattern(name, int(lv.Size)))
	}
	if s := byName["str"].Segments; len(s) != 1 || s[0].Stripes != 2 || s[0].StripeSize != 64<<10 || s[0].Areas[1].PV != pvs[1].UUID {
		t.Errorf("str segments %+v", s)
	}
	if s := byName["grow"].Segments; len(s) != 2 || s[1].Start != 4*mib || s[1].Areas[0].PV != pvs[0].UUID {
		t.Errorf("grow segments %+v", s)
	}
	for name, why := range map[string]string{
		"snap": "snapshot of lin", "pool": `"thin-pool"`, "thin": `"thin"`, "r5": `"raid5_ls"`,
	} {
		lv := byName[name]
		if lv == nil || !errors.Is(lv.Err, lvm.ErrUnsupported) || !strings.Contains(lv.Err.Error(), why) || lv.ReaderAt != nil {
			t.Errorf("LV %s: %+v, want not supported: %s", name, lv, why)
		}
	}
	t.Run("hostile", func(t *testing.T) { hostile(t, f) })
}

// damageText changes a byte of the current metadata text of an area, as
// its header locates it.
func damageText(img []byte, a lvm.Area) {
	text := a.Offset + int64(binary.LittleEndian.Uint64(img[a.Offset+40:]))
	img[text+1]++
}

// hostile damages the fixture's label, metadata areas and metadata text.
func hostile(t *testing.T, f *fixture) {
	img, err := os.ReadFile(f.imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	pv0, err := lvm.ReadPV(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("label checksum", func(t *testing.T) {
		b := bytes.Clone(img)
		b[512+24+40]++ // in the PV header, which the label's checksum covers
		if _, err := lvm.ReadPV(bytes.NewReader(b), int64(len(b))); !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("ReadPV: %v, want ErrCorrupt", err)
		}
	})
	t.Run("no label", func(t *testing.T) {
		b := bytes.Clone(img)
		clear(b[512:1024])
		if _, err := lvm.ReadPV(bytes.NewReader(b), int64(len(b))); !errors.Is(err, fstree.ErrUnrecognized) {
			t.Errorf("ReadPV: %v, want ErrUnrecognized", err)
		}
	})
	t.Run("first metadata area damaged", func(t *testing.T) {
		// The PV has a second copy, at its end.
		b := bytes.Clone(img)
		damageText(b, pv0.MetadataAreas[0])
		pv, err := lvm.ReadPV(bytes.NewReader(b), int64(len(b)))
		if err != nil || pv.VGName != f.vg || !bytes.Equal(pv.Metadata, pv0.Metadata) || pv.MetadataErr != nil {
			t.Errorf("ReadPV: VG %q, %v; want the second copy of the metadata", pv.VGName, err)
		}
		damageText(b, pv0.MetadataAreas[1])
		pv, err = lvm.ReadPV(bytes.NewReader(b), int64(len(b)))
		if err != nil || pv.Metadata != nil || !errors.Is(pv.MetadataErr, fstree.ErrCorrupt) {
			t.Errorf("ReadPV: VG %q, %v, %v; want MetadataErr ErrCorrupt", pv.VGName, err, pv.MetadataErr)
		}
	})
	pvs, devices := f.open(t)
	text := string(pvs[0].Metadata)
	// assemble reads the VG from a changed text.
	assemble := func(t *testing.T, old, new string) ([]*lvm.LV, error) {
		t.Helper()
		if !strings.Contains(text, old) {
			t.Fatalf("metadata has no %q", old)
		}
		pv := *pvs[0]
		pv.Seqno++
		pv.Metadata = []byte(strings.Replace(text, old, new, 1))
		return lvm.Assemble([]*lvm.PV{&pv, pvs[1]}, devices)
	}
	lvErr := func(t *testing.T, lvs []*lvm.LV, name string) error {
		for _, lv := range lvs {
			if lv.Name == name {
				return lv.Err
			}
		}
		t.Fatalf("no LV %s", name)
		return nil
	}
	for _, tc := range []struct {
		name, old, new string
		lv             string // the LV whose Err says it; "" for the VG
	}{
		{"deep nesting", "logical_volumes {", "logical_volumes {" + strings.Repeat("x {", 100) + strings.Repeat("}", 100), ""},
		{"huge number", "extent_size = 2048", "extent_size = 99999999999999999999999", ""},
		{"huge extent size", "extent_size = 2048", "extent_size = 9999999999999", ""},
		{"pe_count beyond device", "pe_count = ", "pe_count = 1", ""},
		{"pe_start beyond device", "pe_start = ", "pe_start = 9", ""},
		{"string not closed", `"pv0", 0`, `"pv0, 0`, ""},
		{"segment gap", "start_extent = 0", "start_extent = 1", ""},
		{"extents beyond the PV", `"pv0", 0`, `"pv0", 60`, "lin"},
		{"extent far beyond the PV", `"pv0", 0`, `"pv0", 9223372036854775807`, "lin"},
		{"unknown area", `"pv0", 0`, `"pv9", 0`, "lin"},
		{"raid1 onto itself", `"r1_rmeta_0", "r1_rimage_0"`, `"r1_rmeta_0", "r1"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lvs, err := assemble(t, tc.old, tc.new)
			if tc.lv != "" {
				if err != nil {
					t.Fatal(err)
				}
				err = lvErr(t, lvs, tc.lv)
			}
			if !errors.Is(err, fstree.ErrCorrupt) {
				t.Errorf("%v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("sub-LV cycle", func(t *testing.T) {
		// mi's first leg is r1, whose second leg is mi: a cycle, which
		// the first leg of r1 avoids, but mi cannot.
		mirrors := "\"mi_mimage_0\", 0,\n\"mi_mimage_1\", 0"
		lvs, err := assemble(t, mirrors, `"r1", 0, "r1", 0`)
		if err != nil {
			t.Fatal(err)
		}
		if err := lvErr(t, lvs, "r1"); err != nil {
			t.Errorf("r1: %v", err)
		}
		text2 := strings.Replace(text, mirrors, `"r1", 0, "r1", 0`, 1)
		text2 = strings.Replace(text2, "\"r1_rmeta_0\", \"r1_rimage_0\",\n\"r1_rmeta_1\", \"r1_rimage_1\"", `"r1_rmeta_0", "mi", "r1_rmeta_1", "mi"`, 1)
		if !strings.Contains(text2, `"r1_rmeta_1", "mi"`) {
			t.Fatal("no raids to replace")
		}
		pv := *pvs[0]
		pv.Seqno++
		pv.Metadata = []byte(text2)
		lvs, err = lvm.Assemble([]*lvm.PV{&pv}, devices)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"r1", "mi"} {
			if err := lvErr(t, lvs, name); !errors.Is(err, fstree.ErrCorrupt) {
				t.Errorf("%s: %v, want ErrCorrupt", name, err)
			}
		}
	})
	t.Run("device smaller than its PV", func(t *testing.T) {
		pv := *pvs[0]
		pv.Size = 8 * mib
		lvs, err := lvm.Assemble([]*lvm.PV{&pv, pvs[1]}, devices)
		if err != nil {
			t.Fatal(err)
		}
		if err := lvErr(t, lvs, "lin"); !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("lin: %v, want ErrCorrupt", err)
		}
	})
}

// checkData reads an LV whole and in small unaligned pieces that cross
// stripe, segment and extent boundaries.
func checkData(t *testing.T, lv *lvm.LV, want []byte) {
	t.Helper()
	got := make([]byte, lv.Size)
	if n, err := lv.ReaderAt.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
		t.Errorf("LV %s: read %d of %d: %v", lv.Name, n, len(got), err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("LV %s: contents differ from the pattern written", lv.Name)
	}
	for _, off := range []int64{1, 64<<10 - 7, 1*mib - 100, 4*mib - 3, lv.Size - 10} {
		if off >= lv.Size {
			continue
		}
		p := make([]byte, 300)
		n, err := lv.ReaderAt.ReadAt(p, off)
		end := min(off+300, lv.Size)
		if int64(n) != end-off || !bytes.Equal(p[:n], want[off:end]) || (end == lv.Size) != (err == io.EOF) {
			t.Errorf("LV %s: ReadAt 300 at %d: %d, %v", lv.Name, off, n, err)
		}
	}
	if n, err := lv.ReaderAt.ReadAt(make([]byte, 1), lv.Size); n != 0 || err != io.EOF {
		t.Errorf("LV %s: ReadAt at its end: %d, %v", lv.Name, n, err)
	}
}

// TestMissingPV gives Assemble only the second disk: the raid1 and mirror
// LVs read their second leg; those with extents on the first disk say so.
func TestMissingPV(t *testing.T) {
	f := setup(t)
	pvs, devices := f.open(t)
	delete(devices, pvs[0].UUID)
	for _, only := range [][]*lvm.PV{pvs, pvs[1:]} {
		lvs, err := lvm.Assemble(only, devices)
		if err != nil {
			t.Fatal(err)
		}
		for _, lv := range lvs {
			switch lv.Name {
			case "r1", "mi":
				if lv.Err != nil {
					t.Errorf("LV %s: %v", lv.Name, lv.Err)
					continue
				}
				checkData(t, lv, pattern(lv.Name, int(lv.Size)))
			case "lin", "str", "grow", "r0":
				if !errors.Is(lv.Err, lvm.ErrMissingPV) || !strings.Contains(lv.Err.Error(), pvs[0].UUID) {
					t.Errorf("LV %s: %v, want missing PV %s", lv.Name, lv.Err, pvs[0].UUID)
				}
			}
		}
	}
}
