package volume_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/lvm/lvmtest"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

const mib = 1 << 20

// magicFS is a filesystem for the prober's tests: "MAGICFS!" and a label
// at the start of the volume. "BROKENFS" is one that is recognized but
// corrupt, "PANICFS!" one whose reader panics.
type magicFS struct{ label string }

type magicNode struct{}

func (magicNode) Meta() fstree.Meta { return fstree.Meta{Mode: fs.ModeDir | 0o755} }

func (m *magicFS) Type() string                                { return "magicfs" }
func (m *magicFS) Label() string                               { return m.label }
func (m *magicFS) Root() (fstree.Node, error)                  { return magicNode{}, nil }
func (m *magicFS) ReadDir(fstree.Node) ([]fstree.Entry, error) { return nil, nil }
func (m *magicFS) Contents(fstree.Node) (io.ReaderAt, error)   { return nil, errors.New("no files") }
func (m *magicFS) ReadLink(fstree.Node) (string, error)        { return "", errors.New("no links") }

func openMagic(r io.ReaderAt, size int64) (fstree.Reader, error) {
	b := make([]byte, 24)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("magicfs: %w", fstree.ErrUnrecognized)
	}
	switch string(b[:8]) {
	case "MAGICFS!":
		return &magicFS{label: strings.TrimRight(string(b[8:]), "\x00")}, nil
	case "BROKENFS":
		return nil, fmt.Errorf("magicfs: superblock checksum: %w", fstree.ErrCorrupt)
	case "PANICFS!":
		panic("magicfs: index out of range")
	}
	return nil, fmt.Errorf("magicfs: %w", fstree.ErrUnrecognized)
}

// never recognizes anything: the prober must go on to the next one.
func openNever(io.ReaderAt, int64) (fstree.Reader, error) {
	return nil, fmt.Errorf("never: %w", fstree.ErrUnrecognized)
}

var filesystems = []volume.Filesystem{{Name: "never", Open: openNever}, {Name: "magicfs", Open: openMagic}}

func image(t *testing.T, size int64) string {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeAt(t *testing.T, img string, off int64, data []byte) {
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func magic(label string) []byte {
	b := make([]byte, 24)
	copy(b, "MAGICFS!"+label)
	return b
}

// swapArea is a swap area made by mkswap, size bytes.
func swapArea(t *testing.T, label string, size int64) []byte {
	p := image(t, size)
	fstreetest.Run(t, "mkswap", "-L", label, p)
	return fstreetest.ReadImage(t, p)
}

func sfdisk(t *testing.T, img, script string) {
	cmd := exec.Command("/usr/sbin/sfdisk", "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
}

type want struct {
	id, kind, fsType, label string
	offset, size            int64
	err                     error // errors.Is; nil: none
	errText                 string
}

func TestDiscover(t *testing.T) {
	e := lvmtest.New(t)
	vg := fmt.Sprintf("bwtvol%d", os.Getpid())

	// Disk 0: GPT with a filesystem, an LVM PV, swap, nothing and a
	// corrupt filesystem.
	d0 := image(t, 64*mib)
	fstreetest.Run(t, "sgdisk",
		"-n1:2048:+4M", "-t1:8300", "-c1:boot",
		"-n2:0:+16M", "-t2:8e00",
		"-n3:0:+4M", "-t3:8200",
		"-n4:0:+4M", "-t4:8300",
		"-n5:0:+4M", "-t5:0700", d0)
	writeAt(t, d0, 1*mib, magic("boot"))
	writeAt(t, d0, 21*mib, swapArea(t, "swappy", 4*mib))
	writeAt(t, d0, 29*mib, []byte("BROKENFS"))
	pv0 := e.LoopRange(d0, 5*mib, 16*mib)

	// Disk 1: MBR with a filesystem, and in its extended partition a PV
	// of the same VG and another filesystem.
	d1 := image(t, 64*mib)
	sfdisk(t, d1, "label: dos\nstart=1MiB, size=4MiB, type=83\ntype=5\nsize=16MiB, type=8e\nsize=4MiB, type=83\n")
	writeAt(t, d1, 1*mib, magic("first"))
	pv1 := e.LoopRange(d1, 6*mib, 16*mib)
	writeAt(t, d1, 23*mib, magic("logical"))

	// Disk 2: a filesystem from sector 0. Disk 3: a filesystem whose
	// reader panics. Disk 4: an MBR whose EBR chain loops.
	d2 := image(t, 8*mib)
	writeAt(t, d2, 0, magic("whole"))
	d3 := image(t, 8*mib)
	writeAt(t, d3, 0, []byte("PANICFS!"))
	d4 := image(t, 16*mib)
	sfdisk(t, d4, "label: dos\nstart=1MiB, size=2MiB, type=83\ntype=5\nsize=2MiB, type=83\n")
	b4 := fstreetest.ReadImage(t, d4)
	ebr := b4[3*mib+446+16:] // the first EBR's link to the next
	ebr[4] = 5
	binary.LittleEndian.PutUint32(ebr[8:], 0)
	binary.LittleEndian.PutUint32(ebr[12:], 1)
	writeAt(t, d4, 0, b4[:4*mib])

	e.LVM("pvcreate", pv0, pv1)
	e.VGCreate(vg, pv0, pv1)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "4m", "-n", "root", vg, pv0)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "8m", "-i", "2", "-I", "64k", "-n", "data", vg, pv0, pv1)
	e.LVM("lvcreate", "-an", "-Zn", "-L", "2m", "-n", "swap", vg, pv1)
	e.WriteLV(vg, "root", 0, magic("root"))
	e.WriteLV(vg, "data", 0, bytes.Repeat(magic("data"), 64<<10/24+1))
	e.WriteLV(vg, "swap", 0, swapArea(t, "lvswap", 2*mib))

	var disks []volume.Disk
	for i, img := range []string{d0, d1, d2, d3, d4} {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		disks = append(disks, volume.Disk{Index: i, ReaderAt: f, Size: st.Size()})
	}
	vols, err := volume.Discover(context.Background(), disks, filesystems)
	if err != nil {
		t.Fatal(err)
	}
	wants := []want{
		{id: "d0p1", kind: "partition", fsType: "magicfs", label: "boot", offset: 1 * mib, size: 4 * mib},
		{id: "d0p2", kind: "lvm-pv", fsType: "LVM2_member", label: vg, offset: 5 * mib, size: 16 * mib},
		{id: "d0p3", kind: "swap", fsType: "swap", label: "swappy", offset: 21 * mib, size: 4 * mib},
		{id: "d0p4", kind: "unknown", offset: 25 * mib, size: 4 * mib},
		{id: "d0p5", kind: "partition", fsType: "magicfs", offset: 29 * mib, size: 4 * mib, err: fstree.ErrCorrupt},
		{id: "d1p1", kind: "partition", fsType: "magicfs", label: "first", offset: 1 * mib, size: 4 * mib},
		{id: "d1p2", kind: "extended", offset: 5 * mib, size: 59 * mib},
		{id: "d1p5", kind: "lvm-pv", fsType: "LVM2_member", label: vg, offset: 6 * mib, size: 16 * mib},
		{id: "d1p6", kind: "partition", fsType: "magicfs", label: "logical", offset: 23 * mib, size: 4 * mib},
		{id: "d2", kind: "disk", fsType: "magicfs", label: "whole", size: 8 * mib},
		{id: "d3", kind: "disk", fsType: "magicfs", size: 8 * mib, errText: "magicfs reader failed: magicfs: index out of range"},
		{id: "d4", kind: "unknown", size: 16 * mib, err: fstree.ErrCorrupt},
		{id: vg + "/root", kind: "lv", fsType: "magicfs", label: "root", size: 4 * mib},
		{id: vg + "/data", kind: "lv", fsType: "magicfs", label: "data", size: 8 * mib},
		{id: vg + "/swap", kind: "swap", fsType: "swap", label: "lvswap", size: 2 * mib},
	}
	if len(vols) != len(wants) {
		for _, v := range vols {
			t.Logf("%s %s %s %q %v", v.ID, v.Kind, v.FSType, v.Label, v.Err)
		}
		t.Fatalf("%d volumes, want %d", len(vols), len(wants))
	}
	for i, w := range wants {
		v := &vols[i]
		if v.ID != w.id || v.Kind != w.kind || v.FSType != w.fsType || v.Label != w.label || v.Offset != w.offset || v.Size != w.size {
			t.Errorf("volume %s %s %s %q at %d+%d, want %+v", v.ID, v.Kind, v.FSType, v.Label, v.Offset, v.Size, w)
		}
		switch {
		case w.err != nil && !errors.Is(v.Err, w.err),
			w.errText != "" && (v.Err == nil || v.Err.Error() != w.errText),
			w.err == nil && w.errText == "" && v.Err != nil:
			t.Errorf("volume %s: error %v, want %v %q", v.ID, v.Err, w.err, w.errText)
		}
		fsys, err := v.Open()
		if opens := w.fsType == "magicfs" && v.Err == nil; opens != (err == nil) {
			t.Errorf("volume %s: Open: %v", v.ID, err)
		} else if opens && (fsys.Type() != "magicfs" || fsys.Label() != w.label) {
			t.Errorf("volume %s: Open gives %s %q", v.ID, fsys.Type(), fsys.Label())
		}
	}
	for _, v := range vols {
		switch {
		case strings.HasPrefix(v.ID, vg+"/"):
			if v.LV == nil || v.Disk != -1 || v.Partition != nil {
				t.Errorf("volume %s: LV %v, disk %d, partition %v", v.ID, v.LV, v.Disk, v.Partition)
			}
		case strings.Contains(v.ID, "p"):
			if v.Partition == nil || v.LV != nil || v.Partition.Start != v.Offset {
				t.Errorf("volume %s: partition %+v", v.ID, v.Partition)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := volume.Discover(ctx, disks, filesystems); !errors.Is(err, context.Canceled) {
		t.Errorf("Discover with a canceled context: %v", err)
	}
}
