// Package volume finds the volumes of a restore point's disks: partitions
// (GPT, MBR), LVM logical volumes spanning any of the disks, and the
// filesystem each holds, so that a user can pick one to browse.
package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/lvm"
	"github.com/bulwarkbackup/bulwark/restore/partition"
)

// Disk is one disk of a restore point.
type Disk struct {
	// Index numbers the disk within its point: volume IDs start "d<Index>".
	Index    int
	ReaderAt io.ReaderAt
	Size     int64
	// SectorSize is the disk's logical sector size when known, else 0:
	// the partition table tells.
	SectorSize int
}

// Filesystem is a filesystem reader that Discover may probe a volume with.
type Filesystem struct {
	Name string
	// Open returns an error wrapping fstree.ErrUnrecognized when the
	// volume does not hold its filesystem.
	Open func(r io.ReaderAt, size int64) (fstree.Reader, error)
}

// Kinds of volume.
const (
	KindDisk      = "disk"      // a whole disk holding a filesystem
	KindPartition = "partition" // a partition holding a filesystem
	KindLV        = "lv"        // a logical volume holding a filesystem
	KindPV        = "lvm-pv"    // an LVM physical volume
	KindExtended  = "extended"  // an MBR extended partition
	KindSwap      = "swap"
	KindUnknown   = "unknown" // nothing recognized
)

// Volume is a disk, partition or logical volume and what it holds.
type Volume struct {
	// ID names the volume in a point, short enough to type: "d0" (a
	// whole disk), "d0p1", "d1p5" (partitions, numbered as Linux does),
	// "vg0/root" (LVs).
	ID string
	// Disk is the index of the disk holding the volume; -1 for an LV,
	// which may span disks.
	Disk      int
	Partition *partition.Partition
	LV        *lvm.LV
	// Kind is one of the Kind constants: for "disk", "partition" and "lv"
	// FSType says which filesystem (or which reader failed, with Err).
	Kind   string
	FSType string
	// Label is the filesystem's or swap's label, or a PV's VG name.
	Label string
	// Offset is where the volume starts on its disk (0 for an LV); Size
	// its length in bytes.
	Offset, Size int64
	// Err says why the volume cannot be opened: a corrupt filesystem, a
	// partition table that could not be read, an LV not supported.
	Err error
	// Warning is what was wrong with the disk's partition table but
	// could be worked around.
	Warning  string
	ReaderAt io.ReaderAt

	fs fstree.Reader
	pv *lvm.PV // of a KindPV volume, for assembling its VG
}

// Open returns the volume's filesystem.
func (v *Volume) Open() (*fstree.FS, error) {
	if v.fs != nil {
		return fstree.New(v.fs), nil
	}
	if v.Err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.ID, v.Err)
	}
	return nil, fmt.Errorf("volume %s (%s): no filesystem found", v.ID, v.Kind)
}

// probes is how many volumes are probed at once: each probe waits on a
// few reads of a remote store.
const probes = 4

// Discover finds the volumes of a point's disks and probes each with the
// filesystems, in order. LVM physical volumes are gathered from every disk
// before their volume groups are assembled, since a VG may span disks.
func Discover(ctx context.Context, disks []Disk, filesystems []Filesystem) ([]Volume, error) {
	var vols []Volume
	for _, d := range disks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vols = append(vols, diskVolumes(d, filesystems)...)
	}
	if err := probeAll(ctx, vols, filesystems); err != nil {
		return nil, err
	}
	lvs := assemble(vols)
	if err := probeAll(ctx, lvs, filesystems); err != nil {
		return nil, err
	}
	return append(vols, lvs...), nil
}

// diskVolumes lists a disk's volumes, not yet probed: its partitions, or
// the disk itself when it has no partition table or a filesystem starts at
// its first sector.
func diskVolumes(d Disk, filesystems []Filesystem) []Volume {
	whole := Volume{ID: fmt.Sprintf("d%d", d.Index), Disk: d.Index, Kind: KindDisk, Size: d.Size, ReaderAt: d.ReaderAt}
	var tab *partition.Table
	var err error
	if d.SectorSize != 0 {
		tab, err = partition.ReadSectorSize(d.ReaderAt, d.Size, d.SectorSize)
	} else {
		tab, err = partition.Read(d.ReaderAt, d.Size)
	}
	if err != nil {
		// A filesystem may start at 0 whose boot sector looks like a
		// broken table; if none does, the table's error is the news.
		if probeFS(&whole, filesystems) {
			return []Volume{whole}
		}
		whole.Kind, whole.Err = KindUnknown, err
		return []Volume{whole}
	}
	switch tab.Kind {
	case partition.KindNone:
		return []Volume{whole}
	case partition.KindMBR:
		// A filesystem's boot sector can pass for an MBR.
		if probeFS(&whole, filesystems) {
			return []Volume{whole}
		}
	}
	var vols []Volume
	for i := range tab.Partitions {
		p := &tab.Partitions[i]
		v := Volume{
			ID:        fmt.Sprintf("d%dp%d", d.Index, p.Number),
			Disk:      d.Index,
			Partition: p,
			Kind:      KindPartition,
			Offset:    p.Start,
			Size:      p.Length,
			Warning:   tab.Warning,
			ReaderAt:  io.NewSectionReader(d.ReaderAt, p.Start, p.Length),
		}
		if p.Extended {
			v.Kind = KindExtended
		}
		vols = append(vols, v)
	}
	return vols
}

// probeAll probes the volumes not yet probed, a few at a time.
func probeAll(ctx context.Context, vols []Volume, filesystems []Filesystem) error {
	sem := make(chan struct{}, probes)
	var wg sync.WaitGroup
	for i := range vols {
		v := &vols[i]
		if v.Kind == KindExtended || v.Err != nil || v.FSType != "" || v.ReaderAt == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			probe(v, filesystems)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// probe finds what a volume holds: an LVM PV, swap, or a filesystem.
func probe(v *Volume, filesystems []Filesystem) {
	if v.LV == nil {
		pv, err := lvm.ReadPV(v.ReaderAt, v.Size)
		switch {
		case err == nil:
			v.Kind, v.FSType, v.Label = KindPV, "LVM2_member", pv.VGName
			v.pv = pv
			if pv.Metadata == nil && pv.MetadataErr != nil {
				v.Err = pv.MetadataErr
			}
			return
		case !errors.Is(err, fstree.ErrUnrecognized):
			v.Kind, v.FSType, v.Err = KindPV, "LVM2_member", err
			return
		}
	}
	if label, ok := swap(v.ReaderAt, v.Size); ok {
		v.Kind, v.FSType, v.Label = KindSwap, "swap", label
		return
	}
	if !probeFS(v, filesystems) {
		v.Kind = KindUnknown
	}
}

// probeFS tries each filesystem on a volume; it reports whether one
// recognized it, having set the volume's filesystem or error.
func probeFS(v *Volume, filesystems []Filesystem) bool {
	for _, f := range filesystems {
		r, err := open(f, v.ReaderAt, v.Size)
		switch {
		case err == nil:
			v.fs, v.FSType, v.Label = r, r.Type(), r.Label()
			return true
		case !errors.Is(err, fstree.ErrUnrecognized):
			v.FSType, v.Err = f.Name, err
			return true
		}
	}
	return false
}

// open opens a filesystem, turning a reader's panic on a hostile image into
// an error: one volume must not take the appliance down.
func open(f Filesystem, r io.ReaderAt, size int64) (fr fstree.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			fr, err = nil, fmt.Errorf("%s reader failed: %v", f.Name, p)
		}
	}()
	return f.Open(r, size)
}
