package lvm_test

import (
	"errors"
	"io"
	"regexp"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/lvm"
	"github.com/bulwarkbackup/bulwark/restore/lvm/lvmtest"
)

// readLVs reads a little of each LV at its start, middle and end, as a
// user browsing it would; only a panic or a hang fails.
func readLVs(lvs []*lvm.LV) {
	buf := make([]byte, 4096)
	for _, lv := range lvs {
		if lv.ReaderAt == nil {
			continue
		}
		for _, off := range []int64{0, lv.Size / 2, lv.Size - 100, lv.Size} {
			_, _ = lv.ReaderAt.ReadAt(buf, off)
		}
	}
}

type zeros struct{}

func (zeros) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

var idRE = regexp.MustCompile(`id = "([^"]*)"`)

func FuzzLVMMetadata(f *testing.F) {
	fx := setup(f)
	for _, img := range fx.imgs {
		pv, err := lvm.ReadPV(openImage(f, img))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pv.Metadata)
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		pv := &lvm.PV{UUID: "fuzz", Size: 1 << 30, VGName: "vg", Metadata: text}
		// Any id in the text may be a PV's: give each one a device.
		devices := map[string]io.ReaderAt{}
		for _, m := range idRE.FindAllSubmatch(text, 100) {
			devices[string(m[1])] = zeros{}
		}
		lvs, err := lvm.Assemble([]*lvm.PV{pv}, devices)
		if err != nil && !errors.Is(err, fstree.ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		readLVs(lvs)
	})
}

func FuzzPV(f *testing.F) {
	// A small VG of its own: a seed is every sector that is not zero.
	e := lvmtest.New(f)
	img, dev := e.Image(8 << 20)
	e.LVM("pvcreate", "--pvmetadatacopies", "2", dev)
	e.VGCreate("bwtfuzz", dev)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "2m", "-n", "lin", "bwtfuzz")
	e.LVM("lvcreate", "-an", "-Zn", "-L", "1m", "-n", "two", "bwtfuzz")
	e.LVM("lvextend", "-L", "2m", "bwtfuzz/two")
	f.Add(fstreetest.EncodeSparse(fstreetest.ReadImage(f, img)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, size := fstreetest.DecodeSparse(data)
		pv, err := lvm.ReadPV(r, size)
		if err != nil {
			if !errors.Is(err, fstree.ErrCorrupt) && !errors.Is(err, fstree.ErrUnrecognized) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnrecognized", err)
			}
			return
		}
		lvs, _ := lvm.Assemble([]*lvm.PV{pv}, map[string]io.ReaderAt{pv.UUID: r})
		readLVs(lvs)
	})
}
